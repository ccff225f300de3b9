from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import (
    group_labels,
    numeric_obs,
    positive_int,
    require_bool,
    require_cells,
    require_obs,
    resolve_modality,
)
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
from ._baselines import (
    METRIC_COLUMNS,
    linear_baselines,
    median_ci,
    metrics,
    naive,
    reference_offset,
    top_gene_presence,
)
from ._calibration import fit_calibration
from ._contexts import Reference, draw_contexts, predict_ages
from ._generated_check import generated_check, generated_tokens
from ._second_pass import refine_ages
from ._utils import as_generator
from ._views import query_views

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki

Ablation = Literal["mask_context", "mask_query", "shuffle_genes"]
ABLATIONS: tuple[str, ...] = ("mask_context", "mask_query", "shuffle_genes")


@inject_docs
def evaluate(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    heldout_cell_types: Sequence[str] | None = None,
    heldout_ages: tuple[float, float] | None = None,
    heldout_donors: Sequence[str] | None = None,
    train_mask: np.ndarray | pd.Series | str | None = None,
    reference_key: str | None = "condition",
    reference: str = "control",
    time_key: str = "age_months",
    cell_type_key: str = "cell_type",
    sex_key: str = "sex",
    donor_key: str | None = "donor",
    n_contexts: int = 5,
    n_context_cells: int = 2,
    n_views: int = 1,
    n_cells: int | None = 500,
    n_boot: int = 1000,
    calibrate: bool = False,
    second_pass: bool = False,
    ablations: bool | Sequence[Ablation] = False,
    generated: AnnData | None = None,
    doublet_pairs: Literal["any", "same_type"] = "any",
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    tokens_key: str = TOKENS_KEY,
    key_added: str = "maxtoki",
    mod: str = "rna",
) -> pd.DataFrame:
    """The paper's evaluation: age error on held-out cell types, ages and donors, vs baselines.

    Splits (reference cells only, e.g. controls): ``heldout_cell_type``, cells of
    ``heldout_cell_types`` (never seen in training); ``heldout_age``, cells of the training cell
    types aged within ``heldout_ages``; ``heldout_donor``, cells of ``heldout_donors`` in the
    training cell types and outside ``heldout_ages``: generalisation to new individuals, not to new
    types or ages. The last two take contexts of training ages only; held-out donors' cells are
    never contexts nor training cells. Methods: ``maxtoki`` (:func:`maxtoki.tl.predict_time`'s
    prompts, contexts of the same cell type and sex from other donors, median over contexts),
    ``naive`` (the most common training age of the type and sex), ``sgd`` (``SGDRegressor`` on
    standardised log-normalised expression), ``sgd_offset`` (plus its mean residual on the query's
    context cells, both passes'), ``ridge`` (the same linear model solved exactly, penalty by
    leave-one-out), ``ridge_top_genes`` (ridge on which genes are among each cell's top
    ``max_genes``: what the model reads), each with its ``_offset``, and, with ``ablations``, the
    model with context or query genes masked, or gene order shuffled. Metrics: median absolute error
    (with a bootstrap 95% interval), Pearson r and bias over cells, and the same over donors (a
    donor's cells of one cell type averaged; ``nan`` with ``donor_key=None``). With ``generated``,
    rows of split ``generated`` check the generated cells against the training cells: classifier
    two-sample tests (cross-validated AUC of real vs generated; controls: real vs real, vs random
    genes, vs shuffled ranks), the share a classifier trained on real cells calls the context's
    type, the age read from them (by SGD, ridge and the model) against the age requested and, as a
    ceiling, real cells of that age read alike (``age_*_real``), doublets.

    Parameters
    ----------
    adata
        Tokenized AnnData (or MuData, ``mod``): raw counts, ages, cell types, sexes, donors.
    {temporal_model}
    {vocab}
    heldout_cell_types
        Cell types kept out of training; default ``uns['aging_atlas']['heldout_cell_types']``.
    heldout_ages
        ``(low, high)`` months kept out of training, or ``None`` (no held-out-age split).
    heldout_donors
        Donors (``obs[donor_key]`` values) kept out of training; ``None``: no held-out-donor split.
    train_mask
        The training cells (bool mask, ``obs`` column or ``None``: reference cells outside the
        held-out cell types, ages and donors; held-out donors are dropped from a given mask).
        Baselines are fitted on them.
    reference_key, reference
        ``obs`` column and value of the reference (healthy) cells: splits, contexts and
        training cells are drawn from them. ``reference_key=None`` uses every cell.
    time_key, cell_type_key, sex_key, donor_key
        ``obs`` columns of age (months), cell type, sex and donor.
    n_contexts, n_context_cells
        Contexts per query cell and cells per context.
    {n_views}
    n_cells
        Cells evaluated per split (a random subset; ``None`` for all).
    calibrate, second_pass
        Also report rows ``maxtoki_calibrated`` and ``maxtoki_second_pass`` (as ``predict_time``).
    n_boot
        Bootstrap resamples (of cells, and of donors for the donor metrics) for the 95%
        intervals of the median errors.
    ablations
        ``True`` for all of ``('mask_context', 'mask_query', 'shuffle_genes')`` or a subset.
    generated
        Generated cells (from :func:`maxtoki.tl.generate`) for the doublet and two-sample checks.
    doublet_pairs
        ``'any'`` (random pairs of real cells) or ``'same_type'`` for the simulated doublets.
    {max_genes}
    {batch_size}
    {device}
    {random_state}
    {tokens_key}
    key_added
        The table goes to ``uns[f'{key_added}_evaluate']``.
    {mod}

    Returns
    -------
    The table, one row per split and method: ``split``, ``method``, ``n_cells``, ``n_donors``,
    ``median_abs_error_months`` with its interval (``…_ci_low_months``, ``…_ci_high_months``),
    ``pearson_r``, ``bias_months``, the same per donor (prefix ``donor_``), ``singlet_fraction``,
    ``classifier_accuracy``, ``classifier_auc`` (mean of 5 draws, SD ``classifier_auc_sd``),
    ``cell_type_match``, ``spearman_r`` (``nan`` if not applicable; :func:`maxtoki.get.evaluate`).
    """
    start = logg.info("evaluating MaxToki against the naive and linear baselines")
    adata, mdata = resolve_modality(adata, mod)
    require_cells(adata)
    vocab = model_vocab(model, vocab, need_time=True, what="mt.tl.evaluate")
    check_key("key_added", key_added)
    max_genes = max_genes_of(model, max_genes)
    reading, n_cells, n_boot = _counts(
        n_contexts, n_context_cells, n_views, n_cells, n_boot, doublet_pairs, calibrate, second_pass
    )
    if generated is not None:
        generated_tokens(generated, mod, vocab, tokens_key)  # before the long predictions
    tokens = read_tokens(adata, tokens_key, vocab)
    d = _design(
        adata, heldout_cell_types, heldout_ages, heldout_donors, train_mask, reference_key,
        reference, time_key, cell_type_key, sex_key, donor_key, generated is not None,
    )  # fmt: skip
    ablations = _ablations(ablations)
    gen = as_generator(random_state)
    d.splits = {k: _subsample(v, n_cells, gen) for k, v in d.splits.items()}
    naive_age = naive(d.ctype, d.sex, d.ages, d.train)
    linear_at = _linear(adata, tokens_key, tokens.matrix, vocab, max_genes, d, gen)
    runner, encoder = _runner_encoder(model, vocab, batch_size, device, max_genes)
    cells = tokens.cells()
    groups = group_labels(adata.obs, (cell_type_key, sex_key), "data")
    rows, errors = _age_rows(
        d, cells, groups, runner, encoder, ablations, vocab, gen, naive_age, linear_at,
        donor_key is not None, reading,
    )  # fmt: skip
    if generated is not None:  # own draws: its rows of real cells alone do not depend on the model
        rows += generated_check(
            adata, tokens.matrix, d.ctype, d.ages, d.donors, d.train, generated, vocab, max_genes,
            gen.spawn(1)[0], mod, doublet_pairs, tokens_key, cell_type_key,
            _generated_ages(d, cells, groups, runner, encoder, gen, (cell_type_key, sex_key),
                            reading),
        )  # fmt: skip
    _add_intervals(rows, errors, n_boot, gen)  # after the other draws
    table = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    key = _store(adata, mdata, key_added, table, _params(locals(), d, runner))
    logg.info(f"    added uns[{key!r}] ({len(table)} rows)", time=start)
    return table


def _linear(adata, tokens_key, tokens, vocab, max_genes, d: _Design, gen):
    """The linear baselines' ``predict(rows)``; ``None`` without splits.

    The model's view of a cell, for ``ridge_top_genes``: its first ``max_genes`` gene tokens.
    """
    if not d.splits:
        return None
    view = functools.partial(
        top_gene_presence, tokens, is_gene=vocab.is_gene_token, max_genes=max_genes
    )
    return linear_baselines(adata, tokens_key, d.ages, d.train, gen, view)


def _runner_encoder(model, vocab, batch_size, device, max_genes) -> tuple:
    """The batch runner of the model and the prompt encoder of its vocabulary."""
    from ..models import BatchRunner
    from ..pp import PromptEncoder

    runner = BatchRunner(model, batch_size=batch_size, device=device)
    max_length = model.config.max_position_embeddings
    return runner, PromptEncoder(vocab, max_length=max_length, max_genes=max_genes)


def _store(adata, mdata, key_added: str, table: pd.DataFrame, params: dict) -> str:
    """Write the table and its params to ``uns`` (of the MuData too); returns the key."""
    key = slot(key_added, "evaluate")
    adata.uns[key] = {"table": table_to_uns(table), "params": params}
    if mdata is not None:
        mdata.uns[key] = adata.uns[key]
    return key


@dataclass(frozen=True)
class _Reading:
    """How the model reads a query: contexts, views and the optional passes."""

    n_contexts: int
    n_context_cells: int
    n_views: int
    calibrate: bool
    second_pass: bool


def _counts(
    n_contexts, n_context_cells, n_views, n_cells, n_boot, doublet_pairs, calibrate, second_pass
) -> tuple[_Reading, int | None, int]:
    """The checked reading, ``n_cells`` and ``n_boot`` of :func:`evaluate` (``doublet_pairs``)."""
    if doublet_pairs not in ("any", "same_type"):
        raise ValueError(f"doublet_pairs must be 'any' or 'same_type', got {doublet_pairs!r}")
    require_bool(calibrate=calibrate, second_pass=second_pass)
    reading = _Reading(
        positive_int("n_contexts", n_contexts),
        positive_int("n_context_cells", n_context_cells),
        positive_int("n_views", n_views),
        calibrate,
        second_pass,
    )
    return reading, positive_int("n_cells", n_cells, optional=True), positive_int("n_boot", n_boot)


def _add_intervals(rows: list[dict], errors: list, n_boot: int, gen) -> None:
    """Bootstrap intervals of each age row's cell and donor median errors, into the row."""
    for row, (cell_err, donor_err) in zip(rows, errors, strict=False):
        for prefix, err in (("", cell_err), ("donor_", donor_err)):
            lo, hi = median_ci(err, n_boot, gen)
            row[f"{prefix}median_abs_error_ci_low_months"] = lo
            row[f"{prefix}median_abs_error_ci_high_months"] = hi


def _subsample(rows: np.ndarray, n: int | None, gen) -> np.ndarray:
    """At most ``n`` of ``rows`` (sorted), drawn without replacement."""
    return rows if n is None or len(rows) <= n else np.sort(gen.choice(rows, n, False))


def _age_rows(
    d: _Design, cells, groups, runner, encoder, ablations, vocab, gen, naive_age, linear_at,
    by_donor: bool, reading: _Reading,
) -> tuple[list[dict], list[tuple[np.ndarray, np.ndarray]]]:  # fmt: skip
    """The metric rows of every split and method, with each row's cell and donor errors."""
    rows, errors = [], []
    for split, q in d.splits.items():
        unit = None
        if by_donor:
            unit = np.char.add(np.char.add(d.donors[q].astype(str), "|"), d.ctype[q].astype(str))
        preds, context_rows = _model_predictions(
            split, q, d, cells, groups, runner, encoder, ablations, vocab, gen,
            reading,
        )  # fmt: skip
        linear = linear_at(np.union1d(q, context_rows))
        preds["naive"] = naive_age[q]
        for name, age in linear.items():  # each linear baseline, and it plus its offset
            preds[name] = age[q]
            preds[f"{name}_offset"] = age[q] + reference_offset(d.ages - age, context_rows)
        for m, p in preds.items():
            row, cell_err, donor_err = metrics(split, m, p, d.ages[q], unit, d.donors[q])
            rows.append(row)
            errors.append((cell_err, donor_err))
    return rows, errors


def _model_predictions(
    split,
    q,
    d: _Design,
    cells,
    groups,
    runner,
    encoder,
    ablations,
    vocab,
    gen,
    reading: _Reading,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The model's age of each cell of a split (and of each ablation), median over contexts.

    Contexts: reference cells of the same cell type and sex from other donors, never of the
    held-out donors; for the held-out ages and donors, of training ages only. With
    ``reading.calibrate``, also ``maxtoki_calibrated`` (lines fitted on the same pool); with
    ``reading.second_pass``, also ``maxtoki_second_pass``; every query (and ablated query) is
    read through ``reading.n_views`` views. Also returns the rows of every context the
    model read, ``(cells, contexts, cells)``.
    """
    training_ages = split in ("heldout_age", "heldout_donor")
    pool = np.flatnonzero(d.is_ref & ~d.in_ho_donor & (~d.in_ho_age if training_ages else True))
    ref = Reference(
        [cells[i] for i in pool], d.ages[pool], groups[pool], d.donors[pool], pool, None
    )
    contexts = draw_contexts(
        ref,
        groups[q],
        d.donors[q],
        _positions(pool, q),
        n_contexts=reading.n_contexts,
        n_cells=reading.n_context_cells,
        gen=gen,
        groupby="cell type and sex",
    )
    variants = {"maxtoki": (ref.cells, [cells[i] for i in q])}
    for ab in ablations:
        ab_gen = np.random.default_rng(gen.integers(2**31))
        variants[f"maxtoki_{ab}"] = _ablate(ab, ref.cells, [cells[i] for i in q], vocab, ab_gen)
    variants = {m: (rc, query_views(qc, reading.n_views, gen)) for m, (rc, qc) in variants.items()}
    out, calibration = {}, None
    for method, (rc, qc) in variants.items():
        pred, dts = predict_ages(
            runner, encoder, rc, ref.times, qc, contexts, desc=f"evaluate {split} {method}"
        )
        out[method] = np.median(pred, axis=1)
        if method != "maxtoki":
            continue
        first = pred  # the first pass's reads (calibrated when asked)
        if reading.calibrate:
            calibration = fit_calibration(
                runner, encoder, ref, groups[q], n_context_cells=reading.n_context_cells, gen=gen,
                n_views=reading.n_views, desc=f"evaluate {split} calibration",
            )  # fmt: skip
            dts = calibration.apply(dts, groups[q], d.donors[q])
            first = ref.times[contexts[:, :, -1]] + dts
            out["maxtoki_calibrated"] = np.median(first, axis=1)
    if reading.second_pass:  # the median over both passes' reads
        ages, _, again = refine_ages(
            runner, encoder, ref, variants["maxtoki"][1], groups[q], d.donors[q],
            _positions(pool, q), np.median(first, axis=1),
            n_contexts=reading.n_contexts, n_context_cells=reading.n_context_cells, gen=gen,
            groupby="cell type and sex", desc=f"evaluate {split} second pass",
            calibration=calibration,
        )  # fmt: skip
        out["maxtoki_second_pass"] = np.median(np.hstack([first, ages]), axis=1)
        contexts = np.concatenate([contexts, again], axis=1)
    return out, pool[contexts]


def _generated_ages(
    d: _Design, cells, groups, runner, encoder, gen, groupby, reading: _Reading
):
    """``read(tokens, obs)``: the model's age of generated cells (``None`` without their groups).

    As for real queries: contexts of the cell's type and sex from the training cells, median
    over contexts; cells of a group without training cells get ``nan``. ``read(rows=rows,
    gen=gen)`` reads real cells (rows of the data) the same way, with contexts of other donors
    drawn from ``gen``.
    """
    pool = np.flatnonzero(d.train)  # the contexts' pool, built once for every call
    ref = Reference([cells[i] for i in pool], d.ages[pool], groups[pool], d.donors[pool], pool,
                    None)  # fmt: skip

    def read(tokens=None, obs=None, *, rows=None, gen=gen) -> np.ndarray | None:
        if rows is None and not set(groupby) <= set(obs.columns):
            return None
        if rows is None:
            q_groups, q_donors = group_labels(obs, groupby, "generated cells"), None
            queries = [row[row != 0].astype(np.int64) for row in tokens]
            ok = np.isin(q_groups.astype(str), ref.groups.astype(str))
        else:  # real cells: their contexts come from other donors of their group
            q_groups, q_donors = groups[rows], d.donors[rows]
            queries = [cells[i] for i in rows]
            ok = _other_donors(ref, q_groups, q_donors)
        out = np.full(len(queries), np.nan)
        if ok.any():
            self_pos = _positions(pool, rows[ok]) if rows is not None else np.full(ok.sum(), -1)
            contexts = draw_contexts(
                ref, q_groups[ok], None if q_donors is None else q_donors[ok], self_pos,
                n_contexts=reading.n_contexts, n_cells=reading.n_context_cells, gen=gen,
                groupby="cell type and sex",
            )  # fmt: skip
            kept = [queries[i] for i in np.flatnonzero(ok)]
            pred, _ = predict_ages(
                runner, encoder, ref.cells, ref.times, kept, contexts, desc="evaluate generated"
            )
            out[ok] = np.median(pred, axis=1)
        return out

    return read


def _other_donors(ref: Reference, groups: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """Whether each cell's group has reference cells of a donor other than the cell's own."""
    donors_of: dict[str, set] = {}
    for g, dn in zip(ref.groups.astype(str), ref.donors, strict=True):
        donors_of.setdefault(g, set()).add(dn)
    return np.array([
        bool(donors_of.get(g, set()) - {dn})
        for g, dn in zip(groups.astype(str), donors, strict=True)
    ], dtype=bool)  # fmt: skip


def _positions(pool: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row's position in ``pool`` (sorted), -1 when absent."""
    pos = np.searchsorted(pool, rows).clip(max=max(len(pool) - 1, 0))
    return np.where(pool[pos] == rows, pos, -1) if len(pool) else np.full(len(rows), -1)


@dataclass
class _Design:
    """The cells of each split, the training cells and the columns they come from."""

    ages: np.ndarray
    ctype: np.ndarray
    sex: np.ndarray
    donors: np.ndarray
    is_ref: np.ndarray
    in_ho_age: np.ndarray
    in_ho_donor: np.ndarray
    train: np.ndarray
    heldout_cell_types: list[str]
    heldout_donors: list[str]
    splits: dict[str, np.ndarray]


def _design(
    adata,
    heldout_cell_types,
    heldout_ages,
    heldout_donors,
    train_mask,
    reference_key,
    reference,
    time_key,
    cell_type_key,
    sex_key,
    donor_key,
    has_generated,
) -> _Design:
    ages = numeric_obs(adata, time_key, "data", "pass `time_key=` naming ages in months")
    for key, fix in ((cell_type_key, "pass `cell_type_key=`"), (sex_key, "pass `sex_key=`")):
        require_obs(adata, key, fix)
    if donor_key is not None:
        require_obs(adata, donor_key, "pass `donor_key=` (or None)")
    obs = adata.obs
    ctype = obs[cell_type_key].astype(str).to_numpy()
    sex = obs[sex_key].astype(str).to_numpy()
    donors = (
        obs[donor_key].astype(str).to_numpy() if donor_key else np.asarray(adata.obs_names, str)
    )
    is_ref = np.isfinite(ages)
    if reference_key is not None:
        require_obs(adata, reference_key, "pass `reference_key=` (or None to use every cell)")
        is_ref &= (obs[reference_key].astype(str) == str(reference)).to_numpy()
    if heldout_cell_types is None:
        atlas = adata.uns.get("aging_atlas", {})
        heldout_cell_types = list(np.asarray(atlas.get("heldout_cell_types", []), dtype=str))
    heldout_cell_types = (
        [heldout_cell_types]
        if isinstance(heldout_cell_types, str)
        else [str(t) for t in heldout_cell_types]
    )
    unknown = sorted(set(heldout_cell_types) - set(ctype))
    if unknown:
        raise ValueError(
            f"heldout_cell_types {unknown} are not values of obs[{cell_type_key!r}]; pass cell "
            f"types from {sorted(set(ctype))[:8]}"
        )
    in_ho_type = np.isin(ctype, heldout_cell_types)
    in_ho_age = np.zeros(adata.n_obs, dtype=bool)
    if heldout_ages is not None:
        lo_age, hi_age = (float(v) for v in heldout_ages)
        if hi_age < lo_age:
            raise ValueError(f"heldout_ages must be (low, high) months, got {heldout_ages}")
        in_ho_age = (ages >= lo_age) & (ages <= hi_age)
    heldout_donors, in_ho_donor = _heldout_donors(heldout_donors, donor_key, donors)
    train = _train_mask(adata, train_mask, is_ref & ~in_ho_type & ~in_ho_age) & ~in_ho_donor
    if not train.any():
        raise ValueError(
            "no training cells: check `train_mask`, `heldout_*` and `reference` (held-out "
            "donors are never training cells: keep some donors out of `heldout_donors`)"
        )
    splits: dict[str, np.ndarray] = {}
    if heldout_cell_types:
        splits["heldout_cell_type"] = np.flatnonzero(is_ref & in_ho_type)
    if heldout_ages is not None:
        splits["heldout_age"] = np.flatnonzero(is_ref & in_ho_age & ~in_ho_type)
    if heldout_donors:
        splits["heldout_donor"] = np.flatnonzero(is_ref & in_ho_donor & ~in_ho_type & ~in_ho_age)
    splits = {k: v for k, v in splits.items() if len(v)}
    if not splits and not has_generated:
        raise ValueError(
            "nothing to evaluate: pass `heldout_cell_types`, `heldout_ages` and/or "
            "`heldout_donors` that match reference cells (or `generated` cells for the doublet "
            "check)"
        )
    return _Design(
        ages, ctype, sex, donors, is_ref, in_ho_age, in_ho_donor, train, heldout_cell_types,
        heldout_donors, splits,
    )  # fmt: skip


def _heldout_donors(heldout_donors, donor_key, donors) -> tuple[list[str], np.ndarray]:
    """The checked held-out donor ids and the mask of their cells."""
    if heldout_donors is None:
        return [], np.zeros(len(donors), dtype=bool)
    if donor_key is None:
        raise ValueError("heldout_donors needs donors: pass `donor_key=` naming the donor column")
    if isinstance(heldout_donors, str) or not isinstance(heldout_donors, Iterable):
        heldout_donors = [heldout_donors]  # one donor id
    ids = [str(v) for v in heldout_donors]
    unknown = sorted(set(ids) - set(donors))
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:8]) + (" …" if len(unknown) > 8 else "")
        raise ValueError(
            f"heldout_donors {shown} are not values of obs[{donor_key!r}]; pass donor ids from "
            f"{sorted(set(donors))[:8]}"
        )
    return ids, np.isin(donors, ids)


def _ablations(ablations) -> tuple[str, ...]:
    if ablations is True:
        return ABLATIONS
    if ablations is False or ablations is None:
        return ()
    ablations = tuple([ablations] if isinstance(ablations, str) else ablations)
    bad = sorted(set(ablations) - set(ABLATIONS))
    if bad:
        raise ValueError(f"unknown ablations {bad}; choose from {ABLATIONS}")
    return ablations


def _params(args: dict[str, Any], d: _Design, runner) -> dict[str, Any]:
    return h5ad_safe(
        {
            "heldout_cell_types": list(d.heldout_cell_types),
            "heldout_ages": args["heldout_ages"],
            "heldout_donors": list(d.heldout_donors),
            "train_mask": "given"
            if args["train_mask"] is not None
            else "reference cells outside the held-out sets",
            "n_train_cells": int(d.train.sum()),
            "reference_key": args["reference_key"],
            "reference": args["reference"],
            "time_key": args["time_key"],
            "cell_type_key": args["cell_type_key"],
            "sex_key": args["sex_key"],
            "donor_key": args["donor_key"],
            "n_contexts": args["n_contexts"],
            "n_context_cells": args["n_context_cells"],
            "n_views": args["n_views"],
            "n_cells": args["n_cells"],
            "n_boot": args["n_boot"],
            "calibrate": bool(args["calibrate"]),
            "second_pass": bool(args["second_pass"]),
            "ablations": list(args["ablations"]),
            "aggregate": "median",
            "max_genes": args["max_genes"],
            "device": str(runner.device),
            "dtype": runner.dtype_name,
            "random_state": random_state_param(args["random_state"]),
            "tokens_key": args["tokens_key"],
            "unit": "months",
        }
    )


def _train_mask(adata: AnnData, train_mask: Any, default: np.ndarray) -> np.ndarray:
    if train_mask is None:
        return default
    if isinstance(train_mask, str):
        require_obs(adata, train_mask, "pass a boolean obs column (or mask) as `train_mask`")
        train_mask = adata.obs[train_mask]
    if isinstance(train_mask, pd.Series):
        train_mask = train_mask.reindex(adata.obs_names).fillna(False).to_numpy()
    mask = np.asarray(train_mask)
    if mask.dtype != bool or mask.shape != (adata.n_obs,):
        raise ValueError(f"train_mask must be a boolean mask over the {adata.n_obs} cells")
    return mask


def _ablate(
    kind: str, ref_cells: list, query_cells: list, vocab: GeneVocab, gen: np.random.Generator
):
    def mask(cell):
        out = cell.copy()
        out[1:-1] = vocab.mask_id
        return out

    def shuffle(cell):
        out = cell.copy()
        out[1:-1] = gen.permutation(out[1:-1])
        return out

    if kind == "mask_context":
        return [mask(c) for c in ref_cells], query_cells
    if kind == "mask_query":
        return ref_cells, [mask(c) for c in query_cells]
    return [shuffle(c) for c in ref_cells], [shuffle(c) for c in query_cells]
