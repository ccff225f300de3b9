"""The house rules that keep the package changeable, checked on its source.

- no module imports another subpackage's private module (``from ..tl._utils import …``):
  subpackages talk through the names their ``__init__`` exports; shared internals live in the
  top-level private modules (``maxtoki/_keys.py``, ``_docs.py``, ``_validate.py``, ``_vocab.py``);
- no function is longer than 150 lines (``def`` line to last line, docstring included);
- the trainer module stays under 450 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "maxtoki"
MAX_FUNCTION_LINES = 150
MAX_TRAINER_LINES = 450


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def private_imports(path: Path, source: str | None = None) -> list[str]:
    """``module:line name`` for each import of another subpackage's private module."""
    here = _dotted(path)
    package = here if path.name == "__init__.py" else here[:-1]
    own_sub = package[1] if len(package) > 1 else None
    found = []
    tree = ast.parse(path.read_text() if source is None else source)
    for node in ast.walk(tree):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            targets = [module] + [[*module, alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        hits = set()
        for target in targets:
            if len(target) < 3 or target[0] != "maxtoki":
                continue
            sub, rest = target[1], target[2:]
            if sub.startswith("_") or sub == own_sub:
                continue  # a top-level private module, or the module's own subpackage
            private = [i for i, part in enumerate(rest) if part.startswith("_")]
            if private:
                hits.add(".".join(target[: 3 + private[0]]))
        found += [f"{'.'.join(here)}:{node.lineno} {hit}" for hit in sorted(hits)]
    return found


def long_functions(path: Path, source: str | None = None, limit: int = MAX_FUNCTION_LINES):
    """``module:line name (n)`` for each function longer than ``limit`` lines."""
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{'.'.join(_dotted(path))}:{node.lineno} {node.name} ({n})")
    return out


def test_no_private_imports_across_subpackages():
    found = [hit for path in _modules() for hit in private_imports(path)]
    assert not found, "imports of another subpackage's private module:\n" + "\n".join(found)


def test_no_function_over_the_size_limit():
    found = [hit for path in _modules() for hit in long_functions(path)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_trainer_is_short():
    n = len((PACKAGE / "train" / "_trainer.py").read_text().splitlines())
    assert n <= MAX_TRAINER_LINES, f"train/_trainer.py has {n} lines"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..tl._utils import x", ["maxtoki.tl._utils"]),
        ("from ..tl import _utils", ["maxtoki.tl._utils"]),
        ("import maxtoki.train._prompts", ["maxtoki.train._prompts"]),
        ("from maxtoki.train._prompts import x", ["maxtoki.train._prompts"]),
        ("from ..tl import predict_time", []),
        ("from .._keys import slot", []),
        ("from ._utils import x", []),
        ("from . import _utils", []),
    ],
)
def test_the_import_check_catches_what_it_claims(source, expected):
    found = private_imports(PACKAGE / "pl" / "_probe.py", source)
    assert [hit.split(" ")[1] for hit in found] == expected


def test_the_size_check_catches_what_it_claims():
    short = "def f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1)
    long = "def g():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert long_functions(PACKAGE / "pl" / "_probe.py", short) == []
    assert long_functions(PACKAGE / "pl" / "_probe.py", long) == ["maxtoki.pl._probe:1 g (151)"]


def test_predict_time_crosses_three_packages():
    """One ``predict_time`` call runs code of at most three subpackages (tl, pp, models)."""
    import sys

    import maxtoki as mt

    adata = mt.datasets.aging_atlas(n_donors=16, n_cells_per_donor=6, n_genes=200, seed=0)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    config = mt.models.MaxTokiConfig.preset("tiny", **vocab.model_config_fields())
    model = mt.models.MaxToki(config, vocab=vocab)
    kw = {"model": model, "reference_key": None, "donor_key": None, "max_genes": 8, "device": "cpu"}
    mt.tl.predict_time(adata, n_contexts=1, **kw)  # warm up
    seen: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        mt.tl.predict_time(adata, n_contexts=2, **kw)
    finally:
        sys.setprofile(None)
    root = str(PACKAGE)
    parts = {Path(f).relative_to(root).parts for f in seen if f.startswith(root)}
    packages = sorted({p[0] for p in parts if len(p) > 1})
    assert packages == ["models", "pp", "tl"], packages
