from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .._docs import inject_docs
from ..get import evaluate as get_table
from ._utils import finish, new_axes, palette, require_columns, unit_scale

if TYPE_CHECKING:
    import os

    import pandas as pd
    from anndata import AnnData
    from matplotlib.axes import Axes

_LABELS = {
    "median_abs_error_months": "median |error|",
    "donor_median_abs_error_months": "donor median |error|",
    "bias_months": "mean error (bias)",
    "pearson_r": "Pearson r",
    "donor_pearson_r": "donor Pearson r",
    "singlet_fraction": "generated cells called real",
    "classifier_accuracy": "classifier accuracy",
    "classifier_auc": "two-sample AUC vs real cells",
    "cell_type_match": "cell type as the context's",
    "spearman_r": "Spearman r",
}
_METHOD_COLORS = {
    "maxtoki": "#d1495b",
    "naive": "#9aa5b1",
    "sgd": "#30638e",
    "sgd_offset": "#00a6a6",
}


@inject_docs
def evaluation(
    table: pd.DataFrame | AnnData,
    *,
    metric: str = "median_abs_error_months",
    unit: Literal["years", "months"] = "years",
    key: str = "maxtoki_evaluate",
    annotate: bool = True,
    error_bars: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Bar chart of MaxToki against its baselines (and ablations), per evaluation split.

    Parameters
    ----------
    table
        The DataFrame of :func:`maxtoki.tl.evaluate`, or an AnnData it stored its table in.
        MaxToki is drawn first, then the baselines, then the ablations (``maxtoki_*``, hatched).
    metric
        Column to draw, e.g. ``'median_abs_error_months'`` (default), ``'pearson_r'``,
        ``'bias_months'``, ``'donor_median_abs_error_months'``, ``'singlet_fraction'``,
        ``'classifier_auc'`` (the generated-cell two-sample tests, dashed line at 0.5).
    unit
        Unit of the ``*_months`` metrics.
    key
        With an AnnData: the slot of :func:`maxtoki.tl.evaluate`, ``f'{key_added}_evaluate'``
        (``uns`` entry).
    annotate
        Write each bar's value on it.
    error_bars
        Draw the table's bootstrap 95% intervals where it has them (``median_abs_error_months``
        and ``donor_median_abs_error_months``: their ``*_ci_low_months``, ``*_ci_high_months``).
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes when not shown. Rows with no value for ``metric`` (e.g. the doublet check for
    an error metric) are left out.
    """
    import pandas as pd

    months_per_unit = unit_scale(unit)
    if not isinstance(table, pd.DataFrame):
        table = get_table(table, key=key)
    require_columns(
        table.columns, ["split", "method"], "the table", "pass the DataFrame of `mt.tl.evaluate`"
    )
    require_columns(
        table.columns,
        [metric],
        "the table",
        f"pass one of its columns as `metric` ({list(table.columns)})",
    )
    vals = pd.to_numeric(table[metric], errors="coerce")
    scale = months_per_unit if metric.endswith("_months") else 1.0
    bounds = [metric.replace("_months", f"_ci_{b}_months") for b in ("low", "high")]
    has_ci = error_bars and metric.endswith("_months") and set(bounds) <= set(table.columns)
    lo, hi = (
        (pd.to_numeric(table[b], errors="coerce") / scale for b in bounds)
        if has_ci
        else (vals * np.nan, vals * np.nan)
    )
    df = table.assign(_v=vals / scale, _lo=lo, _hi=hi)[np.isfinite(vals)]
    if df.empty:
        raise ValueError(
            f"no row of the table has a value for {metric!r}; pass another `metric` (e.g. "
            "'median_abs_error_months')"
        )
    splits = list(dict.fromkeys(df["split"].astype(str)))
    methods = list(dict.fromkeys(df["method"].astype(str)))
    ablations = [m for m in methods if m.startswith("maxtoki_")]
    methods = [m for m in methods if m not in ablations] + ablations  # model, baselines, ablations
    others = palette([m for m in methods if m not in _METHOD_COLORS and m not in ablations])
    colors = {m: _METHOD_COLORS.get(m, others.get(m)) for m in methods}
    hatches = dict.fromkeys(methods, "")
    for m, h in zip(ablations, ["//", "..", "xx", "\\\\", "oo", "++"] * 4, strict=False):
        colors[m], hatches[m] = "#eeb4bb", h

    ax = new_axes(ax, figsize=(1.6 + 1.1 * len(splits) * max(1, len(methods)) / 2, 3.8))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs, ys, lows, highs = [], [], [], []
        for i, s in enumerate(splits):
            row = df[(df["split"].astype(str) == s) & (df["method"].astype(str) == m)]
            if len(row):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(row["_v"].iloc[0]))
                lows.append(float(row["_lo"].iloc[0]))
                highs.append(float(row["_hi"].iloc[0]))
        if not xs:
            continue
        bars = ax.bar(
            xs,
            ys,
            width=width * 0.95,
            color=colors[m],
            hatch=hatches[m],
            edgecolor="white",
            linewidth=0.5,
            label=m,
        )
        ok = np.isfinite(lows) & np.isfinite(highs)
        if ok.any():
            y, low, high = np.asarray(ys)[ok], np.asarray(lows)[ok], np.asarray(highs)[ok]
            ax.errorbar(
                np.asarray(xs)[ok],
                y,
                yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)],
                fmt="none",
                ecolor="0.2",
                elinewidth=0.8,
                capsize=2,
            )
        if annotate:
            fmt = "{:.2f}" if scale == 1.0 and not metric.endswith("_months") else "{:.1f}"
            ax.bar_label(bars, labels=[fmt.format(v) for v in ys], fontsize="x-small", padding=1)
    ax.set_xticks(range(len(splits)), [s.replace("_", " ") for s in splits])
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    if metric == "classifier_auc":  # indistinguishable from real cells
        ax.axhline(0.5, color="0.3", linewidth=0.8, linestyle="--")
    label = _LABELS.get(metric, metric.replace("_", " "))
    suffix = f" ({unit})" if metric.endswith("_months") else ""
    ax.set_ylabel(label + suffix)
    ax.set_title(f"{label} by split and method", fontsize="medium")
    ax.legend(
        title="method",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize="small",
    )
    ax.margins(y=0.12)
    return finish(ax, show, save, "evaluation")
