"""The documentation keeps up with the code: every public name has an API entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import maxtoki as mt

DOCS = Path(__file__).resolve().parents[1] / "docs"
SUBPACKAGES = ("pp", "tl", "pl", "get", "models", "train", "datasets")


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_public_name_has_an_api_entry(package):
    listed = set(re.findall(rf"^\s+({package}\.\w+)\s*$", (DOCS / "api.md").read_text(), re.M))
    module = getattr(mt, package)
    own = [n for n in module.__all__ if _home(getattr(module, n)) in (package, None)]
    public = {f"{package}.{name}" for name in own}  # re-exports are documented where they live
    assert not public - listed, f"add to docs/api.md: {sorted(public - listed)}"
    assert not listed - public, f"not public (remove from docs/api.md): {sorted(listed - public)}"


def test_every_top_level_name_and_logging_function_has_an_api_entry():
    text = (DOCS / "api.md").read_text()
    listed = set(re.findall(r"^\s+([\w.]+)\s*$", text, re.M))
    top = {n for n in mt.__all__ if n not in (*SUBPACKAGES, "__version__", "logging")}
    logging_functions = {
        f"logging.{n}" for n in mt.logging.__all__ if callable(getattr(mt.logging, n))
        and not isinstance(getattr(mt.logging, n), type)
    }  # fmt: skip
    missing = sorted((top | logging_functions) - listed)
    assert not missing, f"add to docs/api.md: {missing}"


def test_every_command_line_verb_has_an_api_entry():
    """The CLI section of docs/api.md has a heading and the help text of every verb."""
    import argparse

    from maxtoki._cli import _parser

    (sub,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    text = (DOCS / "api.md").read_text()
    for verb in sub.choices:
        assert f"### `maxtoki {verb}`" in text, f"add a `maxtoki {verb}` section to docs/api.md"
        assert f"generated/cli_{verb}.txt" in text, f"include the --help of `maxtoki {verb}`"


@pytest.mark.parametrize(
    "page", ["from_geneformer", "contributing", "changelog", "api", "compatibility"]
)
def test_every_page_is_in_the_table_of_contents(page):
    toc = (DOCS / "index.md").read_text().split("{toctree}", 1)[1]
    assert (DOCS / f"{page}.md").is_file() and re.search(rf"^{page}$", toc, re.M), page


def test_contributing_gives_the_readme_test_command():
    readme = (DOCS.parent / "README.md").read_text()
    command = re.search(r"^(python3 -m venv .*'\.\[test\]'.*pytest)$", readme, re.M).group(1)
    contributing = (DOCS / "contributing.md").read_text()
    assert command in contributing
    assert "tutorials/run.py" in contributing and "sphinx -W" in contributing
    assert "ruff check ." in contributing and "python -m benchmarks" in contributing


def test_the_changelog_is_for_the_package_version():
    import tomllib

    version = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^## {re.escape(version)}\b", (DOCS / "changelog.md").read_text(), re.M)
    assert version == mt.__version__


def test_citation_and_licence_match_the_package():
    import tomllib

    import yaml

    root = DOCS.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == project["version"] and cff["license"] == project["license"]
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and "aging" in paper["title"] and paper["authors"]
    assert all("family-names" in a and "given-names" in a for a in paper["authors"])
    licence = (root / "LICENSE").read_text()
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a pointer to it


def _home(obj) -> str | None:
    """The subpackage an object is defined in (``None`` outside the subpackages)."""
    parts = getattr(obj, "__module__", "").split(".")
    return (
        parts[1] if len(parts) > 1 and parts[0] == "maxtoki" and parts[1] in SUBPACKAGES else None
    )


def test_the_slot_table_is_the_slot_contract():
    from maxtoki._keys import SLOTS

    rows = {}
    for line in (DOCS / "slots.md").read_text().splitlines():
        m = re.match(r"^\| `(mt\.[^`]+)` \| (.+) \|$", line)
        if m:
            rows[m.group(1)] = re.findall(r"`(\w+)\['([^']+)'\]`", m.group(2))
    expected = {
        call: [(kind, name.format(k="k")) for kind, name in slots] for call, slots in SLOTS.items()
    }
    assert rows == expected


@pytest.mark.parametrize("package", ("pp", "tl", "pl", "get"))
def test_docstrings_have_their_fragments(package):
    """Shared parameters come from maxtoki/_docs.py: no placeholder left, one wording each."""
    from maxtoki._docs import FRAGMENTS

    module = getattr(mt, package)
    for name in module.__all__:
        doc = getattr(module, name).__doc__ or ""
        left = re.findall(r"^\s*\{(\w+)\}\s*$", doc, re.M)
        assert not left, f"{package}.{name}: placeholders {left} not filled"
        for fragment in ("device", "random_state", "tokens_key", "mod"):
            head = FRAGMENTS[fragment].splitlines()
            if re.search(rf"^\s+{fragment}\s*$", doc, re.M):
                assert head[1].strip() in doc, f"{package}.{name}: `{fragment}` not from _docs.py"


def test_every_compatibility_row_names_a_test_that_exists():
    """The table of docs/compatibility.md: each row's test is a real test function."""
    rows = [r for r in (DOCS / "compatibility.md").read_text().splitlines() if r.startswith("| ")]
    tests = [re.search(r"`(tests/[\w/]+\.py)::(\w+)`", r) for r in rows[1:]]
    assert len(rows) > 15 and all(tests), "every row ends with `tests/<file>.py::<test>`"
    root = DOCS.parent
    for match in tests:
        path, name = match.groups()
        assert re.search(rf"^def {name}\(", (root / path).read_text(), re.M), f"{path}::{name}"
