from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from .._anndata import resolve_modality
from .._docs import inject_docs
from .._keys import read_params
from ..get import age_acceleration as get_table
from ._utils import (
    categories,
    facet_axes,
    finish,
    format_p,
    new_axes,
    palette,
    require_columns,
    unit_scale,
)

if TYPE_CHECKING:
    import os

    import pandas as pd
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@inject_docs
def age_acceleration(
    adata: AnnData,
    *,
    groupby: str = "condition",
    key: str = "maxtoki_age_acceleration",
    stratum: str | None = None,
    order: Sequence[str] | None = None,
    kind: Literal["violin", "box"] = "violin",
    donors: bool = True,
    unit: Literal["years", "months"] = "years",
    ncols: int = 3,
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | Figure | None:
    """Age acceleration per group (violins or boxes) annotated with the test against the reference.

    Draws the per-cell acceleration (predicted minus chronological age) of every group of
    ``obs[groupby]``, the donor means (the unit of replication of the test) as dots, and, above
    every compared group, the effect of :func:`maxtoki.tl.age_acceleration` with its confidence
    interval and both p-values (Mann–Whitney U and permutation, on donor means). The effect is
    the age-matched and, with ``adjust='linear'``, age-trend-adjusted difference of the donor
    means, so it need not equal the difference of the raw distributions drawn.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.age_acceleration`.
    groupby
        ``obs`` column with the groups; the test results are shown when it is the column the
        tool compared (``uns[key]['params']['groupby']``).
    key
        The slot of :func:`maxtoki.tl.age_acceleration`, ``f'{key_added}_age_acceleration'``
        (its ``obs`` column and ``uns`` entry).
    stratum
        With a stratified analysis (``stratify_by=`` there), the stratum to draw (e.g. one cell
        type); ``None`` draws one panel per stratum.
    order
        Groups to draw, in order; default the reference first, then the other categories.
    kind
        ``'violin'`` or ``'box'``.
    donors
        Overlay donor means as dots (needs the tool's ``donor_key`` column).
    unit
        Axis unit; accelerations are stored in months.
    ncols
        Panels per row when drawing several strata.
    {mod}
    ax
        Axes to draw into (one stratum only); a new figure otherwise.
    show
        Show the figure; ``None`` shows it on interactive backends only.
    {save}

    Returns
    -------
    The Axes (the Figure for several strata) when not shown.
    """
    adata, _ = resolve_modality(adata, mod)
    if kind not in ("violin", "box"):
        raise ValueError(f"kind must be 'violin' or 'box', got {kind!r}")
    scale = unit_scale(unit)
    fix = "run `mt.tl.age_acceleration` first (or pass the key it wrote as `key`)"
    require_columns(adata.obs, [key], "adata.obs", fix)
    table = get_table(adata, key=key, mod=mod)
    require_columns(adata.obs, [groupby], "adata.obs", "pass an existing obs column as `groupby`")
    params = read_params(adata, key)
    stratify_by = params.get("stratify_by")
    reference = params.get("reference")
    tested = params.get("groupby", groupby) == groupby
    strata = list(dict.fromkeys(table["stratum"].astype(str)))
    if stratify_by is None or stratify_by not in adata.obs:
        if stratum not in (None, "all"):
            raise ValueError(
                f"the age acceleration in uns[{key!r}] is not stratified; pass `stratum=None`"
            )
        selected = ["all"]
    elif stratum is None:
        selected = strata
    else:
        if str(stratum) not in strata:
            raise ValueError(f"stratum {stratum!r} is not in uns[{key!r}]['table'] ({strata})")
        selected = [str(stratum)]
    if len(selected) > 1 and ax is not None:
        raise ValueError(
            f"the analysis has {len(selected)} strata, drawn in a new figure; pass `stratum=` "
            "to draw one of them into `ax`"
        )

    obs = adata.obs
    labels = obs[groupby].astype(str).to_numpy()
    values = obs[key].to_numpy(dtype=float) / scale
    if order is None:
        order = categories(obs[groupby])
        if reference in order:
            order = [reference, *[g for g in order if g != reference]]
    else:
        order = [str(g) for g in order]
        missing = sorted(set(order) - set(labels))
        if missing:
            raise ValueError(
                f"order names groups {missing} that are not in obs[{groupby!r}]; pass values "
                f"of that column ({sorted(set(labels))[:8]})"
            )
    colors = palette([g for g in order if g != reference])
    if reference in order:
        colors[reference] = "#b0b0b0"
    donor_key = params.get("donor_key")
    donor_col = obs[donor_key].astype(str).to_numpy() if donors and donor_key in obs else None

    if len(selected) == 1:
        ax = new_axes(ax, figsize=(1.1 * len(order) + 2.0, 4.2))
        axs, fig = [ax], None
    else:
        fig, axs = facet_axes(len(selected), ncols=ncols, panel=(1.0 * len(order) + 1.8, 3.8))
    for s, a in zip(selected, axs, strict=True):
        keep = np.isfinite(values)
        if s != "all":
            keep &= obs[stratify_by].astype(str).to_numpy() == s
        rows = table[table["stratum"].astype(str) == s] if tested else None
        _panel(
            a,
            values,
            labels,
            keep,
            order,
            colors,
            kind,
            donor_col,
            rows,
            scale,
            unit,
            reference,
            groupby,
        )
        title = "age acceleration" if s == "all" else f"{s}"
        if tested and reference is not None:
            title += f"\nvs {reference}: effect [95% CI], donor-level tests"
        a.set_title(title, fontsize="medium")
    if fig is not None:
        fig.suptitle(f"age acceleration by {stratify_by}")
        return finish(fig, show, save, "age_acceleration")
    return finish(axs[0], show, save, "age_acceleration")


def _panel(
    ax,
    values,
    labels,
    keep,
    order,
    colors,
    kind,
    donor_col,
    rows: pd.DataFrame | None,
    scale,
    unit,
    reference,
    groupby,
):
    import pandas as pd
    import seaborn as sns
    from matplotlib.lines import Line2D

    present = [g for g in order if (keep & (labels == g)).any()]
    if not present:
        raise ValueError(
            f"no cell of the groups {list(order)} has a finite age acceleration; run "
            "`mt.tl.predict_time` and `mt.tl.age_acceleration` on these cells, or pass `order=`"
        )
    x, y = labels[keep], values[keep]
    common = {"x": x, "y": y, "order": present, "hue": x, "hue_order": present, "ax": ax}
    pal = {g: colors[g] for g in present}
    if kind == "violin":
        sns.violinplot(
            **common,
            palette=pal,
            legend=False,
            inner="quart",
            cut=0,
            density_norm="width",
            linewidth=0.8,
        )
    else:
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
            warnings.simplefilter("ignore", DeprecationWarning)
            sns.boxplot(**common, palette=pal, legend=False, showfliers=False, width=0.6)
    handles = []
    if donor_col is not None:
        means = (
            pd.DataFrame({"g": x, "d": donor_col[keep], "v": y})
            .groupby(["g", "d"], observed=True)["v"]
            .mean()
            .reset_index()
        )
        sns.stripplot(
            x=means["g"].to_numpy(),
            y=means["v"].to_numpy(),
            order=present,
            color="black",
            size=3.5,
            jitter=0.12,
            ax=ax,
            legend=False,
            zorder=3,
        )
        handles.append(
            Line2D(
                [], [], marker="o", linestyle="", color="black", markersize=4, label="donor mean"
            )
        )
    ax.axhline(0.0, color="0.4", linestyle="--", linewidth=0.8, zorder=0)
    lo, hi = float(np.min(y)), float(np.max(y))
    span = hi - lo or 1.0
    if rows is not None and len(rows):
        ax.set_ylim(lo - 0.05 * span, hi + 0.45 * span)
        by_group = {str(r["group"]): r for _, r in rows.iterrows()}
        for i, g in enumerate(present):
            r = by_group.get(g)
            if r is None:
                continue
            eff = r["effect_months"] / scale
            if np.isfinite(eff):
                ci = f"[{r['ci_low_months'] / scale:+.1f}, {r['ci_high_months'] / scale:+.1f}]"
                text = f"{eff:+.1f} {unit[0]} {ci}"
            else:
                text = "effect n/a"
            text += (
                f"\nMW {format_p(r['pval_mannwhitney'])}\nperm {format_p(r['pval_permutation'])}"
                f"\n{int(r['n_donors'])} vs {int(r['n_reference_donors'])} donors"
            )
            ax.text(
                i,
                hi + 0.42 * span,
                text,
                ha="center",
                va="top",
                fontsize="x-small",
                color="black",
            )
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize="x-small", frameon=False)
    ax.set_xlabel(groupby)
    ax.set_ylabel(f"predicted − chronological age ({unit})")
    ax.tick_params(axis="x", labelrotation=30)
