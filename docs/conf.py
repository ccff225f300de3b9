"""Sphinx configuration of the maxtoki documentation (builds offline: no intersphinx)."""

from importlib.metadata import version as _version

project = "maxtoki"
author = "maxtoki developers"
copyright = "2026, maxtoki developers"
release = _version("maxtoki")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
nitpicky = False

myst_enable_extensions = ["colon_fence", "dollarmath"]
nb_execution_mode = "off"  # tutorials are executed in CI by nbclient; outputs are committed
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_title = "maxtoki"
html_theme_options = {"use_repository_button": False}
suppress_warnings = ["mystnb.unknown_mime_type"]
