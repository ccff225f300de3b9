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
