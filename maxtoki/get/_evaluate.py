from __future__ import annotations

from typing import TYPE_CHECKING

from .._anndata import resolve_modality
from .._docs import inject_docs
from .._keys import read_uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


@inject_docs
def evaluate(adata: AnnData, *, key: str = "maxtoki_evaluate", mod: str = "rna") -> pd.DataFrame:
    """The table stored by :func:`maxtoki.tl.evaluate` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.evaluate`.
    key
        ``uns`` key of the table: ``f'{key_added}_evaluate'`` of that call.
    {mod}

    Returns
    -------
    One row per split and method with the error metrics (months) and the generated-cell checks.
    """
    adata, _ = resolve_modality(adata, mod)
    return read_uns_table(adata, key, "mt.tl.evaluate")
