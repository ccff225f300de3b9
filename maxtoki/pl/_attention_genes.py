from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import logging as logg
from .._anndata import resolve_modality
from .._docs import inject_docs
from ..get import attention_heads
from ._utils import facet_axes, finish, new_axes, require_columns

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_SET_COLOR = "#d1495b"
_OTHER_COLOR = "#8d99ae"
_MAX_DEFAULT_HEADS = 8


@inject_docs
def attention_genes(
    adata: AnnData,
    *,
    key: str = "maxtoki_attention",
    n_genes: int = 10,
    heads: str | Sequence[str] | None = None,
    gene_set: str | None = "is_tf",
    gene_symbols: str | None = None,
    ncols: int = 4,
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | Figure | None:
    """The genes that receive most attention, per head (bar charts).

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.attention`.
    key
        Its slot, ``f'{key_added}_attention'`` (``varm`` and ``uns`` entries).
    n_genes
        Genes shown per head.
    heads
        Head names (``'L{layer}H{head}'``, the ``uns[key]['columns']``). Default: every head
        when there are at most 8, else the 8 with the highest ``log2_enrichment``.
    gene_set
        A boolean ``var`` column whose genes are highlighted (default ``'is_tf'``); ``None`` or
        a missing column highlights nothing.
    gene_symbols
        ``var`` column with the gene names to show (default ``var_names``).
    ncols
        Panels per row.
    {mod}
    ax
        Axes to draw into (one head only); a new figure otherwise.
    show
        Show the figure; ``None`` shows it on interactive backends only.
    {save}

    Returns
    -------
    The Axes for one head, the Figure for several, when not shown. Values are the mean
    attention a gene receives relative to a uniform head (1 = uniform).
    """
    from matplotlib.patches import Patch

    adata, _ = resolve_modality(adata, mod)
    entry = adata.uns.get(key)
    if key not in adata.varm or not hasattr(entry, "get") or entry.get("columns") is None:
        raise ValueError(
            f"varm/uns have no {key!r} attention: run `mt.tl.attention` first (or pass the key "
            "it wrote as `key`)"
        )
    if isinstance(n_genes, bool) or not isinstance(n_genes, (int, np.integer)) or n_genes < 1:
        raise ValueError(f"n_genes must be a positive integer, got {n_genes!r}")
    columns = [str(c) for c in np.asarray(entry["columns"]).ravel()]
    values = np.asarray(adata.varm[key], dtype=float)
    if heads is None:
        heads = columns
        if len(columns) > _MAX_DEFAULT_HEADS:
            heads = _strongest(adata, key, columns)
            logg.info(f"attention_genes: showing the {len(heads)} most TF-enriched heads")
    else:
        heads = [heads] if isinstance(heads, str) else [str(h) for h in heads]
        unknown = [h for h in heads if h not in columns]
        if unknown:
            raise ValueError(f"heads {unknown} are not in uns[{key!r}]['columns'] ({columns[:8]}…)")
    if len(heads) > 1 and ax is not None:
        raise ValueError("several heads are drawn in a new figure; pass one head to draw into `ax`")
    if gene_symbols is not None:
        require_columns(adata.var, [gene_symbols], "adata.var", "pass a var column of gene names")
        names = adata.var[gene_symbols].astype(str).to_numpy()
    else:
        names = np.asarray(adata.var_names.astype(str))
    in_set = np.zeros(adata.n_vars, dtype=bool)
    if gene_set is not None:
        require_columns(
            adata.var, [gene_set], "adata.var", "pass a boolean var column as `gene_set`, or None"
        )
        in_set = adata.var[gene_set].to_numpy() == True  # noqa: E712 (object columns)

    if len(heads) == 1:
        axs, fig = [new_axes(ax, figsize=(3.6, 0.8 + 0.28 * n_genes))], None
    else:
        fig, axs = facet_axes(
            len(heads), ncols=ncols, panel=(3.2, 0.8 + 0.28 * n_genes), sharex=False, sharey=False
        )
    for h, a in zip(heads, axs, strict=True):
        v = values[:, columns.index(h)]
        ok = np.flatnonzero(np.isfinite(v))
        top = ok[np.argsort(-v[ok], kind="stable")[:n_genes]]
        if len(top) == 0:
            a.text(0.5, 0.5, "no values", ha="center", va="center", transform=a.transAxes)
            a.set_title(h)
            continue
        y = np.arange(len(top))
        a.barh(y, v[top], color=np.where(in_set[top], _SET_COLOR, _OTHER_COLOR))
        a.set_yticks(y, names[top], fontsize="x-small")
        a.invert_yaxis()
        a.axvline(1.0, color="0.3", linestyle="--", linewidth=0.8)
        a.set_title(h, fontsize="medium")
        a.set_xlabel("attention received (1 = uniform)", fontsize="small")
    if in_set.any():
        handles = [
            Patch(color=_SET_COLOR, label=gene_set),
            Patch(color=_OTHER_COLOR, label="other"),
        ]
        target = fig if fig is not None else axs[0]
        kw = {"loc": "outside right upper"} if fig is not None else {"loc": "lower right"}
        target.legend(handles=handles, frameon=False, fontsize="small", **kw)
    if fig is not None:
        fig.suptitle(f"top {n_genes} genes by attention received, per head")
        return finish(fig, show, save, "attention_genes")
    return finish(axs[0], show, save, "attention_genes")


def _strongest(adata, key: str, columns: list[str]) -> list[str]:
    try:
        table = attention_heads(adata, key=key)
    except ValueError:
        return columns[:_MAX_DEFAULT_HEADS]
    table = table.assign(name=[f"L{int(r.layer)}H{int(r.head)}" for r in table.itertuples()])
    table = table[table["name"].isin(columns)].sort_values("log2_enrichment", ascending=False)
    return list(table["name"].iloc[:_MAX_DEFAULT_HEADS])
