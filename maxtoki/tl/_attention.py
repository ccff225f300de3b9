from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import h5ad_safe
from ._utils import (
    as_generator,
    batch_size_of,
    batches,
    cell_tokens,
    check_model,
    cut_cell,
    finish,
    max_genes_of,
    model_on_device,
    pad_cells,
    positive_int,
    prepare,
    rng_param,
    table_to_uns,
    token_matrix,
    vocab_columns,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab


def attention(
    adata: AnnData,
    model: MaxToki,
    *,
    vocab: GeneVocab,
    n_cells: int | None = 200,
    layers: Sequence[int] | None = None,
    gene_set: str | Sequence[str] | np.ndarray | None = None,
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    rng: int | np.random.Generator | None = 0,
    key_added: str = "maxtoki_attention",
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
    one-sided Mann–Whitney U p-value (set genes receive more).

    Parameters
    ----------
    adata
        AnnData (or MuData) tokenized by :func:`maxtoki.pp.tokenize` with ``vocab``.
    model
        A :class:`~maxtoki.models.MaxToki`.
    vocab
        The model's :class:`~maxtoki.pp.GeneVocab`.
    n_cells
        Cells to read (a random subset; ``None`` for all).
    layers
        Layer indices to report (negative counts from the end); default every layer.
    gene_set
        A boolean ``var`` column name, a boolean mask over ``var``, or gene names
        (``var_names``); default ``'is_tf'``.
    max_genes
        Top-ranked genes kept per cell: pass the ``max_genes_per_cell`` the model was trained with
        (:func:`maxtoki.tl.train` uses 64). ``None``: the value recorded in
        ``model.config.max_genes_per_cell`` if set, else every gene up to the model's context.
    batch_size
        Cells per forward pass (default ``mt.settings.batch_size``).
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``…
    rng
        Seed or generator for the cell subset.
    key_added
        Key of the ``varm`` and ``uns`` entries.
    mod
        Modality of MuData inputs.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``varm[key_added]``
        ``(n_vars, n_layers · n_heads)`` float32 mean attention received (relative to uniform),
        columns in ``uns[key_added]['columns']`` order (``'L{layer}H{head}'``); ``nan`` for genes
        outside the vocabulary or never among a read cell's top genes.
    ``uns[key_added]['heads']``
        One row per layer and head: ``layer``, ``head``, ``mean_set``, ``mean_other``,
        ``enrichment`` (ratio), ``log2_enrichment``, ``pval`` (one-sided Mann–Whitney U),
        ``n_set``, ``n_other`` (genes with a value). :func:`maxtoki.get.attention_heads` returns
        it as a DataFrame.
    ``uns[key_added]['columns']``
        Names of the ``varm`` columns.
    ``uns[key_added]['params']``
        The parameters used (gene set, number of cells…).
    """
    import torch

    from ._model_ops import attention_received

    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info("reading MaxToki attention (eager path)")
    check_model(model, vocab)
    size = batch_size_of(batch_size)
    max_genes = max_genes_of(model, max_genes)
    in_set = _gene_set(adata, gene_set)
    n_layers, n_heads = int(model.config.num_hidden_layers), int(model.config.num_attention_heads)
    if layers is None:
        layer_idx = list(range(n_layers))
    else:
        layer_idx = list(np.atleast_1d(layers))
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in layer_idx):
            raise ValueError(f"layers must be layer indices (integers) or None, got {layers!r}")
        layer_idx = [int(v) for v in layer_idx]
        bad = [v for v in layer_idx if not -n_layers <= v < n_layers]
        if bad:
            raise ValueError(f"layers {bad} are out of range for a model with {n_layers} layers")
        layer_idx = sorted({v % n_layers for v in layer_idx})
    cap = int(model.config.max_position_embeddings) - 2
    max_genes = cap if max_genes is None else min(int(max_genes), cap)
    tokens = token_matrix(adata, vocab)
    cols = vocab_columns(adata, vocab)
    gen = as_generator(rng)
    rows = np.arange(adata.n_obs)
    n_cells = positive_int("n_cells", n_cells, optional=True)
    if n_cells is not None and n_cells < adata.n_obs:
        rows = np.sort(gen.choice(adata.n_obs, n_cells, replace=False))
    cells = [cut_cell(c, max_genes) for c in cell_tokens(tokens[rows])]
    cells = [c for c in cells if len(c) > 2]
    if not cells:
        raise ValueError(
            "the chosen cells have no vocabulary genes; check `mt.pp.tokenize`'s output"
        )

    n_cols = len(layer_idx) * n_heads
    sums = np.zeros((len(vocab), n_cols))
    counts = np.zeros(len(vocab))
    dev = model_on_device(model, device)
    order = np.argsort([len(c) for c in cells], kind="stable")
    with torch.inference_mode():
        for sl in batches(len(order), size, "attention"):
            batch = [cells[i] for i in order[sl]]
            ids, mask = pad_cells(batch)
            rec = attention_received(model, ids.to(dev), mask.to(dev))  # (B, L, H, T)
            rec = rec[:, layer_idx].reshape(len(batch), n_cols, -1).float().cpu().numpy()
            for b, cell in enumerate(batch):
                genes = cell[1:-1]
                vals = rec[b, :, 1 : len(cell) - 1].T  # (genes, cols)
                ok = np.isfinite(vals).all(axis=1)  # the last gene has no later query but <eos>
                np.add.at(sums, genes[ok], vals[ok])
                np.add.at(counts, genes[ok], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_token = sums / counts[:, None]
    varm = np.full((adata.n_vars, n_cols), np.nan, dtype=np.float32)
    varm[cols.var_rows] = per_token[cols.token_ids]
    names = [f"L{layer}H{h}" for layer in layer_idx for h in range(n_heads)]
    heads = _head_table(varm, in_set, layer_idx, n_heads)

    adata.varm[key_added] = varm
    adata.uns[key_added] = {
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
                "test": "one-sided Mann-Whitney U, set genes vs other genes, per head",
                "device": dev,
                "rng": rng_param(rng),
                "vocab_hash": vocab.hash,
            }
        ),
    }
    top = heads.sort_values("log2_enrichment", ascending=False).iloc[0]
    logg.info(
        f"    added varm[{key_added!r}] and uns[{key_added!r}] ({n_cols} heads; strongest "
        f"gene-set enrichment {top['enrichment']:.2f}x in L{int(top['layer'])}H{int(top['head'])})",
        time=start,
    )
    return finish(data, mdata, mod, [], copy)


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
    return pd.DataFrame(rows)
