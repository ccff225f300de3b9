from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import is_number, numeric_obs, positive_int, require_bool, require_obs
from .._docs import inject_docs
from .._keys import (
    PREDICTED_KEY,
    TOKENS_KEY,
    check_key,
    h5ad_safe,
    random_state_param,
    slot,
    table_to_uns,
)
from ._paired import paired_rows
from ._utils import as_generator, bh_adjust, finish, prepare, t_interval

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki

#: Columns of the table in ``uns['maxtoki_age_acceleration']['table']``, in order.
TABLE_COLUMNS = (
    "stratum",
    "group",
    "reference",
    "method",
    "n_cells",
    "n_donors",
    "n_reference_cells",
    "n_reference_donors",
    "mean_acceleration_months",
    "reference_mean_acceleration_months",
    "effect_months",
    "effect_years",
    "ci_low_months",
    "ci_high_months",
    "ci_low_years",
    "ci_high_years",
    "pval_mannwhitney",
    "pval_wilcoxon",
    "pval_permutation",
    "pval_adj",
)


@inject_docs
def age_acceleration(
    adata: AnnData,
    *,
    method: Literal["donor", "paired"] = "donor",
    groupby: str = "condition",
    reference: str = "control",
    groups: Sequence[str] | None = None,
    stratify_by: str | None = None,
    time_key: str = "age_months",
    predicted_key: str = PREDICTED_KEY,
    donor_key: str = "donor",
    age_match: float | None = 60.0,
    adjust: Literal["linear", "none"] = "linear",
    n_boot: int = 1000,
    ci: float = 0.95,
    model: MaxToki | None = None,
    vocab: GeneVocab | None = None,
    context: AnnData | None = None,
    context_groupby: str | Sequence[str] | None = ("cell_type", "sex"),
    n_contexts: int = 5,
    n_context_cells: int = 2,
    calibrate: bool = False,
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    tokens_key: str = TOKENS_KEY,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    r"""Age acceleration of each group against a reference group, with donor-level statistics.

    The acceleration of a cell is its predicted minus its chronological age (months). Two methods
    compare a group (e.g. a disease) with the reference (e.g. the healthy controls); both average
    cells per donor, the unit of replication, and put Student-t intervals and tests on donor
    means; ``docs/compatibility.md`` describes them in full.

    - ``'donor'``: ages already predicted (``obs[predicted_key]``, from
      :func:`maxtoki.tl.predict_time`) of the group's cells vs *age-matched* reference cells
      (donors within the group's age range ± ``age_match`` months), after removing the
      reference's linear age trend (``adjust``); tests: Mann–Whitney U and a permutation of donor
      labels.
    - ``'paired'`` (the official "query swap"; needs ``model``): each cell of the group is paired
      with a reference cell of its trajectory group (``context_groupby``) and another donor, aged
      within ``age_match`` months, and both are aged against the *same* context trajectories, so
      context and the model's bias at that age cancel in the difference; tests on the donors'
      mean differences: Wilcoxon signed-rank and a sign-flip permutation.

    With ``stratify_by`` (e.g. ``'cell_type'``) every comparison runs per stratum. The
    permutation p-values are adjusted over the rows of the table (Benjamini–Hochberg).

    Parameters
    ----------
    {adata}
    method
        ``'donor'`` or ``'paired'`` (see above).
    groupby, reference, groups
        ``obs`` column with the groups, its reference category, and the groups to compare (default
        every other category).
    stratify_by
        Optional ``obs`` column; one comparison per stratum and group.
    {time_key}
    predicted_key
        ``'donor'``: ``obs`` column with predicted ages (``f'{key_added}_age'`` of
        :func:`maxtoki.tl.predict_time`).
    donor_key
        ``obs`` column with the donor of each cell.
    age_match
        Months: ``'donor'``, slack around the group's donor age range when choosing reference
        donors (``None``: every donor); ``'paired'``, the largest age difference of a pair.
    adjust
        ``'donor'``: ``'linear'`` removes the reference's age trend of the acceleration.
    n_boot, ci
        Permutations of the test, and the level of the t interval on donor means (Welch's;
        ``'paired'``: two-way jackknife over both sides' donors; NaN under 2 group donors).
    model, vocab, context, context_groupby, n_contexts, n_context_cells
        ``'paired'``: the temporal model (its vocabulary by default), the AnnData of the context
        cells (default the reference cells of ``adata``), the trajectory groups and the contexts
        per pair, as in :func:`maxtoki.tl.predict_time`.
    calibrate
        ``'paired'``: read timelapses as ``predict_time(calibrate=True)`` does.
    {max_genes}
    {batch_size}
    {device}
    {tokens_key}
    {random_state}
    {key_added}
    {mod}
    {copy}

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``obs[f'{key_added}_age_acceleration']``
        Predicted minus chronological age per cell (months; ``nan`` where not computed).
    ``uns[f'{key_added}_age_acceleration']``
        ``table`` (:func:`maxtoki.get.age_acceleration` returns it): ``stratum``, ``group``,
        ``reference``, ``method``, cell and donor counts of both sides, the mean donor
        accelerations of both sides, the ``effect_months``/``effect_years`` with its interval
        (``ci_low_*``, ``ci_high_*``), ``pval_mannwhitney`` (donor), ``pval_wilcoxon``
        (paired), ``pval_permutation`` and ``pval_adj``; and ``params``.
    """
    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info(f"computing age acceleration ({method})")
    check_key("key_added", key_added)
    if method not in ("donor", "paired"):
        raise ValueError(f"method must be 'donor' or 'paired', got {method!r}")
    predicted = predicted_key if method == "donor" else None
    fixes = _check_columns(adata, groupby, time_key, predicted, donor_key, stratify_by)
    n_boot = _check_numbers(adjust, n_boot, ci, age_match, calibrate)
    labels = adata.obs[groupby].astype(str).to_numpy()
    groups = _groups(adata.obs[groupby], labels, reference, groups, groupby)
    age = numeric_obs(adata, time_key, "data", fixes[time_key])
    strata = (
        np.full(adata.n_obs, "all", dtype=object)
        if stratify_by is None
        else adata.obs[stratify_by].astype(str).to_numpy()
    )
    order = ["all"] if stratify_by is None else _categories(adata.obs[stratify_by])
    gen = as_generator(random_state)
    args = {"labels": labels, "reference": reference, "groups": groups, "strata": strata,
            "order": order, "age": age, "n_boot": n_boot, "ci": ci, "gen": gen}  # fmt: skip
    if method == "donor":
        acc = numeric_obs(adata, predicted_key, "data", fixes[predicted_key]) - age
        rows = _donor_rows(acc, adata.obs[donor_key].astype(str).to_numpy(), age_match=age_match,
                           adjust=adjust, **args)  # fmt: skip
    else:
        acc, rows = paired_rows(
            adata, model=model, vocab=vocab, context=context, context_groupby=context_groupby,
            groupby=groupby, donor_key=donor_key, time_key=time_key,
            age_match=60.0 if age_match is None else age_match,
            n_contexts=n_contexts, n_context_cells=n_context_cells, max_genes=max_genes,
            batch_size=batch_size, device=device, tokens_key=tokens_key, mod=mod,
            calibrate=calibrate, **args,
        )  # fmt: skip
    if not rows:
        raise ValueError(
            f"no cell of the groups {groups} could be compared (no finite obs[{predicted_key!r}] "
            "or no age-matched reference cell); run `mt.tl.predict_time` on them first, or widen "
            "`age_match`"
        )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS[:-1]))
    table["pval_adj"] = bh_adjust(table["pval_permutation"])
    key = slot(key_added, "age_acceleration")
    adata.obs[key] = acc
    adata.uns[key] = {"table": table_to_uns(table), "params": _params(locals(), groups)}
    logg.info(f"    added obs[{key!r}] and uns[{key!r}] ({len(table)} comparisons)", time=start)
    return finish(data, mdata, mod, [key], copy)


def _donor_rows(acc, donors, *, labels, reference, groups, strata, order, age, n_boot, ci, gen,
                age_match, adjust) -> list[dict]:  # fmt: skip
    """The ``'donor'`` method: one row per stratum and group."""
    rows = []
    for stratum in order:
        in_s = (strata == stratum) & np.isfinite(acc)
        ref = in_s & (labels == reference)
        for group in groups:
            grp = in_s & (labels == group)
            if grp.any():
                rows.append(
                    _compare(
                        stratum, group, reference, grp, ref, acc, age, donors,
                        age_match=age_match, adjust=adjust, n_boot=n_boot, ci=ci, gen=gen,
                    )
                )  # fmt: skip
    return rows


def _check_columns(adata, groupby, time_key, predicted_key, donor_key, stratify_by) -> dict:
    fixes = {} if predicted_key is None else {
        predicted_key: "run `mt.tl.predict_time` first or pass `predicted_key=`"
    }
    fixes |= {
        time_key: "pass `time_key=` naming chronological age in months",
        groupby: "pass `groupby=` naming the obs column with the groups",
        donor_key: "pass `donor_key=` naming the donor column (donors are the unit of the test)",
    }
    if stratify_by is not None:
        fixes[stratify_by] = "pass an existing obs column as `stratify_by` or None"
    for col, fix in fixes.items():
        require_obs(adata, col, fix)
    return fixes


def _check_numbers(adjust, n_boot, ci, age_match, calibrate) -> int:
    require_bool(calibrate=calibrate)
    if adjust not in ("linear", "none"):
        raise ValueError(f"adjust must be 'linear' or 'none', got {adjust!r}")
    n_boot = positive_int("n_boot", n_boot)
    if not is_number(ci) or not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    if age_match is not None and (
        not is_number(age_match) or not np.isfinite(age_match) or age_match < 0
    ):
        raise ValueError(
            f"age_match must be a non-negative number of months or None, got {age_match!r}"
        )
    return n_boot


def _groups(column: pd.Series, labels, reference, groups, groupby) -> list[str]:
    present = pd.unique(labels)
    if reference not in present:
        raise ValueError(
            f"reference {reference!r} is not a value of obs[{groupby!r}] "
            f"(values: {sorted(present)}); pass `reference=` naming one of them"
        )
    if groups is None:
        groups = [g for g in _categories(column) if g != reference and g in present]
    else:
        groups = [str(g) for g in ([groups] if isinstance(groups, str) else groups)]
        missing = [g for g in groups if g not in present]
        if missing:
            raise ValueError(
                f"groups {missing} are not values of obs[{groupby!r}]; pass `groups=` from "
                f"{sorted(present)}"
            )
    if not groups:
        raise ValueError(f"obs[{groupby!r}] has no group besides the reference {reference!r}")
    return groups


def _params(args: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    return h5ad_safe(
        {
            "method": args["method"],
            "groupby": args["groupby"],
            "reference": args["reference"],
            "groups": list(groups),
            "stratify_by": args["stratify_by"],
            "time_key": args["time_key"],
            "predicted_key": args["predicted_key"] if args["method"] == "donor" else None,
            "donor_key": args["donor_key"],
            "age_match": args["age_match"],
            "adjust": args["adjust"],
            "n_boot": args["n_boot"],
            "ci": float(args["ci"]),
            "random_state": random_state_param(args["random_state"]),
            "unit": "months",
            "test": "donor: two-sided Mann-Whitney U and donor-label permutation on donor means; "
            "paired: Wilcoxon signed-rank and sign-flip permutation on the donors' mean paired "
            "differences, given the reference donors (the interval: t with a two-way jackknife "
            "over both sides' donors); Benjamini-Hochberg over the rows (pval_adj, from the "
            "permutation p-values)",
            "context_groupby": args["context_groupby"] if args["method"] == "paired" else None,
            "n_contexts": args["n_contexts"] if args["method"] == "paired" else None,
            "calibrate": bool(args["calibrate"]) if args["method"] == "paired" else None,
        }
    )


def _categories(col: pd.Series) -> list[str]:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [str(c) for c in col.cat.categories]
    return [str(c) for c in pd.unique(col.astype(str))]


def _donor_means(values: np.ndarray, donors: np.ndarray) -> np.ndarray:
    codes, uniq = pd.factorize(donors)
    sums = np.bincount(codes, weights=values, minlength=len(uniq))
    counts = np.bincount(codes, minlength=len(uniq))
    return sums / counts


def _compare(
    stratum, group, reference, grp, ref, acc, age, donors, *, age_match, adjust, n_boot, ci, gen
):
    grp_donor_age = _donor_means(age[grp], donors[grp])
    if age_match is not None and ref.any():
        lo, hi = grp_donor_age.min() - age_match, grp_donor_age.max() + age_match
        ref = ref & (age >= lo) & (age <= hi)
    row = {
        "stratum": stratum,
        "group": group,
        "reference": reference,
        "method": "donor",
        "n_cells": int(grp.sum()),
        "n_donors": len(grp_donor_age),
        "n_reference_cells": int(ref.sum()),
        "n_reference_donors": len(pd.unique(donors[ref])),
        "mean_acceleration_months": float(np.mean(_donor_means(acc[grp], donors[grp]))),
        "reference_mean_acceleration_months": np.nan,
    }
    nan_stats = dict.fromkeys(TABLE_COLUMNS[10:-1], np.nan)
    if not ref.any():
        logg.warning(
            f"age_acceleration: no age-matched {reference!r} cells for {group!r} in {stratum!r}; "
            "its effect is nan (widen `age_match` or pass None)"
        )
        return row | nan_stats
    row["reference_mean_acceleration_months"] = float(np.mean(_donor_means(acc[ref], donors[ref])))
    adj = acc.copy()
    if adjust == "linear" and len(np.unique(age[ref])) >= 3:
        slope, intercept = np.polyfit(age[ref], acc[ref], 1)
        adj = acc - (intercept + slope * age)
    g = _donor_means(adj[grp], donors[grp])
    r = _donor_means(adj[ref], donors[ref])
    effect = float(g.mean() - r.mean())
    lo, hi = t_interval(g, r, ci)  # Welch's, on donor means
    row.update(
        effect_months=effect,
        effect_years=effect / 12.0,
        ci_low_months=float(lo),
        ci_high_months=float(hi),
        ci_low_years=float(lo) / 12.0,
        ci_high_years=float(hi) / 12.0,
        pval_mannwhitney=_mannwhitney(g, r),
        pval_wilcoxon=np.nan,
        pval_permutation=_permutation(g, r, n_boot, gen),
    )
    return row


def _mannwhitney(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import mannwhitneyu

    if len(a) == 0 or len(b) == 0 or (len(a) + len(b) < 3):
        return np.nan
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _permutation(a: np.ndarray, b: np.ndarray, n_perm: int, gen: np.random.Generator) -> float:
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    keys = gen.random((n_perm, len(pooled)))
    perms = pooled[np.argsort(keys, axis=1)]
    diffs = np.abs(perms[:, : len(a)].mean(axis=1) - perms[:, len(a) :].mean(axis=1))
    return float((1 + np.sum(diffs >= observed - 1e-12)) / (n_perm + 1))
