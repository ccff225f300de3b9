"""Shared plumbing of the plotting functions (axes creation, showing, formatting)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._anndata import positive_int

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Colours of real and generated cells, shared by the functions that show both.
ORIGIN_COLORS = {"real": "#9aa5b1", "generated": "#d1495b"}


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.0)) -> Axes:
    """Return ``ax``, or the axes of a new figure of ``figsize``."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def unit_scale(unit: str) -> float:
    """Months per axis unit: 12 for ``'years'``, 1 for ``'months'``; a ``ValueError`` otherwise."""
    if unit not in ("years", "months"):
        raise ValueError(f"unit must be 'years' or 'months', got {unit!r}")
    return 12.0 if unit == "years" else 1.0


def facet_axes(
    n: int,
    *,
    ncols: int = 4,
    panel: tuple[float, float] = (3.6, 3.3),
    sharex: bool = True,
    sharey: bool = True,
) -> tuple[Figure, list[Axes]]:
    """A new figure of ``n`` panels on a grid of at most ``ncols`` columns."""
    import matplotlib.pyplot as plt

    ncols = min(positive_int("ncols", ncols), max(n, 1))
    nrows = -(-n // ncols)
    fig, axs = plt.subplots(
        nrows,
        ncols,
        figsize=(panel[0] * ncols, panel[1] * nrows),
        layout="constrained",
        sharex=sharex,
        sharey=sharey,
        squeeze=False,
    )
    flat = list(axs.ravel())
    for extra in flat[n:]:
        extra.remove()
    return fig, flat[:n]


def finish(artist: Any, show: bool | None, save: bool | str | os.PathLike | None, name: str) -> Any:
    """Save the figure (``save=``, see :func:`save_figure`), then show it or return ``artist``.

    ``show=True`` shows it; ``None`` shows it on interactive backends only.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    save_figure(artist, save, name)
    if show is None:
        show = matplotlib.get_backend().lower() not in {
            "agg",
            "pdf",
            "svg",
            "ps",
            "cairo",
            "template",
        }
    if show:
        plt.show()
        return None
    return artist


def save_figure(artist: Any, save: bool | str | os.PathLike | None, name: str) -> None:
    """Write the figure of ``artist`` into ``mt.settings.figdir`` as ``save=`` asks.

    ``None``/``False``: nothing; ``True``: ``f"{name}.png"``; a file name or path: that file
    (:func:`maxtoki.pl.savefig` rules: the suffix picks the format, ``.png`` without one).
    """
    from .. import logging as logg
    from ._savefig import savefig

    if save is None or save is False:
        return
    if save is True:
        save = f"{name}.png"
    elif not isinstance(save, (str, os.PathLike)) or not str(save):
        raise TypeError(
            f"save must be True, a file name or a path (or None), got {type(save).__name__}"
        )
    path = savefig(artist, save)
    logg.info(f"saved figure to {path}")


def require_columns(frame: Any, columns: list[str], what: str, fix: str) -> None:
    """Raise a ValueError naming the ``columns`` missing from ``frame`` and how to get them."""
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValueError(f"{what} has no {missing}; {fix}")


def format_p(p: float) -> str:
    """A p-value in two significant digits (``'p=0.0031'``, ``'p<1e-10'``, ``'p=n/a'``)."""
    if p is None or not np.isfinite(p):
        return "p=n/a"
    if p < 1e-10:
        return "p<1e-10"
    if p < 1e-3:
        return f"p={p:.1e}"
    return f"p={p:.2g}" if p < 0.1 else f"p={p:.2f}"


def stars(p: float) -> str:
    """``'***'``, ``'**'``, ``'*'`` for p below 0.001, 0.01, 0.05; ``''`` otherwise."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 1e-3 else "**" if p < 1e-2 else "*" if p < 0.05 else ""


def bh_adjust(pvals: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (``nan`` kept)."""
    p = np.asarray(pvals, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    n = int(ok.sum())
    if n == 0:
        return out
    q = p[ok]
    order = np.argsort(q)
    ranked = q[order] * n / np.arange(1, n + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(n)
    res[order] = np.minimum(ranked, 1.0)
    out[ok] = res
    return out


def categories(values: pd.Series) -> list[str]:
    """The categories of an ``obs`` column in their order (categorical) or sorted order."""
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.astype(str))
        return [str(c) for c in values.cat.categories if str(c) in present]
    return sorted({str(v) for v in values.dropna()})


def is_categorical(values: pd.Series) -> bool:
    """Whether an ``obs`` column is drawn with discrete colours."""
    import pandas as pd

    return (
        isinstance(values.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(values)
        or pd.api.types.is_object_dtype(values)
        or pd.api.types.is_string_dtype(values)
    )


def palette(labels: Sequence[str]) -> dict[str, Any]:
    """Distinct colours for ``labels`` (tab10, then tab20, then husl)."""
    import seaborn as sns

    n = len(labels)
    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "husl"
    return dict(zip(labels, sns.color_palette(name, n), strict=True))


def figure_of(artist: Any) -> Figure:
    """The matplotlib Figure of a Figure, an Axes, a sequence of Axes or a seaborn grid."""
    from matplotlib.figure import Figure

    if isinstance(artist, Figure):
        return artist
    for attr in ("figure", "fig"):
        fig = getattr(artist, attr, None)
        if isinstance(fig, Figure):
            return fig
    if isinstance(artist, (Sequence, np.ndarray)) and not isinstance(artist, str) and len(artist):
        return figure_of(np.asarray(artist, dtype=object).ravel()[0])
    raise TypeError(
        f"expected a matplotlib Figure or Axes (what the mt.pl functions return), got "
        f"{type(artist).__name__}"
    )
