from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .._anndata import positive_int
from .._docs import inject_docs
from ._utils import finish, unit_scale

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_LOSSES = ("loss", "ce", "time_loss")
_ERRORS = ("mae_months", "median_ae_months")


@inject_docs
def training_curves(
    history: pd.DataFrame | str | os.PathLike,
    *,
    x: Literal["step", "elapsed_s"] = "step",
    losses: Sequence[str] = _LOSSES,
    smooth: int | None = None,
    unit: Literal["years", "months"] = "months",
    logy: bool = False,
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Figure | None:
    """Training and validation loss, and validation age error, against the training step.

    Parameters
    ----------
    history
        The history of :func:`maxtoki.tl.train` (or :class:`maxtoki.train.Trainer`), or the path
        of a ``metrics.jsonl`` (``out_dir`` of a run) or of a CSV of it.
    x
        ``'step'`` or ``'elapsed_s'`` (wall-clock seconds).
    losses
        Loss columns drawn in the left panel, each for the ``train`` and ``eval`` rows (solid and
        dashed); missing ones, and those that are only ``nan`` or 0 (a task not trained, e.g.
        ``ce`` without NextCell prompts), are skipped.
    smooth
        Rolling-mean window over the training rows (default: about 1/20 of them, at least 1).
    unit
        Unit of the age errors (stored in months).
    logy
        Log-scale loss axis.
    ax
        Two Axes to draw into (loss, age error); a new figure otherwise.
    show
        Show the figure; ``None`` shows it on interactive backends only.
    {save}

    Returns
    -------
    The Figure when not shown. Left: losses; right: the validation mean and median absolute
    error of the predicted timelapse (TimeBetweenCells prompts).
    """
    import matplotlib.pyplot as plt

    if x not in ("step", "elapsed_s"):
        raise ValueError(f"x must be 'step' or 'elapsed_s', got {x!r}")
    smooth = positive_int("smooth", smooth, optional=True)
    scale = unit_scale(unit)
    df = _read_history(history)
    if df.empty:
        raise ValueError("the history has no rows; train for at least one logged step")
    if "kind" not in df or x not in df:
        raise ValueError(
            f"the history needs 'kind' and {x!r} columns (rows of `mt.tl.train` or "
            f"metrics.jsonl); got {list(df.columns)}"
        )
    train = df[df["kind"] == "train"].sort_values(x)
    evals = df[df["kind"] == "eval"].sort_values(x)
    drawn = [c for c in losses if c in df and np.isfinite(df[c].to_numpy(float)).any()]
    if not drawn:
        raise ValueError(f"the history has none of the loss columns {list(losses)}")
    if ax is None:
        fig, (a_loss, a_err) = plt.subplots(1, 2, figsize=(9.5, 3.8), layout="constrained")
    else:
        if len(ax) != 2:
            raise ValueError("pass two Axes as `ax` (loss, age error)")
        a_loss, a_err = ax
        fig = a_loss.figure
    if smooth is None:
        smooth = max(1, len(train) // 20)
    colors = dict(zip(_LOSSES, ("#30638e", "#edae49", "#d1495b"), strict=True))
    for c in drawn:
        col = colors.get(c, None)
        if _informative(train, c):
            y = train[c].astype(float).rolling(smooth, min_periods=1).mean()
            a_loss.plot(train[x], y, color=col, linewidth=1.2, label=f"train {c}")
        if _informative(evals, c):
            a_loss.plot(
                evals[x],
                evals[c],
                color=col,
                linestyle="--",
                marker="o",
                markersize=3,
                linewidth=1.2,
                label=f"eval {c}",
            )
    a_loss.set_xlabel(x.replace("_", " "))
    a_loss.set_ylabel("loss")
    if logy:
        a_loss.set_yscale("log")
    a_loss.legend(fontsize="x-small", frameon=False)
    a_loss.set_title(
        "loss" + (f" (train: rolling mean of {smooth})" if smooth > 1 else ""), fontsize="medium"
    )

    errs = [c for c in _ERRORS if c in evals and np.isfinite(evals[c].to_numpy(float)).any()]
    for c, style in zip(errs, ("-", "--"), strict=False):
        label = "mean |error|" if c == "mae_months" else "median |error|"
        a_err.plot(
            evals[x],
            evals[c].astype(float) / scale,
            marker="o",
            markersize=3,
            linestyle=style,
            color="#30638e",
            label=label,
        )
    if errs:
        last = evals[errs[-1]].astype(float).dropna()
        a_err.set_title(
            f"validation timelapse error (last: {last.iloc[-1] / scale:.1f} {unit})",
            fontsize="medium",
        )
        a_err.legend(fontsize="x-small", frameon=False)
    else:
        a_err.text(
            0.5,
            0.5,
            "no validation timelapse error\n(no eval rows with mae_months)",
            ha="center",
            va="center",
            transform=a_err.transAxes,
        )
        a_err.set_title("validation timelapse error", fontsize="medium")
    a_err.set_xlabel(x.replace("_", " "))
    a_err.set_ylabel(f"absolute error ({unit})")
    return finish(fig, show, save, "training_curves")


def _informative(rows: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` has a finite value other than 0 (a task left out logs 0 or nan)."""
    if not len(rows) or column not in rows:
        return False
    v = rows[column].to_numpy(float)
    v = v[np.isfinite(v)]
    return bool(len(v)) and bool(np.any(v != 0))


def _read_history(history) -> pd.DataFrame:
    import pandas as pd

    if isinstance(history, pd.DataFrame):
        return history
    if not isinstance(history, (str, os.PathLike)):
        raise TypeError(
            "history must be the DataFrame of `mt.tl.train` or a path to metrics.jsonl / a CSV, "
            f"got {type(history).__name__}"
        )
    path = Path(history)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass a run's metrics.jsonl (in its out_dir)")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    df = pd.read_json(path, lines=True)
    if df.empty:
        raise ValueError(f"{path} holds no metrics rows yet")
    return df
