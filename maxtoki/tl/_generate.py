from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import h5ad_safe, require_cells, resolve_modality
from ._utils import (
    TOKENS_KEY,
    VocabColumns,
    as_generator,
    batch_size_of,
    cell_tokens,
    check_model,
    group_labels,
    max_genes_of,
    model_on_device,
    numeric_obs,
    positive_int,
    progress,
    prompt_dataset,
    raw_counts,
    rng_param,
    sample_contexts,
    time_prompt_table,
    token_matrix,
    vocab_columns,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab

_N_RANK_BINS = 16


def generate(
    context: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab,
    timelapse: float | Sequence[float] | np.ndarray = 120,
    n_cells: int = 100,
    group_by: str | Sequence[str] | None = ("cell_type", "sex"),
    groups: Sequence[str] | None = None,
    time_key: str = "age_months",
    n_context_cells: int = 2,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    max_genes: int | None = None,
    reference: AnnData | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    rng: int | np.random.Generator | None = 0,
    mod: str = "rna",
) -> AnnData:
    """Generate new cells at a timelapse after trajectories of context cells (NextCell).

    Each generated cell continues a trajectory of ``n_context_cells`` context cells of one
    group (drawn at distinct ages, sorted by age): the model reads
    ``<bos> ctx1 <eos> Δt <bos> ctx2 <eos> <boq> Δt_query <eoq>`` (the trainer's prompt layout)
    and samples ``<bos> genes… <eos>`` with a KV cache, never repeating a gene.

    Expression is reconstructed from ranks so that generated and real cells can be embedded and
    plotted together: every real reference cell's top-ranked genes are binned by rank
    (log₂ bins: rank 1, 2–3, 4–7, …) and, for each gene and bin, the median log-normalised
    expression (``normalize_total`` to 10,000 then ``log1p``) of that gene at that rank is
    recorded; a generated gene at rank ``r`` gets that typical value (or, for a gene never seen
    in that bin, the median over all genes in the bin). Genes not generated are 0.
    :func:`reconstruct_expression` applies the same map to any token matrix.

    Parameters
    ----------
    context
        Tokenized AnnData (or MuData) of real cells with ``obs[time_key]`` (raw counts in ``X``).
    model
        A temporal (stage 2) :class:`~maxtoki.models.MaxToki`.
    vocab
        The model's :class:`~maxtoki.pp.GeneVocab`.
    timelapse
        Months from the last context cell to the generated cell: one value, or one per cell.
    n_cells
        Number of cells to generate.
    group_by
        ``obs`` column(s) defining trajectory groups; each generated cell's context comes from
        one group, drawn in proportion to the group's size (or uniformly over ``groups``).
    groups
        Restrict to these group labels (values of ``group_by`` joined by ``'|'``, e.g.
        ``'B cell|female'``).
    time_key
        ``obs`` column with ages in months.
    n_context_cells
        Context cells per trajectory.
    temperature, top_k, top_p
        Sampling parameters of :meth:`~maxtoki.models.MaxToki.generate`.
    max_genes
        Most genes per generated cell: pass the ``max_genes_per_cell`` the model was trained
        with (:func:`maxtoki.tl.train` uses 64). ``None``: the value recorded in
        ``model.config.max_genes_per_cell`` if set, else the longest context cell.
    reference
        Tokenized real cells with raw counts for the rank → expression map (default ``context``).
    batch_size
        Cells generated per batch (default ``mt.settings.batch_size``).
    device
        ``'auto'``, ``'cpu'``, ``'cuda'``…
    rng
        Seed or generator (contexts and sampling).
    mod
        Modality of MuData inputs.

    Returns
    -------
    A new AnnData with one row per generated cell and the vocabulary genes of ``context`` as
    ``var`` (its ``var`` columns kept):

    ``X``
        Reconstructed log-normalised expression (``log1p`` of counts per 10,000), sparse.
    ``obsm['maxtoki_tokens']``, ``obs['maxtoki_n_tokens']``
        ``<bos> genes… <eos>`` of each cell (padded with 0), as :func:`maxtoki.pp.tokenize`
        writes them; ``uns['maxtoki_tokens']`` records the vocabulary hash.
    ``obs['context_cells']``
        Obs names of the context cells, ``';'``-joined, in age order.
    ``obs['context_age_months']``
        Age of the last context cell.
    ``obs['timelapse_months']``, ``obs['expected_age_months']``
        The requested timelapse and the age it implies (last context age + timelapse).
    ``obs['group']`` and one column per ``group_by`` column
        The group of the context.
    ``obs['n_genes']``
        Number of generated genes.
    ``uns['maxtoki_generate']['params']``
        The parameters used.
    """
    from anndata import AnnData

    start = logg.info("generating cells with MaxToki (NextCell)")
    adata, _ = resolve_modality(context, mod)
    require_cells(adata, "the context")
    ref_adata = adata if reference is None else resolve_modality(reference, mod)[0]
    require_cells(ref_adata, "the reference")
    check_model(model, vocab, need_time=True, what="`mt.tl.generate`")
    n_cells = positive_int("n_cells", n_cells)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    size = batch_size_of(batch_size)
    max_genes = max_genes_of(model, max_genes)
    tokens = token_matrix(adata, vocab)
    ref_tokens = tokens if ref_adata is adata else token_matrix(ref_adata, vocab)
    times = numeric_obs(adata, time_key, "context", "pass `time_key=` naming ages in months")
    if np.ndim(timelapse) > 1 or (np.ndim(timelapse) == 1 and len(timelapse) != n_cells):
        raise ValueError(
            f"timelapse must be one number or one per cell ({n_cells}), "
            f"got shape {np.shape(timelapse)}"
        )
    dt = np.broadcast_to(np.asarray(timelapse, dtype=np.float64), (int(n_cells),)).copy()
    lo, hi = vocab.time_range
    if not np.all(np.isfinite(dt)) or dt.min() < lo or dt.max() > hi:
        raise ValueError(f"timelapse must be finite months within the time tokens [{lo}, {hi}]")
    dt = np.rint(dt).astype(np.int64)
    if max_genes is None:
        max_genes = int((tokens != 0).sum(1).max()) - 2
        if max_genes < 1:
            raise ValueError(
                "no context cell has a vocabulary gene; check the output of `mt.pp.tokenize`"
            )
    expression_map = rank_expression_map(ref_adata, ref_tokens, vocab)
    cols = vocab_columns(adata, vocab)

    # --- contexts: groups in proportion to their size, distinct ages, time-sorted
    known = np.flatnonzero(np.isfinite(times))
    labels = group_labels(adata.obs, group_by, "context")[known]
    gen = as_generator(rng)
    if groups is not None:
        groups = [groups] if isinstance(groups, str) else [str(g) for g in groups]
        missing = sorted(set(groups) - set(labels))
        if missing:
            raise ValueError(
                f"no context cells with a known age for the group(s) {missing} "
                f"(group_by={group_by!r}); existing groups: {sorted(set(labels))[:10]}"
            )
        picked = np.asarray(groups, dtype=object)[gen.integers(len(groups), size=int(n_cells))]
    else:
        if len(known) == 0:
            raise ValueError(f"no context cell has a known obs[{time_key!r}]")
        picked = labels[gen.integers(len(known), size=int(n_cells))]
    contexts = sample_contexts(
        picked, None, np.full(int(n_cells), -1), labels, None, times[known],
        n_contexts=1, n_cells=int(n_context_cells), gen=gen, group_by=group_by,
    )[:, 0]  # fmt: skip
    # the query column of a NextCell prompt is the answer; only the prompt up to <eoq> is used
    table = time_prompt_table(
        contexts, times[known], np.zeros(int(n_cells), dtype=np.int64), task="NextCell"
    )
    table["dt_query"] = dt
    cells = cell_tokens(tokens[known])
    dataset = prompt_dataset(table, cells, cells[:1], vocab, model, max_genes)

    dev = model_on_device(model, device)
    out = _generate_cells(
        model, dataset, size=size, max_genes=int(max_genes), temperature=temperature,
        top_k=top_k, top_p=top_p, gen=gen, vocab=vocab,
    )  # fmt: skip

    width = max(len(c) for c in out)
    tok = np.zeros((len(out), width), dtype=np.int64)
    for i, c in enumerate(out):
        tok[i, : len(c)] = c
    X = reconstruct_expression(tok, expression_map, cols, vocab)
    names = np.asarray(adata.obs_names)[known]
    obs = pd.DataFrame(
        {
            "context_cells": [";".join(names[r]) for r in contexts],
            "context_age_months": times[known][contexts[:, -1]],
            "timelapse_months": dt.astype(np.float64),
            "expected_age_months": times[known][contexts[:, -1]] + dt,
            "group": pd.Categorical(picked.astype(str)),
            "n_genes": np.array([len(c) - 2 for c in out], dtype=np.int64),
            "maxtoki_n_tokens": np.array([len(c) for c in out], dtype=np.int64),
        },
        index=pd.Index([f"generated-{i}" for i in range(len(out))]),
    )
    if group_by is not None:
        for j, col in enumerate([group_by] if isinstance(group_by, str) else list(group_by)):
            obs[col] = pd.Categorical([p.split("|")[j] for p in picked.astype(str)])
    var = adata.var.iloc[cols.var_rows].copy()
    result = AnnData(X=X, obs=obs, var=var)
    result.obsm[TOKENS_KEY] = tok
    result.uns[TOKENS_KEY] = {"vocab_hash": vocab.hash, "params": {"source": "mt.tl.generate"}}
    result.uns["maxtoki_generate"] = {
        "params": h5ad_safe(
            {
                "n_cells": int(n_cells),
                "timelapse": "per cell (obs['timelapse_months'])"
                if np.ndim(timelapse)
                else float(timelapse),
                "group_by": group_by,
                "groups": groups,
                "time_key": time_key,
                "n_context_cells": int(n_context_cells),
                "temperature": float(temperature),
                "top_k": top_k,
                "top_p": top_p,
                "max_genes": int(max_genes),
                "expression": "median log1p(normalize_total 1e4) of the gene at its log2 rank "
                "bin in the reference cells",
                "device": dev,
                "rng": rng_param(rng),
                "vocab_hash": vocab.hash,
            }
        )
    }
    logg.info(
        f"    generated {len(out)} cells ({obs['n_genes'].mean():.0f} genes on average)", time=start
    )
    return result


def _generate_cells(
    model, dataset, *, size, max_genes, temperature, top_k, top_p, gen, vocab
) -> list[np.ndarray]:
    import torch

    bos, eos = vocab.bos_id, vocab.eos_id
    out: list[np.ndarray] = []
    n = len(dataset)
    with progress(n, "generate", unit="cell") as bar:
        for lo in range(0, n, size):
            prompts = []
            for i in range(lo, min(n, lo + size)):
                ex = dataset[i]
                prompts.append(torch.as_tensor(ex["input_ids"][: ex["eoq_pos"] + 1]))
            new = model.generate(
                prompts,
                max_new_tokens=max_genes + 1,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                rng=int(gen.integers(2**31 - 1)),
            )
            for g in new:
                genes = g.cpu().numpy().astype(np.int64)
                genes = genes[genes != eos][:max_genes]
                out.append(np.concatenate([[bos], genes, [eos]]))
            bar.update(len(prompts))
    return out


# --- rank → expression --------------------------------------------------------------------------
def _log_normalised(adata: AnnData, rows: np.ndarray | None = None):
    """``log1p(normalize_total(X, 1e4))`` of raw counts as CSR (all genes count in the total)."""
    import scipy.sparse as sp

    X = raw_counts(adata)
    X = X if rows is None else X[rows]
    X = sp.csr_matrix(X, dtype=np.float64)
    total = np.asarray(X.sum(axis=1)).ravel()
    X = sp.diags(1e4 / np.maximum(total, 1e-12)) @ X
    X.data = np.log1p(X.data)
    return X.tocsr()


def _rank_bin(n: int) -> np.ndarray:
    return np.minimum(np.floor(np.log2(np.arange(n) + 1)).astype(np.int64), _N_RANK_BINS - 1)


def rank_expression_map(
    adata: AnnData, tokens: np.ndarray, vocab: GeneVocab, *, max_cells: int = 5000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Typical log-normalised expression of each gene at each log₂ rank bin in real cells.

    Returns ``{'table': (vocab, bins) float with nan where unseen, 'fallback': (bins,)}``.
    """
    rows = np.arange(adata.n_obs)
    if len(rows) > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))
    cols = vocab_columns(adata, vocab)
    X = _log_normalised(adata, rows)
    is_gene = np.zeros(len(vocab), dtype=bool)
    is_gene[vocab.gene_token_ids] = True
    cell_idx, token, rank = [], [], []
    for r, row in zip(rows, tokens[rows], strict=True):
        genes = row[is_gene[row]]
        cell_idx.append(np.full(len(genes), r))
        token.append(genes)
        rank.append(np.arange(len(genes)))
    cell_local = np.repeat(np.arange(len(rows)), [len(t) for t in token])
    token = np.concatenate(token).astype(np.int64)
    rank = np.concatenate(rank)
    col = cols.column_of[token]
    keep = col >= 0
    values = np.asarray(X[cell_local[keep], cols.var_rows[col[keep]]]).ravel()
    bins = np.minimum(np.floor(np.log2(rank[keep] + 1)).astype(np.int64), _N_RANK_BINS - 1)
    df = pd.DataFrame({"t": token[keep], "b": bins, "v": values})
    med = df.groupby(["t", "b"])["v"].median()
    table = np.full((len(vocab), _N_RANK_BINS), np.nan)
    table[med.index.get_level_values(0), med.index.get_level_values(1)] = med.to_numpy()
    fallback = (
        df.groupby("b")["v"].median().reindex(range(_N_RANK_BINS)).ffill().fillna(0.0).to_numpy()
    )
    return {"table": table, "fallback": fallback}


def reconstruct_expression(
    tokens: np.ndarray, expression_map: dict[str, np.ndarray], cols: VocabColumns, vocab: GeneVocab
):
    """Log-normalised expression (CSR, cells × ``cols`` genes) of a token matrix via the map."""
    import scipy.sparse as sp

    is_gene = np.zeros(len(vocab), dtype=bool)
    is_gene[vocab.gene_token_ids] = True
    data, indices, indptr = [], [], [0]
    for row in tokens:
        genes = row[is_gene[row]]
        b = _rank_bin(len(genes))
        v = expression_map["table"][genes, b]
        v = np.where(np.isnan(v), expression_map["fallback"][b], v)
        c = cols.column_of[genes]
        keep = c >= 0
        data.append(v[keep])
        indices.append(c[keep])
        indptr.append(indptr[-1] + int(keep.sum()))
    X = sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0),
            np.concatenate(indices) if indices else np.zeros(0, int),
            indptr,
        ),
        shape=(len(tokens), len(cols.token_ids)),
        dtype=np.float32,
    )
    X.sort_indices()
    return X
