"""Execute the tutorials and store their outputs: ``python tutorials/run.py [NAME …]``.

Runs each notebook top to bottom in a fresh ``python3`` kernel whose working directory is
``tutorials/``, with one OpenMP/BLAS thread (as ``tests/test_tutorials.py`` does), and writes it
back with its outputs and, in its metadata (``metadata['maxtoki']['code_sha256']``), the hash of
the code cells it executed: ``tests/test_tutorials.py`` fails when the code cells change without
a re-run. Without names, every notebook in the folder is run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METADATA_KEY = "maxtoki"


def code_hash(nb) -> str:
    """SHA-256 of the sources of a notebook's code cells, in order (outputs and markdown aside)."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources, ensure_ascii=False).encode()).hexdigest()


def stamp(nb) -> None:
    """Record in the notebook's metadata that its outputs come from its current code cells."""
    nb.metadata[METADATA_KEY] = {"code_sha256": code_hash(nb)}


def stamped_hash(nb) -> str | None:
    """The hash recorded by the last run (``None`` when it was never run by this script)."""
    return nb.metadata.get(METADATA_KEY, {}).get("code_sha256")


def main(argv: list[str]) -> int:
    import nbclient
    import nbformat

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    names = argv or [p.name for p in sorted(HERE.glob("*.ipynb"))]
    for name in names:
        path = HERE / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(HERE)}}
        ).execute()
        stamp(nb)
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
