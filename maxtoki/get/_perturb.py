from __future__ import annotations

from typing import TYPE_CHECKING

from ._age_acceleration import uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


def perturb(adata: AnnData, *, key: str = "maxtoki_perturb", mod: str = "rna") -> pd.DataFrame:
    """The table written by :func:`maxtoki.tl.perturb` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.perturb`.
    key
        The ``key_added`` used there.
    mod
        Modality of a MuData.

    Returns
    -------
    One row per gene and perturbation kind: ``gene``, ``kind``, ``mean_shift_months``,
    ``sem_months``, ``n_cells`` (cells carrying the gene, or perturbed), ``shift_years``.
    """
    return uns_table(adata, key, "mt.tl.perturb", mod)
