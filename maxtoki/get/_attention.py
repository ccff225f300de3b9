from __future__ import annotations

from typing import TYPE_CHECKING

from .._anndata import resolve_modality
from .._docs import inject_docs
from .._keys import read_uns_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


@inject_docs
def attention_heads(
    adata: AnnData, *, key: str = "maxtoki_attention", mod: str = "rna"
) -> pd.DataFrame:
    """Per-head summary written by :func:`maxtoki.tl.attention` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.attention`.
    key
        ``uns`` key of the summary: ``f'{key_added}_attention'`` of that call.
    {mod}

    Returns
    -------
    One row per layer and head: mean attention received by gene-set and other genes, their
    ratio (``enrichment``, ``log2_enrichment``), the one-sided Mann–Whitney ``pval`` and gene
    counts.
    """
    adata, _ = resolve_modality(adata, mod)
    return read_uns_table(adata, key, "mt.tl.attention", field="heads")
