from __future__ import annotations

from typing import TYPE_CHECKING

from .._anndata import resolve_modality
from .._docs import inject_docs
from .._keys import read_uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


@inject_docs
def perturb(adata: AnnData, *, key: str = "maxtoki_perturb", mod: str = "rna") -> pd.DataFrame:
    """The table written by :func:`maxtoki.tl.perturb` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.perturb`.
    key
        ``uns`` key of the table: ``f'{key_added}_perturb'`` of that call.
    {mod}

    Returns
    -------
    One row per gene and perturbation kind: ``gene``, ``kind``, ``mean_shift_months``,
    ``sem_months``, ``n_cells`` (cells carrying the gene, or perturbed), ``shift_years``.
    """
    adata, _ = resolve_modality(adata, mod)
    return read_uns_table(adata, key, "mt.tl.perturb")
