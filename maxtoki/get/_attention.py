from __future__ import annotations

from typing import TYPE_CHECKING

from ._age_acceleration import uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


def attention_heads(
    adata: AnnData, *, key: str = "maxtoki_attention", mod: str = "rna"
) -> pd.DataFrame:
    """Per-head summary written by :func:`maxtoki.tl.attention` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.attention`.
    key
        The ``key_added`` used there.
    mod
        Modality of a MuData.

    Returns
    -------
    One row per layer and head: mean attention received by gene-set and other genes, their
    ratio (``enrichment``, ``log2_enrichment``), the one-sided Mann–Whitney ``pval`` and gene
    counts.
    """
    return uns_table(adata, key, "mt.tl.attention", mod, field="heads")
