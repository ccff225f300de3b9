from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import group_labels, numeric_obs, positive_int, require_cells, resolve_modality
from .._docs import inject_docs
from .._keys import (
    TOKENS_KEY,
    check_key,
    h5ad_safe,
    random_state_param,
    read_tokens,
    slot,
    write_tokens,
)
from .._validate import max_genes_of, model_vocab
from ._contexts import Reference, draw_contexts
from ._expression import rank_expression_map, reconstruct_expression
from ._utils import as_generator, vocab_columns

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki


@inject_docs
def generate(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    timelapse: float | Sequence[float] | np.ndarray = 120,
    n_cells: int = 100,
    groupby: str | Sequence[str] | None = ("cell_type", "sex"),
    groups: Sequence[str] | None = None,
    time_key: str = "age_months",
    n_context_cells: int = 2,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    max_genes: int | None = None,
    expression_from: AnnData | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    tokens_key: str = TOKENS_KEY,
    key_added: str = "maxtoki",
    mod: str = "rna",
) -> AnnData:
    """Generate new cells at a timelapse after trajectories of real cells (NextCell).

    Each generated cell continues a trajectory of ``n_context_cells`` cells of ``adata`` from
    one group (drawn at distinct ages, sorted by age): the model reads
    ``<bos> ctx1 <eos> Δt <bos> ctx2 <eos> <boq> Δt_query <eoq>`` and samples
    ``<bos> genes… <eos>`` with a KV cache, never repeating a gene.

    Expression is reconstructed from ranks so that generated and real cells can be embedded and
    plotted together: each gene at rank ``r`` gets the median log-normalised expression
    (``log1p`` of counts per 10,000) that gene has at ranks of the same log₂ bin (1, 2–3, 4–7,
    …) in real cells (``expression_from``); genes not generated are 0.

    Parameters
    ----------
    adata
        Tokenized AnnData (or MuData, see ``mod``) of real cells with ``obs[time_key]``: the
        trajectories' cells.
    {temporal_model}
    {vocab}
    timelapse
        Months from the last context cell to the generated cell: one value, or one per cell.
    n_cells
        Number of cells to generate.
    {groupby}
        Each cell's context comes from one group, drawn in proportion to the group's size (or
        uniformly over ``groups``).
    groups
        Restrict to these group labels (values of ``groupby`` joined by ``'|'``, e.g.
        ``'B cell|female'``).
    {time_key}
    n_context_cells
        Context cells per trajectory.
    temperature, top_k, top_p
        Sampling parameters of :meth:`~maxtoki.models.MaxToki.generate`.
    max_genes
        Most genes per generated cell. ``None``: the ``max_genes_per_cell`` the model was trained
        with, else the longest context cell.
    expression_from
        Tokenized real cells with raw counts for the rank → expression map (default ``adata``).
    {batch_size}
    {device}
    {random_state}
    {tokens_key}
    key_added
        Prefix of the slots of the new AnnData (default ``'maxtoki'``).
    {mod}

    Returns
    -------
    A new AnnData with one row per generated cell and the vocabulary genes of ``adata`` as
    ``var`` (its ``var`` columns kept):

    ``X``
        Reconstructed log-normalised expression (``log1p`` of counts per 10,000), sparse.
    ``obsm[f'{key_added}_tokens']`` and the other slots of :func:`maxtoki.pp.tokenize`
        ``<bos> genes… <eos>`` of each cell, stored exactly as tokenized cells are (so every
        token consumer reads them).
    ``obs['context_cells']``, ``obs['context_age_months']``
        Obs names of the context cells (``';'``-joined, in age order) and the last one's age.
    ``obs['timelapse_months']``, ``obs['expected_age_months']``
        The requested timelapse and the age it implies (last context age + timelapse).
    ``obs['group']`` and one column per ``groupby`` column; ``obs['n_genes']``
        The context's group and the number of generated genes.
    ``uns[f'{key_added}_generate']['params']``
        The parameters used.
    """
    from ..models import BatchRunner
    from ..pp import PromptEncoder

    start = logg.info("generating cells with MaxToki (NextCell)")
    adata, _ = resolve_modality(adata, mod)
    require_cells(adata, "adata")
    source = adata if expression_from is None else resolve_modality(expression_from, mod)[0]
    require_cells(source, "expression_from")
    vocab = model_vocab(model, vocab, need_time=True, what="mt.tl.generate")
    check_key("key_added", key_added)
    n_cells = positive_int("n_cells", n_cells)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    tokens = read_tokens(adata, tokens_key, vocab)
    source_tokens = tokens if source is adata else read_tokens(source, tokens_key, vocab)
    times = numeric_obs(adata, time_key, "adata", "pass `time_key=` naming ages in months")
    dt = _timelapses(timelapse, n_cells, vocab)
    max_genes = max_genes_of(model, max_genes)
    if max_genes is None:
        max_genes = int(tokens.lengths.max()) - 2
        if max_genes < 1:
            raise ValueError("no cell has a vocabulary gene; check the output of `mt.pp.tokenize`")
    expression_map = rank_expression_map(source, source_tokens.matrix, vocab, tokens_key)
    cols = vocab_columns(adata, vocab, tokens_key)
    gen = as_generator(random_state)
    ref, picked, contexts = _trajectories(
        adata, tokens, times, groupby, groups, n_cells, n_context_cells, gen, time_key
    )
    encoder = PromptEncoder(
        vocab, max_length=model.config.max_position_embeddings, max_genes=max_genes
    )
    prompts = [
        encoder.encode([ref.cells[r] for r in rows], np.rint(np.diff(ref.times[rows])),
                       task="NextCell", dt_query=d)["input_ids"]
        for rows, d in zip(contexts, dt, strict=True)
    ]  # fmt: skip
    runner = BatchRunner(model, batch_size=batch_size, device=device)
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    out = runner.generate(prompts, max_genes=max_genes, random_state=gen, **sampling)
    result = _new_adata(adata, ref, contexts, picked, dt, out, cols, groupby)
    _fill(result, out, expression_map, cols, vocab, key_added)
    result.uns[slot(key_added, "generate")] = {"params": _params(locals(), runner, vocab)}
    logg.info(
        f"    generated {len(out)} cells ({result.obs['n_genes'].mean():.0f} genes on average)",
        time=start,
    )
    return result


def _timelapses(timelapse: Any, n_cells: int, vocab: GeneVocab) -> np.ndarray:
    if np.ndim(timelapse) > 1 or (np.ndim(timelapse) == 1 and len(timelapse) != n_cells):
        raise ValueError(
            f"timelapse must be one number or one per cell ({n_cells}), "
            f"got shape {np.shape(timelapse)}"
        )
    dt = np.broadcast_to(np.asarray(timelapse, dtype=np.float64), (n_cells,)).copy()
    lo, hi = vocab.time_range
    if not np.all(np.isfinite(dt)) or dt.min() < lo or dt.max() > hi:
        raise ValueError(f"timelapse must be finite months within the time tokens [{lo}, {hi}]")
    return np.rint(dt).astype(np.int64)


def _trajectories(adata, tokens, times, groupby, groups, n_cells, n_context_cells, gen, time_key):
    """The reference (cells with a known age), each new cell's group and its context rows."""
    known = np.flatnonzero(np.isfinite(times))
    labels = group_labels(adata.obs, groupby, "adata")[known]
    ref = Reference(tokens.cells(known), times[known], labels, None, known, adata)
    picked = _pick_groups(ref.groups, groups, n_cells, gen, groupby, time_key)
    no_self = np.full(n_cells, -1)
    contexts = draw_contexts(
        ref, picked, None, no_self, n_contexts=1, n_cells=n_context_cells, gen=gen, groupby=groupby
    )
    return ref, picked, contexts[:, 0]


def _fill(result, out, expression_map, cols, vocab, key_added) -> None:
    """The new cells' tokens (as tokenize writes them) and their reconstructed expression."""
    tok = np.zeros((len(out), max(len(c) for c in out)), dtype=np.int64)
    for i, c in enumerate(out):
        tok[i, : len(c)] = c
    result.X = reconstruct_expression(tok, expression_map, cols, vocab)
    record = {"params": {"source": "mt.tl.generate"}}
    lengths = [len(c) for c in out]
    write_tokens(result, tok, lengths, key_added=key_added, vocab=vocab, token_id=cols.token_ids,
                 record=record)  # fmt: skip


def _pick_groups(labels, groups, n_cells, gen, groupby, time_key) -> np.ndarray:
    """The group of each generated cell: in proportion to group size, or uniform over ``groups``."""
    if groups is None:
        if len(labels) == 0:
            raise ValueError(f"no cell has a known obs[{time_key!r}]")
        return labels[gen.integers(len(labels), size=n_cells)]
    groups = [groups] if isinstance(groups, str) else [str(g) for g in groups]
    missing = sorted(set(groups) - set(labels))
    if missing:
        raise ValueError(
            f"no cells with a known age for the group(s) {missing} (groupby={groupby!r}); "
            f"existing groups: {sorted(set(labels))[:10]}"
        )
    return np.asarray(groups, dtype=object)[gen.integers(len(groups), size=n_cells)]


def _new_adata(adata, ref, contexts, picked, dt, out, cols, groupby) -> AnnData:
    from anndata import AnnData

    names = np.asarray(adata.obs_names)[ref.rows]
    last_age = ref.times[contexts[:, -1]]
    obs = pd.DataFrame(
        {
            "context_cells": [";".join(names[r]) for r in contexts],
            "context_age_months": last_age,
            "timelapse_months": dt.astype(np.float64),
            "expected_age_months": last_age + dt,
            "group": pd.Categorical(picked.astype(str)),
            "n_genes": np.array([len(c) - 2 for c in out], dtype=np.int64),
        },
        index=pd.Index([f"generated-{i}" for i in range(len(out))]),
    )
    if groupby is not None:
        for j, col in enumerate([groupby] if isinstance(groupby, str) else list(groupby)):
            obs[col] = pd.Categorical([p.split("|")[j] for p in picked.astype(str)])
    return AnnData(obs=obs, var=adata.var.iloc[cols.var_rows].copy())


def _params(args: dict[str, Any], runner, vocab) -> dict[str, Any]:
    timelapse = args["timelapse"]
    return h5ad_safe(
        {
            "n_cells": args["n_cells"],
            "timelapse": "per cell (obs['timelapse_months'])"
            if np.ndim(timelapse)
            else float(timelapse),
            "groupby": args["groupby"],
            "groups": args["groups"],
            "time_key": args["time_key"],
            "n_context_cells": args["n_context_cells"],
            "temperature": float(args["temperature"]),
            "top_k": args["top_k"],
            "top_p": args["top_p"],
            "max_genes": int(args["max_genes"]),
            "expression": "median log1p(normalize_total 1e4) of the gene at its log2 rank "
            "bin in the reference cells",
            "device": str(runner.device),
            "dtype": runner.dtype_name,
            "random_state": random_state_param(args["random_state"]),
            "tokens_key": args["tokens_key"],
            "vocab_hash": vocab.hash,
        }
    )
