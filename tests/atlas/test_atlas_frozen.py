"""The simulated world is frozen: ``aging_atlas(seed=0)`` gives the same cells and truth forever.

The science issue asks for wins from the method, not from an easier world, so any change to the
generator (sizes, noise, programs) must fail here. Floats are compared after rounding to
8 decimals, so that a last-bit difference of a vectorised ``exp`` on another CPU does not count.
"""

import hashlib

import numpy as np
import pandas as pd

import maxtoki as mt

COUNTS = "4263ca3e3393ab78"
TRUTH = "5b5307375603f8aa"


def _update(h, value) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            h.update(str(k).encode())
            _update(h, value[k])
        return
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        arr = np.round(arr.astype(np.float64), 8)
    elif arr.dtype.kind in "OUS":
        arr = np.asarray([str(v) for v in arr.ravel()], dtype=object)
        h.update("\x1f".join(arr).encode())
        return
    h.update(np.ascontiguousarray(arr).tobytes())


def _truth_hash(adata) -> str:
    h = hashlib.sha256()
    for frame in (adata.obs, adata.var):
        _update(h, list(frame.index))
        for column in frame.columns:
            h.update(column.encode())
            col = frame[column]
            _update(h, col.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col)
    _update(h, dict(adata.varm))
    _update(h, dict(adata.obsm))
    _update(h, {k: v for k, v in adata.uns["aging_atlas"].items() if k != "params"})
    return h.hexdigest()[:16]


def test_default_atlas_is_frozen():
    adata = mt.datasets.aging_atlas(seed=0)
    assert adata.shape == (4000, 1500)
    x = adata.X.tocsr()
    h = hashlib.sha256()
    for arr in (x.indptr, x.indices, x.data):
        h.update(np.ascontiguousarray(arr).tobytes())
    assert h.hexdigest()[:16] == COUNTS
    assert _truth_hash(adata) == TRUTH
