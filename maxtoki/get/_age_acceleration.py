from __future__ import annotations

from typing import TYPE_CHECKING

from .._anndata import resolve_modality
from .._docs import inject_docs
from .._keys import read_uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


@inject_docs
def age_acceleration(
    adata: AnnData, *, key: str = "maxtoki_age_acceleration", mod: str = "rna"
) -> pd.DataFrame:
    """The table written by :func:`maxtoki.tl.age_acceleration` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.age_acceleration`.
    key
        ``uns`` key of the table: ``f'{key_added}_age_acceleration'`` of that call.
    {mod}

    Returns
    -------
    One row per stratum and group: cell and donor counts, raw mean accelerations, the adjusted
    effect in months and years with its t interval, and the two p-values.
    """
    adata, _ = resolve_modality(adata, mod)
    return read_uns_table(adata, key, "mt.tl.age_acceleration")
