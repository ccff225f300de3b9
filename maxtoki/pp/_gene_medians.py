"""Per-gene non-zero medians of normalised expression (``mt.pp.gene_medians``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import resolve_modality
from .._docs import inject_docs
from ._chunks import (
    DEFAULT_CHUNK_SIZE,
    Chunk,
    get_matrix,
    is_int,
    iter_chunks,
    narrow_data,
    numba_threads,
    obs_n_counts,
    scan_chunk,
)
from ._gene_ids import resolve_gene_ids

if TYPE_CHECKING:
    from anndata import AnnData

#: log10 range of the histogram method's bins (normalised values are ≤ 10,000 when n_counts is
#: the cell's total; 1e-3 is one count in a cell of ten million)
HIST_RANGE = (-3.0, 5.0)


@inject_docs
def gene_medians(
    adata: Any,
    *,
    gene_id_key: str | None = None,
    layer: str | None = None,
    n_counts_key: str | None = "n_counts",
    method: Literal["exact", "histogram"] = "exact",
    n_bins: int = 4096,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    mod: str = "rna",
) -> pd.Series:
    """Non-zero median of each gene's normalised expression: the divisor of rank value encoding.

    For each gene, the median over the cells where it is detected of ``x / n_counts * 10_000``
    (``n_counts`` from ``obs[n_counts_key]`` when present, else the cell's total over all genes),
    as the official MaxToki/Geneformer gene median dictionary defines it. Streams over chunks of
    cells of in-memory or backed AnnData (``read_h5ad(backed="r")``) or a list of ``.h5ad`` files
    (read backed, one at a time), so a new vocabulary is one line:
    ``GeneVocab.from_genes(mt.pp.gene_medians(files))``.

    Memory: ``method="exact"`` keeps every non-zero normalised value (8 bytes per non-zero
    count, i.e. ``O(nnz)``: 2 GB for 10⁵ cells × 2,500 genes) and reads the data twice (one pass
    to count, one to collect); the medians are exact (``np.median`` of the non-zero values).
    For corpora larger than memory use ``method="histogram"``: one pass, a fixed log-spaced
    histogram per gene (``n_genes × n_bins`` uint32: 330 MB for 20,000 genes and 4,096 bins), the
    median interpolated inside its bin. With the default 4,096 bins over 10⁻³…10⁵ (0.45% wide),
    the relative error measured against ``method="exact"`` on simulated counts (2,000 cells ×
    300 genes) is 0.045% at the median gene, 0.12% at the 90th percentile and 0.27% at worst
    (``tests/test_gene_medians.py``), far below the medians' own sampling noise; 256 bins give
    0.23% / 0.62% / 2.5%.

    Parameters
    ----------
    adata
        AnnData or MuData (see ``mod``), a path to an ``.h5ad`` file, or a list of paths or
        AnnData objects; medians are pooled over all cells.
    gene_id_key
        Column of ``var`` with Ensembl IDs (see :func:`maxtoki.pp.tokenize`); columns with the
        same ID are summed per cell first.
    layer
        Layer with raw counts; ``None`` uses ``X``.
    n_counts_key
        Column of ``obs`` with each cell's total counts; when absent, totals are computed.
    method
        ``"exact"`` (``O(nnz)`` memory) or ``"histogram"`` (bounded memory, approximate).
    n_bins
        Number of log-spaced bins for ``method="histogram"``.
    chunk_size
        Cells per chunk.
    {mod}

    Returns
    -------
    :class:`pandas.Series` of float64 medians indexed by Ensembl gene ID (name ``"ensembl_id"``),
    in order of first appearance; genes never detected are left out (logged).
    """
    if method not in ("exact", "histogram"):
        raise ValueError(f"method must be 'exact' or 'histogram', got {method!r}")
    if not is_int(n_bins) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer ≥ 2, got {n_bins!r}")
    if not is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    items = list(adata) if isinstance(adata, (list, tuple)) else [adata]
    if not items:
        raise ValueError("no data given; pass an AnnData, an .h5ad path, or a list of them")
    start = logg.info(f"computing gene medians ({method}) over {len(items)} source(s)")

    # validate every source and build the union of gene IDs before reading any counts
    gene_index: dict[str, int] = {}
    sources: list[_Source] = []
    for item in items:
        with _open(item, mod) as adata:
            src = _describe(adata, item, gene_id_key, layer, n_counts_key, gene_index)
        sources.append(src)
    n_genes = len(gene_index)
    ids = np.array(list(gene_index), dtype=object)
    n_cells = sum(s.n_obs for s in sources)
    logg.info(f"    {n_cells:,} cells, {n_genes:,} distinct gene IDs")
    if n_cells == 0 or n_genes == 0:
        raise ValueError(
            f"the data have {n_cells:,} cells and {n_genes:,} genes; gene medians need cells with "
            "raw counts of genes (check the subset or filter that made the data)"
        )

    opts = _Opts(mod, layer, n_counts_key, int(chunk_size), n_genes)
    with numba_threads():
        if method == "exact":
            medians = _exact(items, sources, opts)
        else:
            medians = _histogram(items, sources, opts, int(n_bins))
    seen = np.isfinite(medians)
    if not seen.any():
        raise ValueError(
            "no gene has a non-zero count in any cell; gene medians need raw counts (check "
            "`layer=`)"
        )
    if not seen.all():
        logg.info(f"    {int((~seen).sum()):,} genes were never detected and are left out")
    out = pd.Series(medians[seen], index=pd.Index(ids[seen].astype(str), name="ensembl_id"),
                    name="median")
    logg.info(f"    finished: medians of {len(out):,} genes", time=start)
    return out


@dataclass
class _Source:
    n_obs: int
    col_gene: np.ndarray  # int32 global gene index per column
    has_dups: bool
    name: str


class _open:
    """Context manager: an AnnData from an item (paths are opened backed and closed after)."""

    def __init__(self, item: Any, mod: str):
        self.item, self.mod, self.opened = item, mod, None

    def __enter__(self) -> AnnData:
        if isinstance(self.item, (str, os.PathLike)):
            import anndata as ad

            if not os.path.isfile(self.item):
                raise ValueError(
                    f"file {str(self.item)!r} does not exist; pass an AnnData, the path of an "
                    "existing .h5ad file, or a list of them"
                )
            self.opened = ad.read_h5ad(self.item, backed="r")
            return self.opened
        adata, _ = resolve_modality(self.item, self.mod)
        return adata

    def __exit__(self, *exc) -> None:
        if self.opened is not None and getattr(self.opened, "file", None) is not None:
            self.opened.file.close()


def _describe(adata, item, gene_id_key, layer, n_counts_key, gene_index) -> _Source:
    get_matrix(adata, layer)
    gids = resolve_gene_ids(adata, gene_id_key)
    col = np.empty(adata.n_vars, dtype=np.int32)
    for j, g in enumerate(gids.ids):
        col[j] = gene_index.setdefault(g, len(gene_index))
    obs_n_counts(adata, n_counts_key)
    name = str(item) if isinstance(item, (str, os.PathLike)) else "AnnData"
    return _Source(adata.n_obs, col, len(np.unique(col)) < len(col), name)


def _chunks(items, sources, opts, warned, desc):
    """Yield ``(chunk, n_counts, col_gene)`` per chunk of every source, with a progress bar.

    ``col_gene`` is ``None`` when duplicated columns were summed (the chunk's columns are then
    global gene indices).
    """
    n_cells = sum(src.n_obs for src in sources)
    n_chunks = sum(-(-src.n_obs // opts.chunk_size) for src in sources)
    with logg._progress_bar(n_cells, desc=desc, show=n_chunks > 1) as bar:
        yield from _source_chunks(items, sources, opts, warned, bar)


def _source_chunks(items, sources, opts, warned, bar):
    for item, src in zip(items, sources, strict=True):
        with _open(item, opts.mod) as adata:
            matrix, what = get_matrix(adata, opts.layer)
            obs_n = obs_n_counts(adata, opts.n_counts_key)
            for s, e, chunk in iter_chunks(matrix, adata.n_obs, opts.chunk_size, what):
                totals, _, _, dups = scan_chunk(chunk, src.col_gene, opts.n_genes, src.has_dups,
                                                row0=s, warned=warned, what=f"{src.name} {what}")
                n_counts = totals if obs_n is None else obs_n[s:e]
                bad = (totals > 0) & ~(n_counts > 0)
                if bad.any():
                    raise ValueError(
                        f"{src.name}: cell {s + int(np.flatnonzero(bad)[0]):,} has counts but a "
                        f"total count (obs[{opts.n_counts_key!r}]) of 0; fix it or pass "
                        "n_counts_key=None"
                    )
                bar.update(e - s)
                if dups:
                    yield _sum_duplicates(chunk, src.col_gene, opts.n_genes), n_counts, None
                else:
                    yield chunk, n_counts, src.col_gene


@dataclass
class _Opts:
    mod: str
    layer: str | None
    n_counts_key: str | None
    chunk_size: int
    n_genes: int


def _sum_duplicates(chunk: Chunk, col_gene: np.ndarray, n_genes: int) -> Chunk:
    import scipy.sparse as sp

    n = len(chunk.indptr) - 1
    x = sp.csr_matrix((chunk.data, chunk.indices, chunk.indptr - chunk.indptr[0]),
                      shape=(n, len(col_gene)))
    agg = sp.csr_matrix((np.ones(len(col_gene)), (np.arange(len(col_gene)), col_gene)),
                        shape=(len(col_gene), n_genes))
    y = (x @ agg).tocsr()
    y.sum_duplicates()
    return Chunk(y.indptr.astype(np.int64), y.indices.astype(np.int32), narrow_data(y.data), True)


def _exact(items, sources, opts) -> np.ndarray:
    from ._rank_kernel import normalised_values_csr, segment_medians

    n_genes = opts.n_genes
    identity = np.arange(n_genes, dtype=np.int32)
    counts = np.zeros(n_genes, dtype=np.int64)
    for chunk, _, col in _chunks(items, sources, opts, [False], "gene medians 1/2"):
        col = identity if col is None else col
        nz = chunk.data != 0
        counts += np.bincount(col[chunk.indices[nz]], minlength=n_genes)
    starts = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    nnz = int(starts[-1])
    logg.info(f"    collecting {nnz:,} non-zero values ({nnz * 8 / 2**30:.2f} GiB)")
    values = np.empty(int(starts[-1]), dtype=np.float64)
    pos = starts[:-1].copy()
    for chunk, n_counts, col in _chunks(items, sources, opts, [True], "gene medians 2/2"):
        col = identity if col is None else col
        normalised_values_csr(chunk.indptr, chunk.indices, chunk.data,
                              np.asarray(n_counts, dtype=np.float64), col, pos, values)
    if not np.array_equal(pos, starts[1:]):
        raise RuntimeError("the data changed between the two passes of gene_medians")
    out = np.empty(n_genes, dtype=np.float64)
    segment_medians(values, starts, out)
    return out


def _histogram(items, sources, opts, n_bins) -> np.ndarray:
    from ._rank_kernel import histogram_csr, histogram_medians

    n_genes = opts.n_genes
    lo, hi = HIST_RANGE
    width = (hi - lo) / n_bins
    logg.info(f"    histogram of {n_genes:,} genes × {n_bins:,} bins "
              f"({n_genes * n_bins * 4 / 2**20:.0f} MiB)")
    hist = np.zeros((n_genes, n_bins), dtype=np.uint32)
    identity = np.arange(n_genes, dtype=np.int32)
    for chunk, n_counts, col in _chunks(items, sources, opts, [False], "gene medians"):
        col = identity if col is None else col
        histogram_csr(chunk.indptr, chunk.indices, chunk.data,
                      np.asarray(n_counts, dtype=np.float64), col, lo, 1.0 / width, hist)
    out = np.empty(n_genes, dtype=np.float64)
    histogram_medians(hist, lo, width, out)
    return out

