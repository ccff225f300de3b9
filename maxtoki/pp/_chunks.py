"""The chunk engine of rank value encoding (private to pp): validation, reading, kernels.

Shared by :func:`~maxtoki.pp.tokenize`, :func:`~maxtoki.pp.tokenize_corpus` and
:func:`~maxtoki.pp.gene_medians`: a :class:`Plan` maps an AnnData's columns to tokens,
:func:`iter_chunks` reads rows (the next chunk in a thread meanwhile), :func:`encode_chunk` and
:func:`scan_chunk` run the Numba kernels with the data checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import logging as logg
from .._anndata import check_vocab
from .._keys import check_key, token_dtype
from .._settings import settings
from ._gene_ids import GeneIds, column_tokens, resolve_gene_ids

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab

DEFAULT_CHUNK_SIZE = 10_000
#: non-integer data whose largest value is below this looks log-normalised or scaled
_LOG_MAX = 100.0


def validate_params(vocab, max_len, chunk_size, min_overlap, key_added) -> dict[str, Any]:
    check_vocab(vocab)
    if not is_int(max_len) or max_len < 3:
        raise ValueError(
            f"max_len must be an integer ≥ 3 (<bos>, one gene, <eos>), got {max_len!r}"
        )
    if not is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if not isinstance(min_overlap, (int, float, np.floating)) or not 0 <= min_overlap <= 1:
        raise ValueError(f"min_overlap must be a fraction in [0, 1], got {min_overlap!r}")
    check_key("key_added", key_added)
    return {
        "max_len": int(max_len),
        "min_overlap": float(min_overlap),
        "chunk_size": int(chunk_size),
        "key_added": key_added,
    }


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (and not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass
class Plan:
    """Everything the kernels need for one AnnData (internal)."""

    matrix: Any
    what: str
    gene_ids: GeneIds
    col_token: np.ndarray  # int32 per column, -1 outside the vocabulary
    inv_median: np.ndarray  # float64 per token id, 1 / median (0 for non-genes)
    has_dups: bool
    max_genes: int
    dtype: type
    n_genes_in_vocab: int
    n_tokens_in_vocab: int
    bos: int
    eos: int


def prepare(
    adata: AnnData, vocab: GeneVocab, *, max_len: int, layer: str | None, gene_id_key: str | None
) -> Plan:
    """Validate the matrix and gene IDs and map columns to tokens (reads no counts)."""
    if adata.n_vars == 0:
        raise ValueError(
            "the AnnData has no genes; tokenize needs the raw counts of (ideally all) genes"
        )
    matrix, what = get_matrix(adata, layer)
    gene_ids = resolve_gene_ids(adata, gene_id_key)
    col_token = column_tokens(gene_ids.ids, vocab)
    in_vocab = col_token >= 0
    n_in = int(in_vocab.sum())
    if n_in == 0:
        ex = [str(g) for g in gene_ids.ids[:3]]
        raise ValueError(
            f"none of the {adata.n_vars:,} gene IDs in {gene_ids.source} (e.g. {ex}) are in the "
            f"vocabulary ({vocab.n_genes:,} genes, e.g. {list(vocab.gene_ids[:2])}); check the "
            "species and ID type, or pass gene_id_key="
        )
    n_unique = len(np.unique(col_token[in_vocab]))
    med = vocab.median_per_token
    inv_median = np.zeros(len(vocab), dtype=np.float64)
    genes = np.isfinite(med)
    inv_median[genes] = np.true_divide(1.0, med[genes])
    return Plan(
        matrix=matrix,
        what=what,
        gene_ids=gene_ids,
        col_token=col_token,
        inv_median=inv_median,
        has_dups=n_unique < n_in,
        max_genes=int(max_len) - 2,
        dtype=token_dtype(vocab),
        n_genes_in_vocab=n_in,
        n_tokens_in_vocab=n_unique,
        bos=vocab.bos_id,
        eos=vocab.eos_id,
    )


def get_matrix(adata: AnnData, layer: str | None) -> tuple[Any, str]:
    """The count matrix (``X`` or a layer), with CSC converted to CSR once; and its name."""
    import scipy.sparse as sp

    if layer is None:
        matrix, what = adata.X, "X"
    else:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a layer name, got {type(layer).__name__}")
        if layer not in adata.layers:
            raise ValueError(
                f"layer {layer!r} not found; available layers: {list(adata.layers.keys())} "
                "(layer=None uses X)"
            )
        matrix, what = adata.layers[layer], f"layers[{layer!r}]"
    if matrix is None:
        raise ValueError(f"{what} is empty (None); pass the raw counts in X or a layer")
    if tuple(matrix.shape) != (adata.n_obs, adata.n_vars):
        raise ValueError(f"{what} has shape {matrix.shape}, expected {adata.shape}")
    fmt = getattr(matrix, "format", None)
    if sp.issparse(matrix):
        if fmt != "csr":
            logg.hint(f"converting {what} from {fmt.upper()} to CSR (one copy)")
            matrix = sp.csr_matrix(matrix)
        dt = matrix.dtype
    elif fmt == "csc" and hasattr(matrix, "to_memory"):  # backed CSC: row slices read everything
        logg.warning(f"{what} is a backed CSC matrix: loading it into memory as CSR")
        matrix = sp.csr_matrix(matrix.to_memory())
        dt = matrix.dtype
    else:
        dt = getattr(matrix, "dtype", None)
        if dt is None:
            matrix = np.asarray(matrix)
            dt = matrix.dtype
    if not (np.issubdtype(dt, np.number) or np.issubdtype(dt, np.bool_)):
        raise TypeError(f"{what} must hold numbers (raw counts), got dtype {dt}")
    if np.issubdtype(dt, np.complexfloating):
        raise TypeError(f"{what} must hold real raw counts, got dtype {dt}")
    return matrix, what


def obs_n_counts(adata: AnnData, key: str | None) -> np.ndarray | None:
    """``obs[key]`` as float64 (validated), or ``None`` when absent."""
    if key is None or key not in adata.obs.columns:
        return None
    col = adata.obs[key]
    try:
        n = np.asarray(col, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"obs[{key!r}] must be numeric total counts, got dtype {col.dtype}"
        ) from None
    bad = ~np.isfinite(n) | (n < 0)
    if bad.any():
        raise ValueError(
            f"obs[{key!r}] has {int(bad.sum()):,} negative, NaN or infinite totals (e.g. cell "
            f"{adata.obs_names[bad][0]!r}); fix them or pass n_counts_key=None to compute totals"
        )
    return n


@dataclass
class Chunk:
    """One chunk of rows in CSR form (internal)."""

    indptr: np.ndarray  # int64, n_rows + 1, any base
    indices: np.ndarray  # int32
    data: np.ndarray  # float32 or float64
    canonical: bool  # no duplicated columns within a row


def read_rows(matrix: Any, s: int, e: int) -> Chunk:
    """Rows ``s:e`` of ``matrix`` as a :class:`Chunk` (zero-copy for in-memory CSR)."""
    import scipy.sparse as sp

    if sp.issparse(matrix):  # in-memory CSR: views
        ip = matrix.indptr
        a, b = int(ip[s]), int(ip[e])
        indptr = ip[s : e + 1].astype(np.int64)
        indices, data = matrix.indices[a:b], matrix.data[a:b]
        canonical = bool(matrix.has_canonical_format)  # computed once, cached by SciPy
    else:
        block = matrix[s:e]
        if hasattr(block, "compute"):  # dask
            block = block.compute()
        if sp.issparse(block):
            block = sp.csr_matrix(block)
            canonical = bool(block.has_canonical_format)
        else:
            block = np.asarray(block)
            if block.dtype == np.float16:  # SciPy has no float16 sparse matrices
                block = block.astype(np.float32)
            block = sp.csr_matrix(block)
            canonical = True
        indptr, indices, data = block.indptr.astype(np.int64), block.indices, block.data
    return Chunk(indptr, indices.astype(np.int32, copy=False), narrow_data(data), canonical)


def narrow_data(data: np.ndarray) -> np.ndarray:
    """Counts as float32 when that is exact (whole counts below 2**24 always are), else float64.

    Half the memory of float64 and a single compiled kernel variant in the common case; the
    kernels compute in float64 either way, so values are unchanged.
    """
    if data.dtype == np.float32:
        return data
    with np.errstate(over="ignore"):  # values beyond float32 stay float64
        narrow = data.astype(np.float32)
    if data.dtype == np.float16 or np.array_equal(narrow, data):
        return narrow
    return data.astype(np.float64, copy=False)


def chunk_bounds(n_obs: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, end), …]`` covering ``n_obs`` rows in chunks of ``chunk_size``."""
    return [(s, min(s + chunk_size, n_obs)) for s in range(0, n_obs, chunk_size)]


def iter_chunks(
    matrix: Any,
    n_obs: int,
    chunk_size: int,
    what: str = "X",
    prefetch: bool | None = None,
    bounds: list[tuple[int, int]] | None = None,
) -> Iterator[tuple[int, int, Chunk]]:
    """Yield ``(start, end, chunk)`` over rows; reads the next chunk in a thread meanwhile."""
    import scipy.sparse as sp

    if bounds is None:
        bounds = chunk_bounds(n_obs, chunk_size)
    if prefetch is None:
        prefetch = not sp.issparse(matrix)  # in-memory CSR chunks are zero-copy views
    if not prefetch or len(bounds) < 2:
        for s, e in bounds:
            yield s, e, read_rows(matrix, s, e)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="maxtoki-read") as pool:
        fut = pool.submit(read_rows, matrix, *bounds[0])
        for k, (s, e) in enumerate(bounds):
            chunk = fut.result()
            if k + 1 < len(bounds):
                fut = pool.submit(read_rows, matrix, *bounds[k + 1])
            yield s, e, chunk


def check_stats(
    stats: np.ndarray,
    *,
    what: str,
    row0: int,
    n: int,
    warned: list[bool],
    totals: np.ndarray | None = None,
) -> None:
    """Raise on negative, NaN/infinite or log-normalised values found by a kernel's pass.

    ``totals`` (per-cell sums) must be finite: values near the float64 limit overflow them.
    """
    n_neg, n_bad, n_frac = stats[:, 0].sum(), stats[:, 1].sum(), stats[:, 2].sum()
    vmax = stats[:, 3].max() if len(stats) else 0.0
    where = f"{what} (cells {row0:,}–{row0 + n - 1:,})"
    if n_bad:
        raise ValueError(f"{where} has {int(n_bad):,} NaN or infinite values; pass raw counts")
    if totals is not None and not np.isfinite(totals).all():
        r = row0 + int(np.flatnonzero(~np.isfinite(totals))[0])
        raise ValueError(
            f"{where}: the counts of cell {r:,} sum to infinity (values near the float64 limit); "
            "these are not raw counts: pass layer= naming the raw counts"
        )
    if n_neg:
        raise ValueError(
            f"{where} has {int(n_neg):,} negative values; tokenize needs raw counts (not scaled "
            "or log-normalised data): pass layer= naming the raw counts"
        )
    if n_frac:
        example = stats[stats[:, 2] > 0, 4][0]
        if vmax < _LOG_MAX:
            raise ValueError(
                f"{where} looks log-normalised: non-integer values (e.g. {example:.4g}) and a "
                f"maximum of {vmax:.4g}; tokenize needs raw counts: pass layer= naming the raw "
                "counts (e.g. layer='counts')"
            )
        if not warned[0]:
            logg.warning(
                f"{what} has non-integer values (e.g. {example:.4g}); MaxToki expects raw counts. "
                "Continuing (ambient-corrected or EM counts are fine; normalised data is not)"
            )
            warned[0] = True


@dataclass
class Encoded:
    """Tokens of one chunk (internal)."""

    tokens: np.ndarray  # flat, <bos> … <eos> per cell
    lengths: np.ndarray  # int32 tokens per cell
    total: float  # sum of all counts
    in_vocab: float  # sum of counts on vocabulary genes
    n_truncated: int  # cells with more than max_len - 2 vocabulary genes


_MIN_PARALLEL_ROWS = 256


def _n_blocks(n_rows: int) -> int:
    """Blocks of rows for the parallel kernels (1: run serially, for small chunks)."""
    if n_rows < _MIN_PARALLEL_ROWS or settings.n_threads == 1:
        return 1
    return min(n_rows, 8 * settings.n_threads)


def scan_chunk(
    chunk: Chunk,
    col_map: np.ndarray,
    n_map: int,
    has_dups: bool,
    *,
    row0: int,
    warned: list[bool],
    what: str,
):
    """Per-row totals and sums over mapped columns, with the values validated.

    Returns per-row totals (all genes), sums over mapped columns (``col_map >= 0``), the number
    of distinct mapped ids with a non-zero count, and whether duplicates must be summed; raises
    on negative, NaN or log-normalised values.
    """
    from ._rank_kernel import _scan_block, scan_csr

    n = len(chunk.indptr) - 1
    nb = _n_blocks(n)
    totals = np.empty(n, dtype=np.float64)
    in_vocab = np.empty(n, dtype=np.float64)
    n_unique = np.empty(n, dtype=np.int64)
    stats = np.zeros((nb, 5), dtype=np.float64)
    dups = has_dups or not chunk.canonical
    if nb == 1:  # small chunk: skip the thread pool
        _scan_block(
            chunk.indptr,
            chunk.indices,
            chunk.data,
            col_map,
            n_map,
            dups,
            0,
            n,
            totals,
            in_vocab,
            n_unique,
            stats,
            0,
        )
    else:
        scan_csr(
            chunk.indptr,
            chunk.indices,
            chunk.data,
            col_map,
            n_map,
            dups,
            nb,
            totals,
            in_vocab,
            n_unique,
            stats,
        )
    check_stats(stats, what=what, row0=row0, n=n, warned=warned, totals=totals)
    return totals, in_vocab, n_unique, dups


def encode_chunk(
    chunk: Chunk, plan: Plan, n_counts: np.ndarray | None, *, row0: int, warned: list[bool]
) -> Encoded:
    """Rank value encoding of one chunk into a flat token array (validated)."""
    from ._rank_kernel import _encode_block, compact_rows, encode_csr

    n = len(chunk.indptr) - 1
    nb = _n_blocks(n)
    # room for every row's detected entries (capped), then compacted to the real lengths
    slots = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.minimum(np.diff(chunk.indptr), plan.max_genes) + 2, out=slots[1:])
    buf = np.empty(int(slots[-1]), dtype=np.int32)  # one compiled variant; cast below
    lengths = np.empty(n, dtype=np.int32)
    totals = np.empty(n, dtype=np.float64)
    in_vocab = np.empty(n, dtype=np.float64)
    n_unique = np.empty(n, dtype=np.int64)
    stats = np.zeros((nb, 5), dtype=np.float64)
    obs_n = np.zeros(0) if n_counts is None else np.ascontiguousarray(n_counts, dtype=np.float64)
    dups = plan.has_dups or not chunk.canonical
    args = (
        chunk.indptr,
        chunk.indices,
        chunk.data,
        obs_n,
        plan.col_token,
        plan.inv_median,
        dups,
        plan.max_genes,
        slots,
        buf,
        lengths,
        totals,
        in_vocab,
        n_unique,
        stats,
        plan.bos,
        plan.eos,
    )
    if nb == 1:  # small chunk: skip the thread pool
        _encode_block(*args, 0, n, 0)
    else:
        encode_csr(*args, nb)
    check_stats(stats, what=plan.what, row0=row0, n=n, warned=warned, totals=totals)
    nc = totals if n_counts is None else obs_n
    bad = (n_unique > 0) & ~(nc > 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"cell {row0 + r:,} has counts in vocabulary genes but a total count (n_counts) of "
            f"{nc[r]:g}; fix obs n_counts or pass n_counts_key=None"
        )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=plan.dtype)
    compact_rows(buf, slots, lengths, offsets, out)
    return Encoded(
        out,
        lengths,
        float(totals.sum()),
        float(in_vocab.sum()),
        int((n_unique > plan.max_genes).sum()),
    )


def check_overlap(
    in_vocab: float, total: float, threshold: float, min_overlap: float, plan: Plan, where: str
) -> float:
    """Fraction of counts on vocabulary genes; ``ValueError`` below ``threshold``."""
    if total <= 0:
        return 0.0
    frac = in_vocab / total
    if frac < threshold:
        raise ValueError(
            f"only {frac:.1%} of counts{where} are in vocabulary genes ({plan.n_genes_in_vocab:,} "
            f"genes of {plan.gene_ids.source} matched), below min_overlap={min_overlap:g}: wrong "
            "species, ID type or a filtered feature set? Check gene_id_key=, or lower min_overlap "
            "if this is intended"
        )
    return frac


@contextlib.contextmanager
def numba_threads():
    """Numba kernels on ``settings.n_threads`` threads; every thread setting restored after.

    Numba's OpenMP layer shares the OpenMP runtime with PyTorch, so setting Numba's threads can
    change ``torch.get_num_threads()``: a torch already imported gets its count back too.
    """
    import sys

    import numba

    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(settings.n_threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)
        if torch_threads is not None and torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
