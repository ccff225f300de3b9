from __future__ import annotations

from typing import TYPE_CHECKING

from ._age_acceleration import uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


def evaluate(adata: AnnData, *, key: str = "maxtoki_evaluate", mod: str = "rna") -> pd.DataFrame:
    """The table stored by :func:`maxtoki.tl.evaluate` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.evaluate`.
    key
        The ``key_added`` used there.
    mod
        Modality of a MuData.

    Returns
    -------
    One row per split and method with the error metrics (months) and the doublet check.
    """
    return uns_table(adata, key, "mt.tl.evaluate", mod)
