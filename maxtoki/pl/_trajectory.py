from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import logging as logg
from .._anndata import resolve_modality
from .._docs import inject_docs
from ._utils import ORIGIN_COLORS, finish, new_axes, require_columns, unit_scale

if TYPE_CHECKING:
    import os

    import pandas as pd
    from anndata import AnnData
    from matplotlib.axes import Axes

_CONTEXT_COLOR = "#30638e"
_QUERY_COLOR = "#edae49"


@inject_docs
def trajectory(
    adata: AnnData,
    prompts: pd.DataFrame,
    *,
    row: int | str | Sequence[int | str] = 0,
    time_key: str = "age_months",
    generated: AnnData | None = None,
    predicted_key: str | None = "maxtoki_age",
    unit: Literal["years", "months"] = "years",
    names: bool = True,
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Prompts on a time axis: context cells joined by Δt arrows, the query, generated cells.

    One horizontal lane per prompt of a :func:`maxtoki.pp.trajectories` table: the context
    cells at their ages (circles) joined by arrows labelled with the timelapse in months, the
    query cell (star) with the timelapse from the last context cell, the query's predicted age
    (hollow star, when ``obs[predicted_key]`` exists, e.g. after
    :func:`maxtoki.tl.predict_time`), and cells generated from the same context (diamonds, just
    below the lane), at the age the model was asked for.

    Parameters
    ----------
    adata
        AnnData (or MuData) the prompts were built from (their cell names are its obs names).
    prompts
        A table of :func:`maxtoki.pp.trajectories` (``ctx0``…, ``query`` and ``group``
        columns).
    row
        The prompt(s) to draw: positions (``int``) or index labels (``str``) of ``prompts``.
    {time_key}
    generated
        Output of :func:`maxtoki.tl.generate`. Generated cells whose ``obs['context_cells']``
        is the prompt's context are drawn; when none is, those of the prompt's group.
    predicted_key
        ``obs`` column with predicted ages in months; ``None`` or a missing column skips it.
    unit
        Axis unit; ages are stored in months.
    names
        Write the cell names next to the cells.
    {mod}
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes when not shown.
    """
    adata, _ = resolve_modality(adata, mod)
    scale = unit_scale(unit)
    _check_inputs(adata, prompts, time_key, generated)
    picked = _picked_prompts(prompts, row)

    times = adata.obs[time_key]
    show_pred = predicted_key is not None and predicted_key in adata.obs
    predicted = adata.obs[predicted_key] if show_pred else None
    ax = new_axes(ax, figsize=(7.5, 1.2 + 1.1 * len(picked)))
    n_gen_total = 0
    yticks, ylabels = [], []
    for lane, (label, p) in enumerate(picked):
        y = -float(lane)
        ctx = _draw_prompt(ax, adata, times, predicted, label, p, y, scale, names)
        if generated is not None:
            n_gen_total += _generated(ax, generated, ctx, p, y, scale)
        yticks.append(y)
        task = f"\n{p['task']}" if "task" in p else ""
        group = f"\n{p['group']}" if "group" in p else ""
        ylabels.append(f"prompt {label}{group}{task}")

    ax.set_yticks(yticks, ylabels, fontsize="small")
    ax.set_ylim(-len(picked) + 0.4, 0.6)
    ax.set_xlabel(f"age ({unit})")
    ax.grid(axis="x", alpha=0.3)
    if generated is not None and n_gen_total == 0:
        logg.warning("trajectory: no generated cell shares a drawn prompt's context or group")
    _legend(ax, show_pred, None if generated is None else n_gen_total)
    ax.set_title("temporal prompts: Δt in months")
    return finish(ax, show, save, "trajectory")


def _check_inputs(
    adata: AnnData, prompts: pd.DataFrame, time_key: str, generated: AnnData | None
) -> None:
    """Raise when ``adata``, ``prompts`` or ``generated`` lack what :func:`trajectory` draws."""
    require_columns(adata.obs, [time_key], "adata.obs", "pass `time_key=` naming ages in months")
    if not adata.obs_names.is_unique:
        raise ValueError(
            "obs_names are not unique, so the prompts' cell names are ambiguous; run "
            "`adata.obs_names_make_unique()` and rebuild the prompts"
        )
    if not hasattr(prompts, "columns"):
        raise TypeError(
            f"prompts must be the DataFrame of `mt.pp.trajectories`, got {type(prompts).__name__}"
        )
    require_columns(
        prompts.columns, ["ctx0", "query"], "prompts", "pass a table from `mt.pp.trajectories`"
    )
    if generated is not None:
        require_columns(
            generated.obs,
            ["context_cells", "expected_age_months"],
            "generated.obs",
            "pass the AnnData returned by `mt.tl.generate`",
        )


def _picked_prompts(
    prompts: pd.DataFrame, row: int | str | Sequence[int | str]
) -> list[tuple[object, pd.Series]]:
    """``(index label, prompt)`` of each prompt ``row`` names (positions or index labels)."""
    rows = [row] if isinstance(row, (int, np.integer, str)) else list(row)
    if not rows:
        raise ValueError("`row` names no prompt")
    picked = []
    for r in rows:
        if isinstance(r, (int, np.integer)):
            if not -len(prompts) <= r < len(prompts):
                raise ValueError(f"row {r} is out of range for a table of {len(prompts)} prompts")
            picked.append((prompts.index[r], prompts.iloc[int(r)]))
        elif r in prompts.index:
            picked.append((r, prompts.loc[r]))
        else:
            raise ValueError(f"row {r!r} is neither a position nor an index label of `prompts`")
    return picked


def _draw_prompt(
    ax: Axes,
    adata: AnnData,
    times: pd.Series,
    predicted: pd.Series | None,
    label: object,
    p: pd.Series,
    y: float,
    scale: float,
    names: bool,
) -> list[str]:
    """One lane: context cells joined by Δt arrows, the query (true and predicted age), names.

    Returns the names of the prompt's context cells.
    """
    k = int(p["n_context"]) if "n_context" in p else _n_ctx(p)
    ctx = [str(p[f"ctx{j}"]) for j in range(k)]
    query = str(p["query"])
    missing = [c for c in [*ctx, query] if c not in adata.obs_names]
    if missing:
        raise ValueError(
            f"prompt {label!r} names cells {missing[:3]} that are not in adata.obs_names; "
            "pass the AnnData the prompts were built from"
        )
    t_ctx = np.array([float(times.loc[c]) for c in ctx])
    t_q = float(times.loc[query])
    ax.scatter(t_ctx / scale, np.full(k, y), s=70, color=_CONTEXT_COLOR, zorder=3)
    for j in range(k - 1):
        _arrow(ax, t_ctx[j] / scale, t_ctx[j + 1] / scale, y, t_ctx[j + 1] - t_ctx[j])
    _arrow(ax, t_ctx[-1] / scale, t_q / scale, y, t_q - t_ctx[-1], dashed=True)
    ax.scatter(
        [t_q / scale],
        [y],
        s=180,
        marker="*",
        color=_QUERY_COLOR,
        zorder=4,
        edgecolors="black",
        linewidths=0.5,
    )
    if predicted is not None:
        _predicted(ax, float(predicted.loc[query]), t_q, y, scale)
    if names:
        for c, t in zip([*ctx, query], [*t_ctx, t_q], strict=True):
            ax.annotate(
                c,
                (t / scale, y),
                xytext=(0, -12),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize="x-small",
                color="0.3",
            )
    return ctx


def _predicted(ax: Axes, t_p: float, t_q: float, y: float, scale: float) -> None:
    """The query's predicted age (hollow star) joined to its true age; nothing when not finite."""
    if not np.isfinite(t_p):
        return
    ax.scatter(
        [t_p / scale],
        [y],
        s=180,
        marker="*",
        facecolors="none",
        edgecolors=_QUERY_COLOR,
        linewidths=1.5,
        zorder=4,
    )
    ax.plot(
        [t_q / scale, t_p / scale],
        [y, y],
        color=_QUERY_COLOR,
        linewidth=1,
        linestyle=":",
        zorder=2,
    )


def _legend(ax: Axes, show_pred: bool, n_generated: int | None) -> None:
    """Legend of the markers drawn (generated cells with their count, when any were passed)."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=_CONTEXT_COLOR, label="context cell"),
        Line2D(
            [],
            [],
            marker="*",
            linestyle="",
            color=_QUERY_COLOR,
            markersize=12,
            markeredgecolor="black",
            markeredgewidth=0.5,
            label="query (true age)",
        ),
    ]
    if show_pred:
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                linestyle="",
                markerfacecolor="none",
                markersize=12,
                markeredgecolor=_QUERY_COLOR,
                label="query (predicted age)",
            )
        )
    if n_generated is not None:
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                linestyle="",
                color=ORIGIN_COLORS["generated"],
                label=f"generated ({n_generated})",
            )
        )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize="small",
    )


def _n_ctx(p) -> int:
    k = 0
    while f"ctx{k}" in p and isinstance(p[f"ctx{k}"], str):
        k += 1
    return k


def _arrow(ax, x0: float, x1: float, y: float, months: float, *, dashed: bool = False) -> None:
    """An arrow from ``x0`` to ``x1`` labelled with ``months`` (query arrows: label below)."""
    ax.annotate(
        "",
        xy=(x1, y),
        xytext=(x0, y),
        arrowprops={
            "arrowstyle": "-|>",
            "color": "0.25",
            "linewidth": 1.0,
            "linestyle": "--" if dashed else "-",
            "shrinkA": 6,
            "shrinkB": 8,
        },
    )
    ax.annotate(
        f"Δt {months:+.0f}",
        ((x0 + x1) / 2, y),
        xytext=(0, -16 if dashed else 6),
        textcoords="offset points",
        ha="center",
        va="top" if dashed else "bottom",
        color=_QUERY_COLOR if dashed else "black",
        fontweight="bold" if dashed else "normal",
        fontsize="x-small",
    )


def _generated(ax, generated, ctx: list[str], p, y: float, scale: float) -> int:
    obs = generated.obs
    sel = obs["context_cells"].astype(str).to_numpy() == ";".join(ctx)
    how = "same context"
    if not sel.any() and "group" in obs and "group" in p:
        sel = obs["group"].astype(str).to_numpy() == str(p["group"])
        how = "same group"
    if not sel.any():
        return 0
    t = obs["expected_age_months"].to_numpy(dtype=float)[sel] / scale
    jitter = np.random.default_rng(0).uniform(-0.05, 0.05, len(t))
    ax.scatter(
        t,
        y - 0.38 + jitter,
        s=28,
        marker="D",
        color=ORIGIN_COLORS["generated"],
        edgecolors="white",
        linewidths=0.5,
        zorder=3,
    )
    ax.annotate(
        f"{int(sel.sum())} generated ({how})",
        (float(np.max(t)), y - 0.38),
        xytext=(8, 0),
        textcoords="offset points",
        ha="left",
        va="center",
        fontsize="x-small",
        color=ORIGIN_COLORS["generated"],
    )
    return int(sel.sum())
