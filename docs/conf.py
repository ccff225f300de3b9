"""Sphinx configuration of the maxtoki documentation (builds offline: no intersphinx)."""

import shutil
from importlib.metadata import version as _version
from pathlib import Path

# the notebooks live in tutorials/ at the top of the repository (executed by
# tests/test_tutorials.py, outputs committed); Sphinx only reads files below docs/
_HERE = Path(__file__).parent
_TUTORIALS = _HERE / "tutorials"
shutil.rmtree(_TUTORIALS, ignore_errors=True)
_TUTORIALS.mkdir()
for _notebook in sorted((_HERE.parent / "tutorials").glob("*.ipynb")):
    shutil.copy2(_notebook, _TUTORIALS / _notebook.name)

# the help text of the command line, included by api.md: generated from the parser at each build
from maxtoki._cli_docs import write_cli_help  # noqa: E402

write_cli_help(_HERE / "generated")

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
