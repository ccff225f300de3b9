from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import logging as logg
from .._anndata import h5ad_safe, resolve_modality
from ._utils import (
    as_generator,
    batch_size_of,
    cell_tokens,
    check_model,
    finish,
    group_labels,
    max_genes_of,
    model_on_device,
    numeric_obs,
    positive_int,
    predict_timelapses,
    prepare,
    prompt_dataset,
    rng_param,
    sample_contexts,
    time_prompt_table,
    token_matrix,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab


def predict_time(
    query: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab,
    context: AnnData | None = None,
    reference_key: str | None = "condition",
    reference: str | Sequence[str] = "control",
    time_key: str = "age_months",
    group_by: str | Sequence[str] | None = ("cell_type", "sex"),
    donor_key: str | None = "donor",
    n_contexts: int = 5,
    n_context_cells: int = 2,
    aggregate: Literal["median", "mean"] = "median",
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    rng: int | np.random.Generator | None = 0,
    key_added: str = "maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """Predict each query cell's age from trajectories of reference cells (TimeBetweenCells).

    For every query cell, ``n_contexts`` trajectories of ``n_context_cells`` reference cells
    of the query's group (``group_by``, e.g. the same cell type and sex) with known ages are
    drawn, sorted by age, and the model reads
    ``<bos> ctx1 <eos> Δt <bos> ctx2 <eos> <boq> <bos> query <eos> <eoq>`` (the trainer's prompt
    layout). The predicted timelapse is the expected value of the time-token distribution at
    ``<eoq>``; the query's age is the last context cell's age plus that timelapse, aggregated
    over the contexts. The group only picks the context cells: it is never shown to the model.
    Context cells are never the query itself nor, with ``donor_key``, from the query's donor.

    Parameters
    ----------
    query
        AnnData (or MuData) of the cells to age, tokenized with :func:`maxtoki.pp.tokenize`.
    model
        A temporal (stage 2) :class:`~maxtoki.models.MaxToki`.
    vocab
        The model's :class:`~maxtoki.pp.GeneVocab`.
    context
        Tokenized reference cells with known ages. Default: the query object's own cells with
        ``obs[reference_key]`` in ``reference`` (e.g. the healthy controls).
    reference_key, reference
        With ``context=None``: the ``obs`` column and value(s) selecting the reference cells;
        ``reference_key=None`` (or a missing column) uses every cell with a known age.
    time_key
        ``obs`` column of the reference with ages in months.
    group_by
        ``obs`` column(s) defining the groups within which contexts are drawn; ``None`` draws
        from every reference cell.
    donor_key
        ``obs`` column with donors, present in both objects; context cells never share the
        query's donor. ``None`` (or a missing column) switches this off.
    n_contexts
        Trajectories per query cell; their predictions are aggregated.
    n_context_cells
        Reference cells per trajectory.
    aggregate
        ``'median'`` (default, robust to an odd context) or ``'mean'`` over the contexts.
    max_genes
        Top-ranked genes kept per cell: pass the ``max_genes_per_cell`` the model was trained with
        (:func:`maxtoki.tl.train` uses 64). ``None``: the value recorded in
        ``model.config.max_genes_per_cell`` if set, else every gene up to the model's context.
    batch_size
        Prompts per forward pass (default ``mt.settings.batch_size``).
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``…
    rng
        Seed or generator for drawing the contexts.
    key_added
        Prefix of the written keys.
    mod
        Modality of MuData inputs.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``obs[f'{key_added}_timelapse']``
        Predicted timelapse (months) from the last context cell to the query, aggregated.
    ``obs[f'{key_added}_age']``
        Predicted age (months): last context age + timelapse, aggregated over contexts.
    ``obs[f'{key_added}_age_std']``
        Standard deviation of the per-context age predictions (months).
    ``uns[f'{key_added}_predict_time']['params']``
        The parameters used.
    """
    data, adata, mdata = prepare(query, mod, copy)
    start = logg.info("predicting ages with MaxToki (TimeBetweenCells)")
    check_model(model, vocab, need_time=True, what="`mt.tl.predict_time`")
    n_contexts = positive_int("n_contexts", n_contexts)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    if aggregate not in ("median", "mean"):
        raise ValueError(f"aggregate must be 'median' or 'mean', got {aggregate!r}")
    size = batch_size_of(batch_size)
    max_genes = max_genes_of(model, max_genes)

    q_tokens = token_matrix(adata, vocab)
    ref, ref_rows, r_tokens = reference_cells(
        adata, q_tokens, context, reference_key, reference, time_key, vocab, mod
    )
    r_times_all = numeric_obs(
        ref, time_key, "reference", "pass `time_key=` naming the reference's ages in months"
    )
    ref_rows = ref_rows[np.isfinite(r_times_all[ref_rows])]
    if len(ref_rows) == 0:
        raise ValueError(
            f"no reference cell has a known obs[{time_key!r}]; pass a `context` with ages"
        )
    q_groups = group_labels(adata.obs, group_by, "query")
    r_groups = group_labels(ref.obs, group_by, "context")[ref_rows]
    use_donor = donor_key is not None and donor_key in adata.obs and donor_key in ref.obs
    q_donors = adata.obs[donor_key].astype(str).to_numpy() if use_donor else None
    r_donors = ref.obs[donor_key].astype(str).to_numpy()[ref_rows] if use_donor else None
    q_self = np.full(adata.n_obs, -1, dtype=np.int64)
    if ref is adata:
        pos = np.full(adata.n_obs, -1, dtype=np.int64)
        pos[ref_rows] = np.arange(len(ref_rows))
        q_self = pos
    r_times = r_times_all[ref_rows]
    gen = as_generator(rng)
    contexts = sample_contexts(
        q_groups, q_donors, q_self, r_groups, r_donors, r_times,
        n_contexts=int(n_contexts), n_cells=int(n_context_cells), gen=gen, group_by=group_by,
    )  # fmt: skip

    dev = model_on_device(model, device)
    ages, dts = predict_ages(
        model, vocab,
        ref_cells=cell_tokens(r_tokens[ref_rows]),
        ref_times=r_times,
        query_cells=cell_tokens(q_tokens),
        contexts=contexts,
        max_genes=max_genes, batch_size=size, device=dev,
    )  # fmt: skip
    agg = np.median if aggregate == "median" else np.mean
    keys = [f"{key_added}_timelapse", f"{key_added}_age", f"{key_added}_age_std"]
    adata.obs[keys[0]] = agg(dts, axis=1)
    adata.obs[keys[1]] = agg(ages, axis=1)
    adata.obs[keys[2]] = ages.std(axis=1, ddof=1) if n_contexts > 1 else np.zeros(adata.n_obs)
    adata.uns[f"{key_added}_predict_time"] = {
        "params": h5ad_safe(
            {
                "context": "query object" if context is None else "separate AnnData",
                "reference_key": reference_key if context is None else None,
                "reference": reference if context is None else None,
                "n_reference_cells": len(ref_rows),
                "time_key": time_key,
                "group_by": group_by,
                "donor_key": donor_key if use_donor else None,
                "n_contexts": int(n_contexts),
                "n_context_cells": int(n_context_cells),
                "aggregate": aggregate,
                "max_genes": max_genes,
                "device": dev,
                "rng": rng_param(rng),
                "unit": "months",
                "vocab_hash": vocab.hash,
            }
        )
    }
    logg.info(f"    added obs {keys} for {adata.n_obs} cells", time=start)
    return finish(data, mdata, mod, keys, copy)


def reference_cells(
    adata: AnnData,
    tokens: np.ndarray,
    context: AnnData | None,
    reference_key: str | None,
    reference: Any,
    time_key: str,
    vocab: GeneVocab,
    mod: str,
) -> tuple[AnnData, np.ndarray, np.ndarray]:
    """The AnnData that contexts come from, its reference rows, and its token matrix."""
    if context is None:
        return adata, _reference_rows(adata, reference_key, reference, time_key), tokens
    ref, _ = resolve_modality(context, mod)
    return ref, np.arange(ref.n_obs), token_matrix(ref, vocab)


def _reference_rows(adata: AnnData, key: str | None, reference: Any, time_key: str) -> np.ndarray:
    if key is None or key not in adata.obs.columns:
        if key is not None:
            logg.warning(
                f"predict_time: obs has no {key!r} column; every cell with a known "
                f"obs[{time_key!r}] serves as reference"
            )
        return np.arange(adata.n_obs)
    values = [reference] if isinstance(reference, str) else list(reference)
    mask = adata.obs[key].astype(str).isin([str(v) for v in values]).to_numpy()
    if not mask.any():
        raise ValueError(
            f"no reference cells: obs[{key!r}] has no value in {values}; pass `reference=` (the "
            "healthy/reference group), `reference_key=None`, or a `context` AnnData"
        )
    return np.flatnonzero(mask)


def predict_ages(
    model: Any,
    vocab: GeneVocab,
    *,
    ref_cells: list[np.ndarray],
    ref_times: np.ndarray,
    query_cells: list[np.ndarray],
    contexts: np.ndarray,
    max_genes: int | None,
    batch_size: int,
    device: str,
    desc: str = "predict_time",
) -> tuple[np.ndarray, np.ndarray]:
    """Per query and context: predicted age and timelapse (both ``(n_queries, n_contexts)``).

    ``contexts[i, c]`` holds the time-sorted reference rows of query ``i``'s ``c``-th trajectory.
    """
    n_q, k, m = contexts.shape
    flat = contexts.reshape(n_q * k, m)
    table = time_prompt_table(flat, ref_times, np.repeat(np.arange(n_q), k))
    dataset = prompt_dataset(table, ref_cells, query_cells, vocab, model, max_genes)
    dts = predict_timelapses(model, dataset, batch_size=batch_size, device=device, desc=desc)
    ages = ref_times[flat[:, -1]] + dts
    return ages.reshape(n_q, k), dts.reshape(n_q, k)
