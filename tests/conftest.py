"""Shared test set-up."""

from importlib.metadata import version
from pathlib import Path

import pytest
import torch

# One thread: CI and developer machines have 2 cores shared with other work, where a second
# OpenMP thread stalls every small op in waits (a tiny forward went from 1 ms to 0.7 s).
torch.set_num_threads(1)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"

if int(version("pandas").split(".")[0]) >= 3:
    # pandas 3 names cells with its `str` dtype, which anndata writes only when asked
    import anndata

    anndata.settings.allow_write_nullable_strings = True


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The read-only official reference data (../shared/reference); skips when absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"official reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="module")
def cluster():
    """A dask LocalCluster of two single-threaded worker processes under nannies (a killed
    worker is restarted) and its client; skips without ``distributed``."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        worker_class=distributed.Nanny,
    ) as lc, distributed.Client(lc) as client:  # fmt: skip
        client.wait_for_workers(2, timeout=120)
        yield client


@pytest.fixture(autouse=True)
def _restore_settings():
    """Give every test the settings it started with back (some tests quiet the logs)."""
    import dataclasses

    import maxtoki as mt

    names = [field.name.lstrip("_") for field in dataclasses.fields(mt.settings)]
    with mt.settings.override(**{name: getattr(mt.settings, name) for name in names}):
        yield
