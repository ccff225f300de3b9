from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import logging as logg
from .._anndata import positive_int, resolve_modality
from .._docs import inject_docs
from .._keys import DEFAULT_KEY, TokenSlots, read_params, slot
from .._optional import import_optional
from ._utils import ORIGIN_COLORS, categories, finish, new_axes, palette, require_columns

if TYPE_CHECKING:
    import os

    import pandas as pd
    from anndata import AnnData
    from matplotlib.axes import Axes

_UMAP_MAX_CELLS = 20_000
#: The record ``mt.tl.generate`` writes next to its cells (their ``X`` is already log-scaled).
_GENERATE_KEY = slot(DEFAULT_KEY, "generate")
#: The tokens of the real cells, as ``mt.pp.tokenize`` writes them by default.
_TOKENS = TokenSlots.for_key_added(DEFAULT_KEY)


@inject_docs
def generated_vs_real(
    real: AnnData,
    generated: AnnData,
    *,
    color: str = "origin",
    basis: Literal["auto", "umap", "pca"] = "auto",
    representation: Literal["top_genes", "expression"] = "top_genes",
    n_real: int | None = 3000,
    n_comps: int = 30,
    size: float | None = None,
    random_state: int = 0,
    mod: str = "rna",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Real and generated cells in one embedding (PCA, then UMAP when cheap).

    Both objects are restricted to their common genes, brought to ``log1p`` of counts per
    10,000 (``X`` of real cells holding integer counts is normalised over all its genes;
    generated cells from :func:`maxtoki.tl.generate` already hold that scale), stacked, and
    embedded by PCA (scanpy), then, with ``basis='umap'`` (or ``'auto'`` and at most 20,000
    cells), UMAP on the PCA neighbour graph. Needs scanpy: ``pip install 'maxtoki[scanpy]'``.

    Generated cells carry only their top-ranked genes. With ``representation='top_genes'``
    (default) real cells are shown the same way: each keeps the genes of its own top
    ``max_genes`` tokens (``obsm['maxtoki_tokens']``, the number generated per cell), so that
    the two differ only in which genes rank high, not in how many are non-zero.

    The title reports a neighbour-mixing score: the share of real cells among the 15 nearest
    neighbours (PCA space) of generated cells, next to the share of real cells overall; similar
    values mean generated cells sit among real ones.

    Parameters
    ----------
    real
        AnnData (or MuData) of real cells (raw counts in ``X``; tokenized for
        ``representation='top_genes'``).
    generated
        Output of :func:`maxtoki.tl.generate`.
    color
        ``'origin'`` (real vs generated) or an ``obs`` column of both objects (e.g.
        ``'cell_type'``); then generated cells are drawn as diamonds.
    basis
        ``'umap'``, ``'pca'`` or ``'auto'`` (UMAP up to 20,000 cells, else PCA).
    representation
        ``'top_genes'`` or ``'expression'`` (every common gene of the real cells).
    n_real
        Real cells drawn (a random subset; ``None`` for all).
    n_comps
        Principal components.
    size
        Marker size; default from the number of cells.
    {random_state}
        It seeds the subset, PCA and UMAP.
    {mod}
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes when not shown.
    """
    real, _ = resolve_modality(real, mod)
    generated, _ = resolve_modality(generated, mod)
    if basis not in ("auto", "umap", "pca"):
        raise ValueError(f"basis must be 'auto', 'umap' or 'pca', got {basis!r}")
    if representation not in ("top_genes", "expression"):
        raise ValueError(
            f"representation must be 'top_genes' or 'expression', got {representation!r}"
        )
    n_real = positive_int("n_real", n_real, optional=True)
    n_comps = positive_int("n_comps", n_comps)
    common = _common_genes(real, generated, color)
    both = _stack(real, generated, common, color, representation, n_real, random_state)
    is_gen = both.obs["origin"].to_numpy() == "generated"
    xy, labels, basis, mixing, expected = _embed(both, is_gen, basis, n_comps, random_state)

    ax = new_axes(ax, figsize=(5.8, 4.6))
    s = size if size is not None else float(np.clip(3000 / both.n_obs, 4, 40))
    if color == "origin":
        _draw_origin(ax, xy, is_gen, s)
    else:
        _draw_by_color(ax, xy, is_gen, both.obs[color], color, s)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xticks([])
    ax.set_yticks([])
    how = "top genes per cell" if representation == "top_genes" else "all genes"
    ax.set_title(
        f"generated vs real ({basis.upper()}, {len(common)} genes, {how})\n"
        f"real among generated cells' neighbours: {100 * mixing:.0f}% "
        f"(real cells overall: {100 * expected:.0f}%)",
        fontsize="medium",
    )
    logg.info(f"generated_vs_real: neighbour mixing {mixing:.2f} (expected {expected:.2f})")
    return finish(ax, show, save, "generated_vs_real")


def _common_genes(real: AnnData, generated: AnnData, color: str) -> pd.Index:
    """The genes (``var_names``) of both objects, after checking cells and ``color``."""
    if generated.n_obs == 0 or real.n_obs == 0:
        raise ValueError("both `real` and `generated` need cells")
    if color != "origin":
        for name, obj in (("real", real), ("generated", generated)):
            require_columns(
                obj.obs, [color], f"{name}.obs", "pass `color='origin'` or an obs column of both"
            )
    common = generated.var_names.intersection(real.var_names)
    if len(common) < 2:
        raise ValueError(
            f"`real` and `generated` share {len(common)} genes (var_names); pass the AnnData "
            "the cells were generated from (`mt.tl.generate` keeps its var_names)"
        )
    return common


def _stack(
    real: AnnData,
    generated: AnnData,
    common: pd.Index,
    color: str,
    representation: str,
    n_real: int | None,
    rng: int,
) -> AnnData:
    """Real cells (a subset of ``n_real``) above generated ones, on ``common`` genes, log-scaled.

    ``obs`` has ``origin`` (``'real'``/``'generated'``) and, unless ``color='origin'``, the
    ``color`` column as strings.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    gen = np.random.default_rng(rng)
    rows = np.arange(real.n_obs)
    if n_real is not None and real.n_obs > n_real:
        rows = np.sort(gen.choice(real.n_obs, n_real, replace=False))

    x_real = _log_normalised(real.X[rows])
    if representation == "top_genes":
        keep = _top_gene_mask(real, rows, _max_genes(generated))
        x_real = sp.csr_matrix(x_real.multiply(keep))
    x_real = x_real[:, real.var_names.get_indexer(common)]
    x_gen = generated.X
    if _GENERATE_KEY not in generated.uns:
        x_gen = _log_normalised(x_gen)
    x_gen = sp.csr_matrix(x_gen)[:, generated.var_names.get_indexer(common)]

    origin = np.array(["real"] * len(rows) + ["generated"] * generated.n_obs)
    obs = pd.DataFrame({"origin": pd.Categorical(origin, categories=["real", "generated"])})
    if color != "origin":
        obs[color] = np.concatenate(
            [real.obs[color].astype(str).to_numpy()[rows], generated.obs[color].astype(str)]
        )
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(sp.vstack([x_real, x_gen]).tocsr().astype(np.float32), obs=obs)


def _embed(
    both: AnnData, is_gen: np.ndarray, basis: str, n_comps: int, rng: int
) -> tuple[np.ndarray, tuple[str, str], str, float, float]:
    """PCA (and UMAP) of ``both``: coordinates, axis labels, basis drawn, neighbour mixing."""
    sc = import_optional("scanpy", extra="scanpy", purpose="mt.pl.generated_vs_real")

    n_comps = int(max(2, min(n_comps, both.n_obs - 1, both.n_vars - 1)))
    sc.pp.pca(both, n_comps=n_comps, random_state=rng)
    mixing, expected = _mixing(both.obsm["X_pca"], is_gen)
    if basis == "auto":
        basis = "umap" if both.n_obs <= _UMAP_MAX_CELLS else "pca"
    if basis == "umap":
        sc.pp.neighbors(both, n_neighbors=15, use_rep="X_pca", random_state=rng)
        sc.tl.umap(both, random_state=rng)
        xy, labels = both.obsm["X_umap"], ("UMAP1", "UMAP2")
    else:
        var = both.uns["pca"]["variance_ratio"]
        xy = both.obsm["X_pca"][:, :2]
        labels = (f"PC1 ({100 * var[0]:.1f}%)", f"PC2 ({100 * var[1]:.1f}%)")
    return xy, labels, basis, mixing, expected


def _draw_origin(ax: Axes, xy: np.ndarray, is_gen: np.ndarray, s: float) -> None:
    """Real and generated cells in their colours, with a legend of their counts."""
    for name, sel in (("real", ~is_gen), ("generated", is_gen)):
        ax.scatter(
            *xy[sel].T,
            s=s,
            color=ORIGIN_COLORS[name],
            alpha=0.7,
            linewidths=0,
            label=f"{name} ({int(sel.sum())})",
        )
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize="small",
        markerscale=1.5,
    )


def _draw_by_color(
    ax: Axes, xy: np.ndarray, is_gen: np.ndarray, column: pd.Series, color: str, s: float
) -> None:
    """Cells coloured by ``column``: real ones as dots, generated ones as diamonds."""
    from matplotlib.lines import Line2D

    values = column.to_numpy()
    cols = palette(categories(column))
    for label, c in cols.items():
        sel = ~is_gen & (values == label)
        if sel.any():
            ax.scatter(*xy[sel].T, s=s, color=c, alpha=0.5, linewidths=0, label=label)
    for label, c in cols.items():
        sel = is_gen & (values == label)
        if sel.any():
            ax.scatter(
                *xy[sel].T,
                s=s * 1.6,
                color=c,
                marker="D",
                edgecolors="black",
                linewidths=0.4,
                alpha=0.9,
            )
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=label) for label, c in cols.items()
    ]
    handles += [
        Line2D([], [], linestyle="", label=""),
        Line2D([], [], marker="o", linestyle="", color="0.6", label="real"),
        Line2D(
            [],
            [],
            marker="D",
            linestyle="",
            color="0.6",
            markeredgecolor="black",
            label="generated",
        ),
    ]
    ax.legend(
        handles=handles,
        title=color,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize="x-small",
    )


def _log_normalised(X):
    """``log1p`` of counts per 10,000 when ``X`` holds counts; ``X`` (as CSR) otherwise."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X, dtype=np.float64)
    if X.nnz and not np.allclose(X.data, np.round(X.data)):
        return X
    total = np.asarray(X.sum(axis=1)).ravel()
    X = sp.csr_matrix(sp.diags(1e4 / np.maximum(total, 1e-12)) @ X)
    X.data = np.log1p(X.data)
    return X


def _max_genes(generated) -> int:
    value = read_params(generated, _GENERATE_KEY).get("max_genes")
    if value is not None and np.isfinite(float(value)):
        return int(value)
    if "n_genes" in generated.obs:
        return int(generated.obs["n_genes"].max())
    return int(np.max(np.diff(generated.X.tocsr().indptr)))


def _top_gene_mask(real, rows: np.ndarray, n: int):
    """CSR mask (cells × genes of ``real``) of each cell's ``n`` top-ranked vocabulary genes."""
    import pandas as pd
    import scipy.sparse as sp

    if _TOKENS.tokens not in real.obsm or _TOKENS.token_id not in real.var:
        raise ValueError(
            "representation='top_genes' needs the real cells' tokens: run `mt.pp.tokenize` "
            "first, or pass representation='expression'"
        )
    ids = pd.to_numeric(real.var[_TOKENS.token_id], errors="coerce").fillna(-1).to_numpy(int)
    column_of = np.full(max(int(ids.max()) + 1, 1), -1, dtype=np.int64)
    ok = ids >= 0
    column_of[ids[ok][::-1]] = np.flatnonzero(ok)[::-1]  # first column per token wins
    tokens = np.asarray(real.obsm[_TOKENS.tokens])[rows]
    ii, jj = [], []
    for i, row in enumerate(tokens):
        row = row[(row > 0) & (row < len(column_of))]
        cols = column_of[row]
        cols = cols[cols >= 0][:n]
        ii.append(np.full(len(cols), i))
        jj.append(cols)
    ii, jj = np.concatenate(ii), np.concatenate(jj)
    return sp.csr_matrix((np.ones(len(ii)), (ii, jj)), shape=(len(rows), real.n_vars))


def _mixing(X: np.ndarray, is_gen: np.ndarray, k: int = 15) -> tuple[float, float]:
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(X) - 1))
    expected = float((~is_gen).sum() / max(len(X) - 1, 1))
    if k < 1:
        return float("nan"), expected
    nn = NearestNeighbors(n_neighbors=k + 1).fit(X)
    idx = nn.kneighbors(X[is_gen], return_distance=False)[:, 1:]
    return float(np.mean(~is_gen[idx])), expected
