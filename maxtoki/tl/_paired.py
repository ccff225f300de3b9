"""The official "query swap" comparison of age acceleration (private to tl).

For each cell of a group (e.g. a disease), an age-matched cell of the reference group (e.g. a
control) of the same trajectory group (e.g. cell type and sex) and another donor is drawn; both
are aged against the *same* context trajectories. Context, regression towards the mean and the
model's bias at that age then cancel in the difference of their accelerations, which is averaged
per donor of the group: donors are the unit of the interval and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._anndata import group_labels
from .._keys import read_tokens
from .._validate import max_genes_of, model_vocab
from ._calibration import Calibration, fit_calibration
from ._contexts import _draw, predict_ages, reference_set
from ._utils import satterthwaite_interval


@dataclass
class PairedInputs:
    """Everything the paired comparison reads, as arrays over the cells of ``adata``."""

    cells: list[np.ndarray]  # tokens of every cell of adata
    ages: np.ndarray
    labels: np.ndarray  # groupby (e.g. condition)
    strata: np.ndarray
    traj: np.ndarray  # trajectory group (e.g. cell type | sex)
    donors: np.ndarray
    ref_cells: list[np.ndarray]  # the context pool
    ref_ages: np.ndarray
    ref_traj: np.ndarray
    ref_donors: np.ndarray
    ref_self: np.ndarray  # each pool cell's row in adata (-1: cells of another object)


def paired_comparison(
    inputs: PairedInputs,
    group_rows: np.ndarray,
    reference_rows: np.ndarray,
    *,
    runner: Any,
    encoder: Any,
    age_match: float,
    n_contexts: int,
    n_context_cells: int,
    gen: np.random.Generator,
    desc: str,
    calibration: Calibration | None = None,
) -> dict[str, Any] | None:
    """Paired accelerations of one group vs the reference within one stratum.

    Returns ``None`` when no cell of the group has an age-matched reference cell; else the pairs
    (group row, reference row), each one's acceleration and the per-pair difference. With a
    ``calibration``, each cell's timelapses go through its trajectory group's line (leaving out
    its donor).
    """
    x = inputs
    pairs, contexts = [], []
    for d in group_rows:
        cand = reference_rows[
            (x.traj[reference_rows] == x.traj[d])
            & (np.abs(x.ages[reference_rows] - x.ages[d]) <= age_match)
            & (x.donors[reference_rows] != x.donors[d])
        ]
        if len(cand) == 0:
            continue
        c = int(gen.choice(cand))
        pool = np.flatnonzero(
            (x.ref_traj == x.traj[d])
            & (x.ref_donors != x.donors[d])
            & (x.ref_donors != x.donors[c])
            & (x.ref_self != d)
            & (x.ref_self != c)
        )
        if len(pool) == 0:
            continue
        pairs.append((int(d), c))
        contexts.append([_draw(pool, x.ref_ages[pool], n_context_cells, gen)
                         for _ in range(n_contexts)])  # fmt: skip
    if not pairs:
        return None
    pair = np.asarray(pairs, dtype=np.int64)
    ctx = np.asarray(contexts, dtype=np.int64)
    queries = [x.cells[i] for i in pair[:, 0]] + [x.cells[i] for i in pair[:, 1]]
    both = np.concatenate([ctx, ctx])
    ages, dts = predict_ages(runner, encoder, x.ref_cells, x.ref_ages, queries, both, desc=desc)
    if calibration is not None:
        rows = np.concatenate([pair[:, 0], pair[:, 1]])
        ages = x.ref_ages[both[:, :, -1]] + calibration.apply(dts, x.traj[rows], x.donors[rows])
    predicted = ages.mean(axis=1)
    acc = predicted - x.ages[np.concatenate([pair[:, 0], pair[:, 1]])]
    acc_group, acc_ref = acc[: len(pair)], acc[len(pair) :]
    return {"pairs": pair, "acc_group": acc_group, "acc_ref": acc_ref,
            "difference": acc_group - acc_ref}  # fmt: skip


def paired_statistics(
    difference: np.ndarray,
    donors: np.ndarray,
    reference_donors: np.ndarray,
    *,
    n_boot: int,
    ci: float,
    gen: np.random.Generator,
) -> dict[str, float]:
    """Donor-level effect, its interval and two paired tests of the differences.

    ``donors`` and ``reference_donors`` name each pair's two donors. The effect is the mean over
    the group's donors of their mean difference. Few reference donors serve many of the group's
    donors, so their own spread is shared between those donors' means, which a one-sample t
    interval on the means misses. The interval is a t interval whose variance is a two-way
    jackknife: over the group's donors plus over the reference donors, less the pairs' own noise
    that both count, with Satterthwaite's degrees of freedom (simulated coverage of a nominal
    95%: 94–97%, the one-sample interval's 88–92%; ``tests/tl/test_age_acceleration.py``). The
    tests (Wilcoxon signed-rank and sign flips of the group's donor means) are conditional on
    the reference donors. With fewer than two group donors the interval and p-values are NaN.
    """
    from scipy.stats import wilcoxon

    _, codes = np.unique(donors, return_inverse=True)
    means = np.bincount(codes, weights=difference) / np.bincount(codes)
    effect = float(means.mean())
    if len(means) < 2:
        nan = float("nan")
        return dict(zip(_STATS, (len(means), effect, nan, nan, nan, nan), strict=True))
    v_group = float(np.var(means, ddof=1)) / len(means)
    v_reference, n_reference = _reference_variance(difference, codes, reference_donors)
    lo, hi = satterthwaite_interval(effect, [v_group, v_reference], [len(means), n_reference], ci)
    signs = gen.choice([-1.0, 1.0], size=(n_boot, len(means)))
    flipped = np.abs((signs * means).mean(axis=1))
    p_perm = float((1 + np.sum(flipped >= abs(effect) - 1e-12)) / (n_boot + 1))
    p_wilcoxon = float(wilcoxon(means).pvalue) if np.any(means != 0) else np.nan
    values = (len(means), effect, lo, hi, p_wilcoxon, p_perm)
    return dict(zip(_STATS, values, strict=True))


def _reference_variance(
    difference: np.ndarray, codes: np.ndarray, reference_donors: np.ndarray
) -> tuple[float, int]:
    """The reference donors' share of the effect's variance, and how many there are.

    The jackknife over reference donors (each left out in turn, with its pairs) less the pairs'
    own noise, which the jackknife over group donors counts already; 0 with fewer than two
    reference donors.
    """
    _, ref_codes = np.unique(reference_donors, return_inverse=True)
    n_reference = int(ref_codes.max()) + 1
    if n_reference < 2:
        return 0.0, n_reference
    n_group = int(codes.max()) + 1
    left_out = np.empty(n_reference)
    for j in range(n_reference):
        keep = ref_codes != j
        sums = np.bincount(codes[keep], weights=difference[keep], minlength=n_group)
        counts = np.bincount(codes[keep], minlength=n_group)
        left_out[j] = np.mean(sums[counts > 0] / counts[counts > 0])
    jackknife = (n_reference - 1) / n_reference * float(np.sum((left_out - left_out.mean()) ** 2))
    pair_noise = _pair_noise(difference, codes, ref_codes) * np.sum(1.0 / np.bincount(codes))
    return max(jackknife - float(pair_noise) / n_group**2, 0.0), n_reference


def _pair_noise(difference: np.ndarray, codes: np.ndarray, ref_codes: np.ndarray) -> float:
    """Variance of a pair's difference about its two donors' additive effects.

    Residuals of ``difference ≈ mean + group donor + reference donor`` (alternating means),
    whose degrees of freedom count the connected blocks of donors that pairs link (e.g. one per
    sex); where that leaves none (every pair with its own reference donor), the pooled variance
    within group donors.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_group, n_reference = int(codes.max()) + 1, int(ref_codes.max()) + 1
    centred = difference - difference.mean()
    links = coo_matrix(
        (np.ones(len(codes)), (codes, n_group + ref_codes)), shape=(n_group + n_reference,) * 2
    )
    n_blocks = connected_components(links, directed=False)[0]
    dof = len(difference) - n_group - n_reference + n_blocks
    two_way = dof > 0
    if not two_way:
        dof = len(difference) - n_group  # the group donors' means alone
    group_effect, reference_effect = np.zeros(n_group), np.zeros(n_reference)
    for _ in range(50 if two_way else 1):
        group_effect = np.bincount(codes, weights=centred - reference_effect[ref_codes])
        group_effect /= np.bincount(codes)
        if two_way:
            reference_effect = np.bincount(ref_codes, weights=centred - group_effect[codes])
            reference_effect /= np.bincount(ref_codes)
    residual = centred - group_effect[codes] - reference_effect[ref_codes]
    return float(np.sum(residual**2)) / dof if dof > 0 else 0.0


_STATS = (
    "n_donors",
    "effect_months",
    "ci_low_months",
    "ci_high_months",
    "pval_wilcoxon",
    "pval_permutation",
)


def paired_rows(
    adata, *, model, vocab, context, context_groupby, groupby, donor_key, time_key, age_match,
    n_contexts, n_context_cells, max_genes, batch_size, device, tokens_key, mod, labels,
    reference, groups, strata, order, age, n_boot, ci, gen, calibrate=False,
) -> tuple[np.ndarray, list[dict]]:  # fmt: skip
    """The ``'paired'`` method: per-cell accelerations and one row per stratum and group."""
    from .._anndata import positive_int
    from ..models import BatchRunner
    from ..pp import PromptEncoder

    if model is None:
        raise ValueError("method='paired' ages the pairs with a model: pass `model=`")
    vocab = model_vocab(model, vocab, need_time=True, what="mt.tl.age_acceleration")
    n_contexts = positive_int("n_contexts", n_contexts)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    max_genes = max_genes_of(model, max_genes)
    ref = reference_set(
        adata, context=context, reference_key=groupby, reference=reference, time_key=time_key,
        groupby=context_groupby, donor_key=donor_key, vocab=vocab, tokens_key=tokens_key, mod=mod,
    )  # fmt: skip
    if ref.donors is None:
        raise ValueError(
            f"method='paired' needs donors: obs[{donor_key!r}] must exist in `adata` and in the "
            "context (donors are the unit of the statistics)"
        )
    inputs = PairedInputs(
        cells=read_tokens(adata, tokens_key, vocab).cells(),
        ages=age,
        labels=labels,
        strata=strata,
        traj=group_labels(adata.obs, context_groupby, "adata"),
        donors=adata.obs[donor_key].astype(str).to_numpy(),
        ref_cells=ref.cells,
        ref_ages=ref.times,
        ref_traj=ref.groups,
        ref_donors=ref.donors,
        ref_self=ref.rows if ref.adata is adata else np.full(len(ref.rows), -1),
    )
    runner = BatchRunner(model, batch_size=batch_size, device=device)
    encoder = PromptEncoder(
        vocab, max_length=model.config.max_position_embeddings, max_genes=max_genes
    )
    calibration = None
    if calibrate:
        compared = np.isin(labels, [reference, *groups]) & np.isfinite(age)
        calibration = fit_calibration(
            runner, encoder, ref, np.unique(inputs.traj[compared].astype(str)),
            n_context_cells=n_context_cells, gen=gen, desc="age_acceleration calibration",
        )  # fmt: skip
    acc = np.full(adata.n_obs, np.nan)
    ref_sum, ref_n = np.zeros(adata.n_obs), np.zeros(adata.n_obs)
    rows = []
    known = np.isfinite(age)
    for stratum in order:
        in_s = (strata == stratum) & known
        reference_rows = np.flatnonzero(in_s & (labels == reference))
        for group in groups:
            group_rows = np.flatnonzero(in_s & (labels == group))
            if len(group_rows) == 0 or len(reference_rows) == 0:
                continue
            out = paired_comparison(
                inputs, group_rows, reference_rows, runner=runner, encoder=encoder,
                age_match=age_match, n_contexts=n_contexts, n_context_cells=n_context_cells,
                gen=gen, desc=f"age_acceleration {stratum} {group}", calibration=calibration,
            )  # fmt: skip
            if out is None:
                continue
            d, c = out["pairs"][:, 0], out["pairs"][:, 1]
            acc[d] = out["acc_group"]
            np.add.at(ref_sum, c, out["acc_ref"])
            np.add.at(ref_n, c, 1)
            rows.append(_paired_row(stratum, group, reference, inputs, out, n_boot, ci, gen))
    with np.errstate(invalid="ignore"):
        acc = np.where(ref_n > 0, ref_sum / np.maximum(ref_n, 1), acc)
    return acc, rows


def _paired_row(stratum, group, reference, x: PairedInputs, out, n_boot, ci, gen) -> dict:
    d, c = out["pairs"][:, 0], out["pairs"][:, 1]
    stats = paired_statistics(
        out["difference"], x.donors[d], x.donors[c], n_boot=n_boot, ci=ci, gen=gen
    )
    means = pd.Series(out["acc_group"]).groupby(x.donors[d]).mean()
    ref_means = pd.Series(out["acc_ref"]).groupby(x.donors[c]).mean()
    effect = stats["effect_months"]
    return {
        "stratum": stratum,
        "group": group,
        "reference": reference,
        "method": "paired",
        "n_cells": len(d),
        "n_donors": stats["n_donors"],
        "n_reference_cells": len(np.unique(c)),
        "n_reference_donors": len(ref_means),
        "mean_acceleration_months": float(means.mean()),
        "reference_mean_acceleration_months": float(ref_means.mean()),
        "effect_months": effect,
        "effect_years": effect / 12.0,
        "ci_low_months": stats["ci_low_months"],
        "ci_high_months": stats["ci_high_months"],
        "ci_low_years": stats["ci_low_months"] / 12.0,
        "ci_high_years": stats["ci_high_months"] / 12.0,
        "pval_mannwhitney": np.nan,
        "pval_wilcoxon": stats["pval_wilcoxon"],
        "pval_permutation": stats["pval_permutation"],
    }
