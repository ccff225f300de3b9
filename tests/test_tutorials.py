"""The notebooks in tutorials/: committed with their outputs, and they run top to bottom.

The execution test runs a copy of each notebook in a fresh ``python3`` kernel whose working
directory is ``tutorials/`` (so relative paths resolve); the committed file is never written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT_S = 600

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def _run_script():
    """tutorials/run.py as a module (its code hash is the one it stores)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tutorials_run", TUTORIALS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]


def test_there_are_tutorials():
    assert NOTEBOOKS, f"no notebooks in {TUTORIALS}"


@notebooks
def test_committed_notebook_has_outputs_and_no_errors(path):
    """Docs render the committed outputs (myst-nb does not execute): every code cell has some."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernel must be python3"
    missing, errors = [], []
    for i, cell in _code_cells(nb):
        if not cell.get("outputs"):
            missing.append(i)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                if "Traceback (most recent call last)" in "".join(out.get("text", "")):
                    errors.append(f"cell {i}: traceback printed on stderr")
    assert not missing, (
        f"{path.name}: code cells {missing} have no stored output; re-run "
        f"`python tutorials/run.py {path.stem}` and commit the notebook with its outputs"
    )
    assert not errors, f"{path.name} has error outputs stored:\n" + "\n".join(errors)
    counts = [c.get("execution_count") for _, c in _code_cells(nb)]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: cells were not all executed"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order: {counts}"


@notebooks
def test_stored_outputs_are_from_the_current_code(path):
    """The outputs were made by the code cells shown: tutorials/run.py records their hash."""
    run = _run_script()
    nb = nbformat.read(path, as_version=4)
    stored = run.stamped_hash(nb)
    assert stored is not None, (
        f"{path.name} was not executed by tutorials/run.py (no code hash in its metadata); "
        f"re-run `python tutorials/run.py {path.stem}`"
    )
    assert stored == run.code_hash(nb), (
        f"{path.name}: its code cells changed after its outputs were stored; re-run "
        f"`python tutorials/run.py {path.stem}` and commit the notebook"
    )


def test_the_code_hash_sees_code_and_ignores_outputs_and_markdown():
    run = _run_script()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("x = 1")]
    before = run.code_hash(nb)
    run.stamp(nb)
    assert run.stamped_hash(nb) == before
    nb.cells[0].source = "# another title"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1")]
    assert run.code_hash(nb) == before
    nb.cells[1].source = "x = 2"
    assert run.code_hash(nb) != before
    nb.cells[1].source = "x = 1"
    nb.cells.append(nbformat.v4.new_code_cell(""))
    assert run.code_hash(nb) != before  # a new cell, even empty, has no stored output yet


@pytest.mark.slow
@notebooks
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)  # a copy in memory: the file is never written
    # the kernel inherits this process's environment: one OpenMP/BLAS thread (2 shared cores)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        failing = _failing_cell(nb)
        source = failing.source if failing is not None else "(cell not found)"
        pytest.fail(
            f"{path.name}: a cell raised.\n--- cell source ---\n{source}\n--- error ---\n{e}",
            pytrace=False,
        )
    except nbclient.exceptions.CellTimeoutError as e:
        pytest.fail(f"{path.name}: a cell ran past {CELL_TIMEOUT_S} s: {e}", pytrace=False)
    for i, cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: cell {i} stored an error"


def _failing_cell(nb):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return cell
    return None
