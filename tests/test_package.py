import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

import maxtoki as mt

HEAVY = ("torch", "numba", "matplotlib", "scanpy", "seaborn")


def test_import_is_light():
    code = (
        "import sys, time; t = time.perf_counter(); import anndata; t_ad = time.perf_counter();"
        "import maxtoki as mt; mt.pp; mt.tl; mt.get; mt.datasets; t_mt = time.perf_counter();"
        f"print(t_mt - t_ad, *(m for m in {HEAVY!r} if m in sys.modules), sep='|')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, *heavy = out.stdout.strip().split("|")
    assert heavy == [], f"`import maxtoki` (with pp/tl/get/datasets) imported {heavy}"
    assert float(seconds) < 1.0


def test_subpackages_are_lazy_and_listed():
    assert set(mt._SUBPACKAGES) <= set(dir(mt))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mt.nope  # noqa: B018


def test_settings_validate():
    old = mt.settings.verbosity
    try:
        mt.settings.verbosity = "debug"
        assert mt.settings.verbosity == 4
        with pytest.raises(ValueError, match="verbosity"):
            mt.settings.verbosity = 7
        with pytest.raises(ValueError, match="verbosity"):
            mt.settings.verbosity = "loud"
    finally:
        mt.settings.verbosity = old
    assert mt.settings.resolve_device("cpu") == "cpu"
    assert mt.settings.show_progress == (old >= 2)
    with mt.settings.override(verbosity="warning", batch_size=3, progress=False) as s:
        assert s.verbosity == 1 and mt.settings.batch_size == 3 and not s.show_progress
    assert mt.settings.verbosity == old and mt.settings.batch_size == 32 and mt.settings.progress
    with pytest.raises(ValueError, match="verbosity"), mt.settings.override(verbosity=9):
        pass
    assert mt.settings.verbosity == old
    with pytest.raises(ValueError, match="unknown settings"), mt.settings.override(color=1):
        pass
    assert mt.settings.resolve_device("auto") in {"cpu", "cuda"}
    assert mt.settings.n_threads >= 1


def test_logging_respects_verbosity_and_reports_time(capsys):
    old = mt.settings.verbosity
    try:
        mt.settings.verbosity = 2
        start = mt.logging.info("starting")
        mt.logging.info("finished", time=start)
        mt.logging.debug("hidden")
        err = capsys.readouterr().err
        assert "starting" in err
        assert "finished (" in err and "s)" in err
        assert "hidden" not in err
    finally:
        mt.settings.verbosity = old


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "maxtoki._cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout and "train" in out.stdout


def test_readme_benchmark_table_is_the_latest_results():
    root = Path(__file__).resolve().parents[1]
    results = (root / "benchmarks" / "results" / "latest.md").read_text().strip()
    readme = (root / "README.md").read_text()
    header, table = results.split("\n\n", 1)
    assert header.startswith("Machine: ") and header in readme
    assert table in readme, "re-copy benchmarks/results/latest.md into the README"


@pytest.mark.slow
def test_readme_usage_runs(tmp_path):
    root = Path(__file__).resolve().parents[1]
    code = (root / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    assert "steps=1000" in code
    code = "import torch\ntorch.set_num_threads(1)\n" + code.replace("steps=1000", "steps=10")
    code += "\nassert adata.obs['maxtoki_age'].notna().all() and 'X_maxtoki' in adata.obsm\n"
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_test_folders_shadow_no_installed_package():
    """``tests/`` is on the import path, so a folder named like a package would shadow it.

    A ``tests/datasets`` folder once made ``import datasets`` succeed as an empty namespace
    package where the Hugging Face package was missing.
    """
    import importlib.util

    tests = Path(__file__).parent
    folders = [p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    third_party = {"datasets", "transformers", "torch", "numba", "scanpy", "anndata", "mudata"}
    assert not set(folders) & third_party, f"rename the test folders {set(folders) & third_party}"
    for name in folders:
        spec = importlib.util.find_spec(name)
        where = None if spec is None else spec.origin or list(spec.submodule_search_locations)
        assert spec is None or str(tests) in str(where), f"tests/{name} shadows {where}"


# --- dependencies: each declared one is used, each used one is declared -------------------------
ROOT = Path(__file__).resolve().parents[1]
#: optional packages a hint names without an extra of their own (they come with other packages)
HINTED_WITHOUT_EXTRA = {"IPython", "loompy"}


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dist_name(requirement: str) -> str:
    import re

    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@functools.cache
def _installed() -> dict[str, set[str]]:
    """Import names of each installed distribution."""
    from importlib.metadata import packages_distributions

    out: dict[str, set[str]] = {}
    for mod, dists in packages_distributions().items():
        for d in dists:
            out.setdefault(d.lower().replace("_", "-"), set()).add(mod)
    return out


def _import_names(dist: str) -> set[str]:
    """Top-level import names of an installed distribution (its own name when not installed)."""
    names = _installed().get(dist, set())
    return {n for n in names if not n.startswith("_")} or {dist.replace("-", "_")}


def _imports_of_the_package() -> dict[str, list[tuple[str, bool]]]:
    """Third-party top-level modules imported by maxtoki/: ``{name: [(file, at module level)]}``."""
    import ast

    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((ROOT / "maxtoki").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:  # module level, TYPE_CHECKING blocks left out
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                top.add(id(node))
            elif isinstance(node, ast.Try):
                top.update(id(n) for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root in sys.stdlib_module_names or root in ("maxtoki", "__future__"):
                    continue
                found.setdefault(root, []).append((str(path.relative_to(ROOT)), id(node) in top))
    for call in _import_optional_calls():
        found.setdefault(call[0], []).append((call[2], False))
    return found


def _import_optional_calls() -> list[tuple[str, str, str]]:
    """``(package, extra, file)`` of every ``import_optional`` call in maxtoki/."""
    import ast

    calls = []
    for path in sorted((ROOT / "maxtoki").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "import_optional":
                extra = next(k.value.value for k in node.keywords if k.arg == "extra")
                calls.append((node.args[0].value, extra, str(path.relative_to(ROOT))))
    return calls


def test_every_dependency_is_imported_by_the_package():
    """A base dependency maxtoki never imports (h5py, mudata once) does not belong there."""
    imported = set(_imports_of_the_package())
    unused = [
        dist for dist in map(_dist_name, _pyproject()["project"]["dependencies"])
        if not _import_names(dist) & imported
    ]  # fmt: skip
    assert not unused, f"declared in pyproject but never imported by maxtoki: {unused}"


def test_every_imported_package_is_declared():
    """Base dependencies may be imported anywhere; others only inside functions, and declared."""
    project = _pyproject()["project"]
    base = set().union(*(_import_names(_dist_name(r)) for r in project["dependencies"]))
    extras = project["optional-dependencies"]
    in_extras = set().union(*(_import_names(_dist_name(r)) for e in extras.values() for r in e))
    for name, where in sorted(_imports_of_the_package().items()):
        if name in base:
            continue
        at_top = [f for f, top in where if top]
        assert not at_top, f"{name} (optional) is imported at module level in {at_top}"
        assert name in in_extras | HINTED_WITHOUT_EXTRA, (
            f"maxtoki imports {name} (in {where[0][0]}), which no dependency or extra declares"
        )


def test_import_optional_names_an_extra_that_installs_the_package():
    extras = _pyproject()["project"]["optional-dependencies"]
    calls = _import_optional_calls()
    assert {c[0] for c in calls} >= {"ipywidgets", "scanpy"}
    for package, extra, path in calls:
        assert extra in extras, f"{path}: extra {extra!r} is not in pyproject"
        provided = set().union(*(_import_names(_dist_name(r)) for r in extras[extra]))
        assert package in provided, f"{path}: maxtoki[{extra}] does not install {package}"


def test_every_extra_named_in_code_and_docs_exists():
    import re

    extras = set(_pyproject()["project"]["optional-dependencies"])
    files = [*(ROOT / "maxtoki").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for path in files:
        for extra in re.findall(r"maxtoki\[([\w,]+)\]", path.read_text()):
            unknown = set(extra.split(",")) - extras
            assert not unknown, f"{path.name} names the extras {unknown}, not in pyproject"


def test_the_test_extra_installs_every_extra_the_tests_use():
    """`.ci/run` installs `.[test]` only: the packages of the tested extras must be in it."""
    extras = _pyproject()["project"]["optional-dependencies"]
    test = {_dist_name(r) for r in extras["test"]}
    for extra in ("explore", "scanpy", "hub", "parquet", "dask"):
        assert {_dist_name(r) for r in extras[extra]} <= test, extra
    assert "pip install -e '.[test]'" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize(
    ("package", "extra"), [("ipywidgets", "explore"), ("scanpy", "scanpy"), ("sklearn", "x")]
)
def test_a_missing_optional_package_says_how_to_install_it(package, extra, monkeypatch):
    from maxtoki._optional import import_optional

    assert import_optional(package, extra=extra, purpose="this").__name__ == package
    monkeypatch.setitem(sys.modules, package, None)
    dist = {"sklearn": "scikit-learn"}.get(package, package)
    with pytest.raises(ImportError) as info:
        import_optional(package, extra=extra, purpose="mt.pl.something")
    assert str(info.value) == (
        f"mt.pl.something needs the optional package `{dist}`: pip install 'maxtoki[{extra}]' "
        f"(or pip install {dist})"
    )


def test_partial_benchmark_run_keeps_the_other_rows_of_the_same_machine(tmp_path):
    """``python -m benchmarks NAME`` replaces NAME's rows and keeps the rest, with their dates."""
    import importlib.util
    import json

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_main", root / "benchmarks/__main__.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    old = [
        {"benchmark": "tokenize", "setting": "a", "date": "2026-01-01"},
        {"benchmark": "training_throughput", "setting": "old", "date": "2026-01-01"},
        {"benchmark": "generation", "setting": "b", "date": "2026-01-01"},
    ]
    path = tmp_path / "latest.json"
    new = [{"benchmark": "training_throughput", "setting": "new", "date": "2026-02-02"}]

    path.write_text(json.dumps({"machine": bench.machine(), "rows": old}))
    rows, dates = bench._with_earlier_rows(new, path, ["training_throughput"])
    assert [r["setting"] for r in rows] == ["a", "new", "b"]
    assert dates == "tokenize, generation 2026-01-01; training_throughput 2026-02-02"

    path.write_text(json.dumps({"machine": "another machine", "rows": old}))
    assert bench._with_earlier_rows(new, path, ["training_throughput"]) == (new, "2026-02-02")
    path.write_text(json.dumps({"machine": bench.machine(), "rows": old}))
    assert bench._with_earlier_rows(new, path, bench.BENCHMARKS) == (new, "2026-02-02")
