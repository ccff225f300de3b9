from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .._anndata import is_number, resolve_modality
from .._docs import inject_docs
from .._keys import read_params
from ..get import attention_heads as get_heads
from ._utils import bh_adjust, finish, new_axes, require_columns, stars

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from matplotlib.axes import Axes


@inject_docs
def attention_heads(
    adata: AnnData,
    *,
    key: str = "maxtoki_attention",
    value: str = "log2_enrichment",
    alpha: float = 0.05,
    correction: Literal["bh", "none"] = "bh",
    annotate: bool | None = None,
    cmap: str | None = None,
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Layer × head heatmap of the attention genes of a gene set receive (e.g. TFs).

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.attention`.
    key
        Its slot, ``f'{key_added}_attention'`` (``uns`` entry).
    value
        Column of the head table to colour by: ``'log2_enrichment'`` (default, diverging
        around 0), ``'enrichment'`` (around 1), ``'mean_set'``, ``'mean_other'``…
    alpha
        Heads whose p-value (one-sided Mann–Whitney U, gene set above the other genes) is below
        ``alpha`` after ``correction`` get stars (``*``, ``**``, ``***`` for adjusted p below
        ``alpha``, ``alpha/5``, ``alpha/50``).
    correction
        ``'bh'`` (Benjamini–Hochberg over the heads drawn) or ``'none'``.
    annotate
        Write the value in each cell; default when there are at most 16 × 16 heads.
    cmap
        Colour map; default diverging (``'RdBu_r'``) for enrichments, ``'viridis'`` otherwise.
    {mod}
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes when not shown.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    adata, _ = resolve_modality(adata, mod)
    if not is_number(alpha) or not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    heads = get_heads(adata, key=key, mod=mod)
    require_columns(
        heads.columns,
        [value, "layer", "head", "pval"],
        f"uns[{key!r}]['heads']",
        "pass a column of `mt.get.attention_heads` as `value`",
    )
    if correction not in ("bh", "none"):
        raise ValueError(f"correction must be 'bh' or 'none', got {correction!r}")
    layers = sorted(heads["layer"].astype(int).unique())
    n_heads = int(heads["head"].max()) + 1
    grid = np.full((len(layers), n_heads), np.nan)
    pgrid = np.full_like(grid, np.nan)
    li = {v: i for i, v in enumerate(layers)}
    p = heads["pval"].to_numpy(dtype=float)
    padj = bh_adjust(p) if correction == "bh" else p
    for (_, r), q in zip(heads.iterrows(), padj, strict=True):
        grid[li[int(r["layer"])], int(r["head"])] = float(r[value])
        pgrid[li[int(r["layer"])], int(r["head"])] = q

    center = {"log2_enrichment": 0.0, "enrichment": 1.0}.get(value)
    finite = grid[np.isfinite(grid)]
    norm = None
    if center is not None:
        cmap = cmap or "RdBu_r"
        span = float(np.max(np.abs(finite - center))) if finite.size else 1.0
        span = span or 1.0
        norm = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
    else:
        cmap = cmap or "viridis"
    size = (max(4.5, min(2.5 + 0.55 * n_heads, 14)), max(3.2, min(1.6 + 0.45 * len(layers), 12)))
    ax = new_axes(ax, figsize=size)
    im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    plt.colorbar(im, ax=ax, label=value.replace("_", " "), shrink=0.85)
    ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])
    ax.set_yticks(range(len(layers)), [str(v) for v in layers])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if annotate is None:
        annotate = len(layers) <= 16 and n_heads <= 16
    for i in range(len(layers)):
        for j in range(n_heads):
            q = pgrid[i, j]
            mark = stars(q * 0.05 / alpha) if np.isfinite(q) and q < alpha else ""
            if not annotate and not mark:
                continue
            v = grid[i, j]
            text = f"{v:.2g}" if annotate and np.isfinite(v) else ""
            text = f"{text}\n{mark}" if text and mark else (text or mark)
            rgba = im.cmap(im.norm(v)) if np.isfinite(v) else (1.0, 1.0, 1.0, 1.0)
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if dark else "black",
            )
    params = read_params(adata, key)
    gene_set = params.get("gene_set", "gene set")
    n_sig = int(np.sum(pgrid < alpha))
    adj = "BH-adjusted " if correction == "bh" else ""
    ax.set_title(
        f"attention to {gene_set} genes vs other genes\n"
        f"{n_sig}/{int(np.isfinite(pgrid).sum())} heads with {adj}p < {alpha:g} (*)",
        fontsize="medium",
    )
    return finish(ax, show, save, "attention_heads")
