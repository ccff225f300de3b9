from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import positive_int
from .._docs import inject_docs
from .._keys import (
    TOKENS_KEY,
    check_key,
    h5ad_safe,
    random_state_param,
    read_tokens,
    slot,
    table_to_uns,
)
from .._validate import max_genes_of, model_vocab
from ._utils import as_generator, bh_adjust, cut_cell, finish, prepare, vocab_columns

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki


@inject_docs
def attention(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    n_cells: int | None = 200,
    layers: Sequence[int] | None = None,
    gene_set: str | Sequence[str] | np.ndarray | None = None,
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    tokens_key: str = TOKENS_KEY,
    key_added: str = "maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """Attention each gene receives, per layer and head, and its enrichment on a gene set.

    Cells are read one per sequence (``<bos> genes… <eos>``) through the eager attention path,
    the only one that returns attention probabilities. For a gene token at position ``j`` the
    attention it receives in a head is the mean over later positions ``i > j`` of
    ``A[i, j] · (i + 1)``: attention relative to a uniform head (1 = uniform), which removes
    the causal mask's bias towards early, highly ranked positions. Values are averaged over the
    cells in which the gene is among the top ``max_genes``.

    Per head, the enrichment on ``gene_set`` (default ``var['is_tf']``, transcription factors)
    is the mean attention received by set genes divided by that of the other genes, with a
    one-sided Mann–Whitney U p-value (set genes receive more) and its Benjamini–Hochberg
    adjustment over the heads.

    Parameters
    ----------
    {adata_tokens}
    {model}
    {vocab}
    n_cells
        Cells to read (a random subset; ``None`` for all).
    layers
        Layer indices to report (negative counts from the end); default every layer.
    gene_set
        A boolean ``var`` column name, a boolean mask over ``var``, or gene names
        (``var_names``); default ``'is_tf'``.
    {max_genes}
    {batch_size}
    {device}
    {random_state}
    {tokens_key}
    {key_added}
    {mod}
    {copy}

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``varm[f'{key_added}_attention']``
        ``(n_vars, n_layers · n_heads)`` float32 mean attention received (relative to uniform),
        columns in ``uns[...]['columns']`` order (``'L{layer}H{head}'``); ``nan`` for genes
        outside the vocabulary or never among a read cell's top genes.
    ``uns[f'{key_added}_attention']``
        ``heads``: one row per layer and head: ``layer``, ``head``, ``mean_set``,
        ``mean_other``, ``enrichment`` (ratio), ``log2_enrichment``, ``pval`` (one-sided
        Mann–Whitney U), ``pval_adj`` (Benjamini–Hochberg), ``n_set``, ``n_other`` (genes with
        a value); :func:`maxtoki.get.attention_heads` returns it as a DataFrame. ``columns``:
        the names of the ``varm`` columns. ``params``: the parameters used.
    """
    from ..models import BatchRunner

    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info("reading MaxToki attention (eager path)")
    vocab = model_vocab(model, vocab, what="mt.tl.attention")
    check_key("key_added", key_added)
    max_genes = max_genes_of(model, max_genes)
    in_set = _gene_set(adata, gene_set)
    n_layers, n_heads = int(model.config.num_hidden_layers), int(model.config.num_attention_heads)
    layer_idx = _layers(layers, n_layers)
    cap = int(model.config.max_position_embeddings) - 2
    max_genes = cap if max_genes is None else min(int(max_genes), cap)
    gen = as_generator(random_state)
    rows = np.arange(adata.n_obs)
    n_cells = positive_int("n_cells", n_cells, optional=True)
    if n_cells is not None and n_cells < adata.n_obs:
        rows = np.sort(gen.choice(adata.n_obs, n_cells, replace=False))
    cells = [cut_cell(c, max_genes) for c in read_tokens(adata, tokens_key, vocab).cells(rows)]
    cells = [c for c in cells if len(c) > 2]
    if not cells:
        raise ValueError(
            "the chosen cells have no vocabulary genes; check `mt.pp.tokenize`'s output"
        )
    cols = vocab_columns(adata, vocab, tokens_key)
    runner = BatchRunner(model, batch_size=batch_size, device=device)
    n_cols = len(layer_idx) * n_heads
    sums = np.zeros((len(vocab), n_cols))
    counts = np.zeros(len(vocab))
    for i, received in runner.attention(cells, layers=layer_idx):
        genes = cells[i][1:-1]
        vals = received[:, 1 : len(cells[i]) - 1].T  # (genes, cols)
        ok = np.isfinite(vals).all(axis=1)  # the last gene has no later query but <eos>
        np.add.at(sums, genes[ok], vals[ok])
        np.add.at(counts, genes[ok], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_token = sums / counts[:, None]
    varm = np.full((adata.n_vars, n_cols), np.nan, dtype=np.float32)
    varm[cols.var_rows] = per_token[cols.token_ids]
    names = [f"L{layer}H{h}" for layer in layer_idx for h in range(n_heads)]
    heads = _head_table(varm, in_set, layer_idx, n_heads)

    key = slot(key_added, "attention")
    adata.varm[key] = varm
    adata.uns[key] = {
        "heads": table_to_uns(heads),
        "columns": np.asarray(names, dtype=object),
        "params": h5ad_safe(
            {
                "n_cells": len(cells),
                "layers": layer_idx,
                "gene_set": gene_set
                if isinstance(gene_set, str)
                else ("is_tf" if gene_set is None else "given"),
                "n_set_genes": int(in_set.sum()),
                "max_genes": max_genes,
                "normalisation": "attention x visible keys (1 = uniform), mean over later queries",
                "test": "one-sided Mann-Whitney U, set genes vs other genes, per head; "
                "Benjamini-Hochberg over heads",
                "device": str(runner.device),
                "dtype": runner.dtype_name,
                "random_state": random_state_param(random_state),
                "tokens_key": tokens_key,
                "vocab_hash": vocab.hash,
            }
        ),
    }
    top = heads.sort_values("log2_enrichment", ascending=False).iloc[0]
    logg.info(
        f"    added varm[{key!r}] and uns[{key!r}] ({n_cols} heads; strongest gene-set "
        f"enrichment {top['enrichment']:.2f}x in L{int(top['layer'])}H{int(top['head'])})",
        time=start,
    )
    return finish(data, mdata, mod, [], copy)


def _layers(layers, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(n_layers))
    idx = list(np.atleast_1d(layers))
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in idx):
        raise ValueError(f"layers must be layer indices (integers) or None, got {layers!r}")
    bad = [int(v) for v in idx if not -n_layers <= v < n_layers]
    if bad:
        raise ValueError(f"layers {bad} are out of range for a model with {n_layers} layers")
    return sorted({int(v) % n_layers for v in idx})


def _gene_set(adata: AnnData, gene_set) -> np.ndarray:
    if gene_set is None:
        if "is_tf" not in adata.var.columns:
            raise ValueError(
                "var has no 'is_tf' column (transcription factors, the default gene set); pass "
                "`gene_set=` as a boolean var column, a boolean mask or a list of gene names"
            )
        gene_set = "is_tf"
    if isinstance(gene_set, str):
        if gene_set not in adata.var.columns:
            raise ValueError(
                f"var has no column {gene_set!r}; pass a boolean var column as `gene_set`"
            )
        mask = adata.var[gene_set].to_numpy()
        if mask.dtype != bool:
            raise ValueError(f"var[{gene_set!r}] must be boolean to serve as `gene_set`")
    else:
        arr = np.asarray(gene_set)
        if arr.dtype == bool:
            if arr.shape != (adata.n_vars,):
                raise ValueError(
                    f"a boolean gene_set must have one entry per gene ({adata.n_vars})"
                )
            mask = arr
        else:
            names = pd.Index(arr.astype(str))
            missing = names.difference(adata.var_names)
            if len(missing):
                raise ValueError(f"gene_set names {list(missing[:5])} are not in var_names")
            mask = adata.var_names.isin(names)
    if not mask.any() or mask.all():
        raise ValueError("gene_set must contain some genes but not all of them")
    return mask


def _head_table(
    varm: np.ndarray, in_set: np.ndarray, layer_idx: list[int], n_heads: int
) -> pd.DataFrame:
    from scipy.stats import mannwhitneyu

    rows = []
    for c in range(varm.shape[1]):
        v = varm[:, c]
        a, b = v[in_set & np.isfinite(v)], v[~in_set & np.isfinite(v)]
        mean_a = float(a.mean()) if len(a) else np.nan
        mean_b = float(b.mean()) if len(b) else np.nan
        ratio = mean_a / mean_b if len(a) and len(b) and mean_b > 0 else np.nan
        p = float(mannwhitneyu(a, b, alternative="greater").pvalue) if len(a) and len(b) else np.nan
        rows.append(
            {
                "layer": layer_idx[c // n_heads],
                "head": c % n_heads,
                "mean_set": mean_a,
                "mean_other": mean_b,
                "enrichment": ratio,
                "log2_enrichment": float(np.log2(ratio))
                if np.isfinite(ratio) and ratio > 0
                else np.nan,
                "pval": p,
                "n_set": len(a),
                "n_other": len(b),
            }
        )
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("pval") + 1, "pval_adj", bh_adjust(table["pval"]))
    return table
