from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._utils import figure_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def savefig(
    fig_or_ax: Figure | Axes | Any,
    name: str | os.PathLike,
    *,
    dpi: float = 150,
    transparent: bool = False,
    close: bool = False,
) -> Path:
    """Write a figure of :mod:`maxtoki.pl` into ``mt.settings.figdir`` (created when missing).

    The plotting functions have no ``save=`` argument; draw with ``show=False`` and pass what
    they return here.

    Parameters
    ----------
    fig_or_ax
        A Figure, an Axes (its figure is saved) or a sequence of Axes.
    name
        File name inside ``mt.settings.figdir``; its suffix picks the format (``.png`` when it
        has none: ``'age'`` → ``age.png``). An absolute path is used as is.
    dpi
        Resolution of raster formats.
    transparent
        Transparent background.
    close
        Close the figure after writing it (frees its memory in loops).

    Returns
    -------
    The path written.
    """
    import matplotlib.pyplot as plt

    from .._settings import settings

    fig = figure_of(fig_or_ax)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a file name or path, got {type(name).__name__}")
    path = Path(name)
    if not path.suffix:
        path = path.with_suffix(".png")
    if not path.is_absolute():
        path = Path(settings.figdir) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", transparent=transparent)
    if close:
        plt.close(fig)
    return path
