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
