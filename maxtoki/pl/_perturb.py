from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._anndata import is_number, positive_int, resolve_modality
from .._docs import inject_docs
from ..get import perturb as get_table
from ._utils import categories, finish, new_axes, require_columns, stars, unit_scale
from ._utils import palette as category_colours

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from matplotlib.axes import Axes

_OLDER, _YOUNGER = "#d1495b", "#30638e"


@inject_docs
def perturb(
    adata: AnnData,
    *,
    key: str = "maxtoki_perturb",
    color: str | None = None,
    palette: Mapping[str, Any] | None = None,
    n_genes: int | None = None,
    gene_symbols: str | None = None,
    alpha: float = 0.05,
    unit: Literal["years", "months"] = "years",
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Shift in predicted age per perturbed gene (bars: mean ± s.e.m. over cells).

    One bar per gene of :func:`maxtoki.tl.perturb`, sorted by the mean shift (perturbed minus
    unperturbed predicted age), with the standard error over the cells perturbed and stars for
    the genes whose Benjamini–Hochberg adjusted Wilcoxon p-value is below ``alpha``. Genes no
    cell could be perturbed for (``'delete'`` of a gene no cell has among its top genes) are
    left out.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.perturb`.
    key
        Its slot, ``f'{key_added}_perturb'`` (``uns`` entry).
    color
        A ``var`` column to colour the genes by (e.g. a planted role), with a legend; default:
        red for shifts towards older, blue towards younger.
    palette
        Colours of (some of) the ``color`` categories; the others get tab10 colours.
    n_genes
        Draw only the genes with the largest absolute shifts (default all).
    gene_symbols
        ``var`` column with the gene names to show (default the ``gene`` column, ``var_names``).
    alpha
        Stars mark adjusted p below ``alpha`` (``*``), ``alpha/5`` (``**``), ``alpha/50``
        (``***``).
    unit
        Axis unit; shifts are stored in months.
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
    if not is_number(alpha) or not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    n_genes = positive_int("n_genes", n_genes, optional=True)
    table = get_table(adata, key=key, mod=mod)
    require_columns(
        table.columns,
        ["gene", "kind", "mean_shift_months", "sem_months", "n_cells"],
        f"uns[{key!r}]['table']",
        "re-run `mt.tl.perturb`",
    )
    for name, col in (("color", color), ("gene_symbols", gene_symbols)):
        if col is not None:
            require_columns(
                adata.var, [col], "adata.var", f"pass an existing var column as `{name}`"
            )
    table = table[np.isfinite(table["mean_shift_months"].to_numpy(dtype=float))]
    if table.empty:
        raise ValueError(
            f"no gene in uns[{key!r}] has a shift (no cell could be perturbed); with "
            "kind='delete' pass genes the cells express, or more cells (`n_cells`)"
        )
    if n_genes is not None:
        order = np.argsort(-np.abs(table["mean_shift_months"].to_numpy(dtype=float)), kind="stable")
        table = table.iloc[order[:n_genes]]
    table = table.sort_values("mean_shift_months", kind="stable")
    genes = table["gene"].astype(str).to_numpy()
    labels = genes
    if gene_symbols is not None:
        labels = adata.var[gene_symbols].astype(str).reindex(genes).fillna("").to_numpy()
        labels = np.where(labels == "", genes, labels)
    kinds = list(dict.fromkeys(table["kind"].astype(str)))
    if len(kinds) > 1:
        labels = [f"{g} ({k})" for g, k in zip(labels, table["kind"].astype(str), strict=True)]
    shift = table["mean_shift_months"].to_numpy(dtype=float) / scale
    sem = table["sem_months"].to_numpy(dtype=float) / scale

    handles = []
    if color is None:
        colors = np.where(shift >= 0, _OLDER, _YOUNGER)
    else:
        groups = adata.var[color].astype(str).reindex(genes).fillna("n/a").to_numpy()
        present = [c for c in categories(adata.var[color]) if c in set(groups)]
        present += sorted(set(groups) - set(present))
        colours = {**category_colours(present), **dict(palette or {})}
        colors = np.asarray([colours[g] for g in groups], dtype=object)
        handles = [(g, colours[g]) for g in present]

    ax = new_axes(ax, figsize=(5.5, 1.2 + 0.28 * len(table)))
    y = np.arange(len(table))
    ax.barh(y, shift, xerr=np.nan_to_num(sem), color=list(colors), error_kw={"linewidth": 0.8})
    ax.set_yticks(y, labels, fontsize="small")
    ax.axvline(0.0, color="0.2", linewidth=0.8)
    if "pval_adj" in table:
        span = float(np.nanmax(np.abs(shift) + np.nan_to_num(sem))) or 1.0
        for i, (v, e, q) in enumerate(zip(shift, sem, table["pval_adj"], strict=True)):
            mark = stars(q * 0.05 / alpha) if np.isfinite(q) and q < alpha else ""
            if mark:
                end = v + np.sign(v or 1.0) * (np.nan_to_num(e) + 0.03 * span)
                ax.text(end, i, mark, va="center", ha="left" if v >= 0 else "right")
        ax.margins(x=0.12)
    if handles:
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color=c, label=g) for g, c in handles],
            title=color,
            fontsize="x-small",
            title_fontsize="small",
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    what = " / ".join(kinds)
    ax.set_xlabel(f"shift in predicted age ({unit}), {what}")
    ax.set_title(
        f"in-silico {what}: mean ± s.e.m. over cells\n* BH-adjusted Wilcoxon p < {alpha:g}",
        fontsize="medium",
    )
    return finish(ax, show, save, "perturb")
