from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import logging as logg
from .._anndata import group_labels, positive_int, require_bool
from .._docs import inject_docs
from .._keys import TOKENS_KEY, check_key, h5ad_safe, random_state_param, slot
from .._validate import max_genes_of, model_vocab
from ._calibration import fit_calibration
from ._contexts import draw_contexts, predict_ages, reference_set
from ._second_pass import refine_ages
from ._utils import as_generator, finish, prepare, query_cells
from ._views import query_views

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki


@inject_docs
def predict_time(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    context: AnnData | None = None,
    reference_key: str | None = "condition",
    reference: str | Sequence[str] = "control",
    time_key: str = "age_months",
    groupby: str | Sequence[str] | None = ("cell_type", "sex"),
    donor_key: str | None = "donor",
    n_contexts: int = 5,
    n_context_cells: int = 2,
    n_views: int = 1,
    aggregate: Literal["median", "mean"] = "median",
    calibrate: bool = False,
    second_pass: bool = False,
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    tokens_key: str = TOKENS_KEY,
    key_added: str = "maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """Predict each cell's age from trajectories of reference cells (TimeBetweenCells).

    For every cell, ``n_contexts`` trajectories of ``n_context_cells`` reference cells of its
    group (``groupby``, e.g. the same cell type and sex) with known ages are drawn, sorted by
    age, and the model reads
    ``<bos> ctx1 <eos> Δt <bos> ctx2 <eos> <boq> <bos> cell <eos> <eoq>``. The predicted
    timelapse is the expected value of the time-token distribution at ``<eoq>``; the cell's age
    is the last context cell's age plus that timelapse, aggregated over the contexts. The group
    only picks the context cells: it is never shown to the model. Context cells are never the
    cell itself nor, with ``donor_key``, from its donor.

    Parameters
    ----------
    {adata_tokens}
    {temporal_model}
    {vocab}
    {reference}
    {time_key}
    {groupby}
    {donor_key}
    {n_contexts}
    {n_views}
    aggregate
        ``'median'`` (default, robust to an odd context) or ``'mean'`` over the contexts.
    calibrate
        Calibrate the timelapse read-out on the reference (not in the official release):
        reference cells of each query group (up to 64, other donors as contexts) are aged as
        queries, a line ``predicted = a + b × true`` is fitted to their timelapses (leaving out
        the query's donor) and each timelapse becomes ``(predicted − a) / b``. It undoes a
        small model's regression towards the mean; see docs/benchmarks.md.
    second_pass
        Read each cell again (not in the official release): of ``4 × n_contexts`` new contexts,
        the ``n_contexts`` whose last cell's age is nearest the first (calibrated) estimate,
        never the cell's true age, through the same lines; both passes' reads are then
        aggregated together. Twice the model calls.
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

    ``obs[f'{key_added}_age']``
        Predicted age (months): last context age + timelapse, aggregated over contexts (both
        passes' with ``second_pass``).
    ``obs[f'{key_added}_timelapse']``
        Predicted timelapse (months) from the last context cell to the cell, aggregated.
    ``obs[f'{key_added}_age_std']``
        Standard deviation of the per-context age predictions (months; 0 from one read).
    ``uns[f'{key_added}_predict_time']['params']``
        The parameters used; with ``calibrate``, ``['calibration']`` holds each group's line
        (``group``, ``intercept_months``, ``slope``, ``n_pairs``).
    """
    from ..models import BatchRunner
    from ..pp import PromptEncoder

    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info("predicting ages with MaxToki (TimeBetweenCells)")
    vocab = model_vocab(model, vocab, need_time=True, what="mt.tl.predict_time")
    check_key("key_added", key_added)
    n_contexts = positive_int("n_contexts", n_contexts)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    n_views = positive_int("n_views", n_views)
    if aggregate not in ("median", "mean"):
        raise ValueError(f"aggregate must be 'median' or 'mean', got {aggregate!r}")
    require_bool(calibrate=calibrate, second_pass=second_pass)
    max_genes = max_genes_of(model, max_genes)
    runner = BatchRunner(model, batch_size=batch_size, device=device)
    queries = query_cells(adata, vocab, tokens_key)
    ref = reference_set(
        adata, context=context, reference_key=reference_key, reference=reference,
        time_key=time_key, groupby=groupby, donor_key=donor_key, vocab=vocab,
        tokens_key=tokens_key, mod=mod,
    )  # fmt: skip
    rows = np.arange(adata.n_obs)
    donors = None if ref.donors is None else adata.obs[donor_key].astype(str).to_numpy()
    query_groups = group_labels(adata.obs, groupby, "query")
    gen = as_generator(random_state)
    query_self = ref.position_of(adata, rows)
    contexts = draw_contexts(
        ref, query_groups, donors, query_self, n_contexts=n_contexts, n_cells=n_context_cells,
        gen=gen, groupby=groupby,
    )  # fmt: skip
    queries = query_views(queries, n_views, gen)  # drawn after the contexts: the same contexts
    encoder = PromptEncoder(
        vocab, max_length=model.config.max_position_embeddings, max_genes=max_genes
    )
    ages, dts = predict_ages(
        runner, encoder, ref.cells, ref.times, queries, contexts, desc="predict_time"
    )
    lines = calibration = None
    if calibrate:
        calibration = fit_calibration(
            runner, encoder, ref, query_groups, n_context_cells=n_context_cells, gen=gen,
            n_views=n_views, desc="predict_time calibration",
        )  # fmt: skip
        dts = calibration.apply(dts, query_groups, donors)
        ages = ref.times[contexts[:, :, -1]] + dts
        lines = calibration.table()
    agg = np.median if aggregate == "median" else np.mean
    if second_pass:  # the second pass's reads join the first's
        again, again_dts, _ = refine_ages(
            runner, encoder, ref, queries, query_groups, donors, query_self, agg(ages, axis=1),
            n_contexts=n_contexts, n_context_cells=n_context_cells, gen=gen, groupby=groupby,
            desc="predict_time second pass", calibration=calibration,
        )  # fmt: skip
        ages, dts = np.hstack([ages, again]), np.hstack([dts, again_dts])
    keys = [slot(key_added, n) for n in ("age", "timelapse", "age_std")]
    adata.obs[keys[0]] = agg(ages, axis=1)
    adata.obs[keys[1]] = agg(dts, axis=1)
    adata.obs[keys[2]] = ages.std(axis=1, ddof=1) if ages.shape[1] > 1 else np.zeros(adata.n_obs)
    adata.uns[slot(key_added, "predict_time")] = {
        "params": _params(locals(), ref, runner, vocab, use_donor=ref.donors is not None)
    }
    if lines is not None:
        adata.uns[slot(key_added, "predict_time")]["calibration"] = lines
    logg.info(f"    added obs {keys} for {adata.n_obs} cells", time=start)
    return finish(data, mdata, mod, keys, copy)


def _params(args: dict[str, Any], ref, runner, vocab, *, use_donor: bool) -> dict[str, Any]:
    own = args["context"] is None
    return h5ad_safe(
        {
            "context": "query object" if own else "separate AnnData",
            "reference_key": args["reference_key"] if own else None,
            "reference": args["reference"] if own else None,
            "n_reference_cells": len(ref.rows),
            "time_key": args["time_key"],
            "groupby": args["groupby"],
            "donor_key": args["donor_key"] if use_donor else None,
            "n_contexts": args["n_contexts"],
            "n_context_cells": args["n_context_cells"],
            "n_views": args["n_views"],
            "aggregate": args["aggregate"],
            "calibrate": bool(args["calibrate"]),
            "second_pass": bool(args["second_pass"]),
            "max_genes": args["max_genes"],
            "device": str(runner.device),
            "dtype": runner.dtype_name,
            "random_state": random_state_param(args["random_state"]),
            "tokens_key": args["tokens_key"],
            "unit": "months",
            "vocab_hash": vocab.hash,
        }
    )
