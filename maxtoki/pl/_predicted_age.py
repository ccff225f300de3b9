from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .._anndata import resolve_modality
from .._docs import inject_docs
from .._stats import pearson_r
from ._utils import (
    categories,
    facet_axes,
    finish,
    is_categorical,
    new_axes,
    palette,
    require_columns,
    unit_scale,
)

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@inject_docs
def predicted_age(
    adata: AnnData,
    *,
    time_key: str = "age_months",
    predicted_key: str = "maxtoki_age",
    color: str | None = None,
    groupby: str | None = None,
    unit: Literal["years", "months"] = "years",
    ncols: int = 4,
    size: float = 10.0,
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | Figure | None:
    """Scatter of predicted against chronological age, with the identity line and error summary.

    Parameters
    ----------
    adata
        AnnData (or MuData) with ``obs[time_key]`` and ``obs[predicted_key]``, e.g. after
        :func:`maxtoki.tl.predict_time`.
    time_key, predicted_key
        Columns of chronological and predicted age, in months.
    color
        An ``obs`` column to colour the cells by. A categorical column gets one legend entry
        per category with its number of cells and median absolute error; a numeric one a
        colour bar.
    groupby
        An ``obs`` column: one panel per category (e.g. ``'cell_type'``), each titled with its
        median absolute error and Pearson r. Not with ``ax``.
    unit
        Axis unit; ages are stored in months.
    ncols
        Panels per row with ``groupby``.
    size
        Marker size.
    {mod}
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes (the Figure with ``groupby``) when not shown. Titles give the median absolute
    error and Pearson's r of the cells drawn.
    """
    adata, _ = resolve_modality(adata, mod)
    fix = "run `mt.tl.predict_time` first or pass the right `time_key`/`predicted_key`"
    require_columns(adata.obs, [time_key, predicted_key], "adata.obs", fix)
    for name, col in (("color", color), ("groupby", groupby)):
        if col is not None:
            require_columns(
                adata.obs, [col], "adata.obs", f"pass an existing obs column as `{name}`"
            )
    if groupby is not None and ax is not None:
        raise ValueError("`groupby` draws one panel per group in a new figure; do not pass `ax`")
    scale = unit_scale(unit)
    true = adata.obs[time_key].to_numpy(dtype=float) / scale
    pred = adata.obs[predicted_key].to_numpy(dtype=float) / scale
    ok = np.isfinite(true) & np.isfinite(pred)
    if not ok.any():
        raise ValueError(
            f"no cell has both a finite {time_key!r} and {predicted_key!r}; "
            "run `mt.tl.predict_time` first"
        )
    lo, hi = min(true[ok].min(), pred[ok].min()), max(true[ok].max(), pred[ok].max())
    pad = 0.03 * (hi - lo or 1.0)
    limits = (lo - pad, hi + pad)
    hue = adata.obs[color] if color is not None else None
    colors = None
    if hue is not None and is_categorical(hue):
        colors = palette(categories(hue))

    if groupby is None:
        ax = new_axes(ax)
        _panel(ax, true, pred, ok, hue, colors, color, unit, size, limits, legend=True)
        return finish(ax, show, save, "predicted_age")

    labels = adata.obs[groupby].astype(str).to_numpy()
    groups = [g for g in categories(adata.obs[groupby]) if (ok & (labels == g)).any()]
    fig, axs = facet_axes(len(groups), ncols=ncols)
    for i, (g, a) in enumerate(zip(groups, axs, strict=True)):
        keep = ok & (labels == g)
        _panel(
            a, true, pred, keep, hue, colors, color, unit, size, limits, legend=False, short=True
        )
        a.set_title(f"{g}\n{a.get_title()}", fontsize="medium")
        if i % max(1, min(ncols, len(groups))):
            a.set_ylabel("")
    if colors is not None:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker="o", linestyle="", color=c, label=label)
            for label, c in colors.items()
        ]
        fig.legend(handles=handles, title=color, loc="outside right upper", frameon=False)
    n_err = np.median(np.abs(pred[ok] - true[ok]))
    fig.suptitle(f"{predicted_key} by {groupby} (all cells: median |error| {n_err:.1f} {unit})")
    return finish(fig, show, save, "predicted_age")


def _panel(ax, true, pred, keep, hue, colors, color, unit, size, limits, *, legend, short=False):
    import matplotlib.pyplot as plt

    if hue is None:
        ax.scatter(true[keep], pred[keep], s=size, alpha=0.6, linewidths=0, color="#4c72b0")
    elif colors is not None:
        values = hue.astype(str).to_numpy()
        for label, c in colors.items():
            sel = keep & (values == label)
            if not sel.any():
                continue
            err = np.median(np.abs(pred[sel] - true[sel]))
            ax.scatter(
                true[sel],
                pred[sel],
                s=size,
                alpha=0.6,
                linewidths=0,
                color=c,
                label=f"{label} (n={int(sel.sum())}, |err| {err:.1f})",
            )
    else:
        values = hue.to_numpy(dtype=float)
        sc = ax.scatter(
            true[keep], pred[keep], c=values[keep], s=size, alpha=0.7, linewidths=0, cmap="viridis"
        )
        plt.colorbar(sc, ax=ax, label=color, shrink=0.8)
    ax.plot(limits, limits, color="0.3", linestyle="--", linewidth=1, label="identity")
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    mae = np.median(np.abs(pred[keep] - true[keep]))
    r = pearson_r(true[keep], pred[keep])
    ax.set_xlabel(f"chronological age ({unit})")
    ax.set_ylabel(f"predicted age ({unit})")
    if short:
        ax.set_title(f"|error| {mae:.1f} {unit[0]}, r {r:.2f}, n={int(keep.sum())}")
    else:
        ax.set_title(f"median |error| {mae:.1f} {unit}, Pearson r {r:.2f}, n={int(keep.sum())}")
    if legend and colors is not None:
        ax.legend(
            title=f"{color} (median |error|, {unit})",
            fontsize="x-small",
            title_fontsize="small",
            markerscale=1.5,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
        )
