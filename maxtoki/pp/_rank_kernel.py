"""Numba kernels behind :func:`maxtoki.pp.tokenize` and :func:`maxtoki.pp.gene_medians`.

Internal and imported lazily (``import maxtoki.pp`` does not import numba). Every kernel works on
one chunk of rows in CSR form: ``indptr`` (int64, ``n_rows + 1``, any base: row ``r`` holds entries
``indptr[r] - indptr[0]`` … ``indptr[r + 1] - indptr[0]``), ``indices`` (int32 column of each
entry) and ``data`` (float32 or float64 counts).

Rank value encoding of one cell (:func:`encode_csr`; bit-identical to the official tokenizer,
which computes ``X / n_counts * 10_000 / medians`` with SciPy on a sparse matrix: SciPy divides a
sparse matrix by a dense array by multiplying with its reciprocal, so the value is
``((x * (1 / n)) * 10_000) * (1 / m)`` in float64; this order reproduces the golden set bit for
bit, and so do the other orders tried, e.g. NumPy's ``x / n * 10_000 / m``, while float32 does
not):

1. one pass over the cell's entries: validate them (negative, NaN, non-integer), sum all counts
   and the vocabulary genes' counts, and gather the non-zero counts of vocabulary genes (columns
   mapping to the same token are summed);
2. value = ``((x * (1 / n_counts)) * 10000.0) * (1 / median[token])``, all float64;
3. sort by value descending, ties by ascending token id. For positive finite floats the order of
   the bit patterns as unsigned integers is the order of the values, so the (inverted) bits are
   the sort keys: a bucket sort on the high bits of ``key - min(key)`` (up to 8 buckets per
   element); a bucket with more than 32 elements (e.g. many exactly tied values) is sorted by a
   stable LSD radix sort (8-bit digits, constant digits skipped) and then each run of equal
   values is put in ascending token id order; finally one insertion sort by (key, token id)
   over the whole array, in which elements only move within their (small) bucket;
4. write ``<bos>``, the first ``max_genes`` tokens, ``<eos>``.

Only ``parallel=True`` wrappers (``prange`` over blocks of rows) are called from Python for big
chunks; the per-block functions are called directly for small ones (no thread-pool start-up).
Each parallel kernel has a serial twin, used in a process forked from one that already started
Numba's thread pool (see :func:`parallel_ok`).
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import njit, prange

_MASK = np.uint64(0xFF)
_INSERTION_MAX = 32
_BUCKETS_LOG2_PER_ELEMENT = 3

# --- fork and thread safety ----------------------------------------------------------------------
_pool_started = False  # a parallel kernel ran in this process: Numba's thread pool may be up
_forked = False  # forked from a process whose thread pool may be up
_lock = threading.Lock()  # one parallel kernel at a time


def _after_fork_in_child() -> None:
    global _forked, _lock
    _forked = _forked or _pool_started
    _lock = threading.Lock()  # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_ok() -> bool:
    """Whether the ``parallel=True`` kernels may run in this process.

    Numba's OpenMP threading layer (GNU libgomp) terminates a process forked from one that has
    already started its thread pool as soon as the child enters a parallel region ("fork() called
    from a process already using GNU OpenMP, this is unsafe"): e.g. ``multiprocessing`` or
    DataLoader workers started with ``fork`` after a tokenization in the parent. Such a child runs
    the serial twins of the kernels instead (same results).
    """
    return not _forked


def _run(parallel, serial, *args) -> None:
    """Run a parallel kernel, or its serial twin where :func:`parallel_ok` is false.

    Parallel kernels run one at a time: the ``workqueue`` threading layer (Numba's fallback
    without TBB or OpenMP) aborts the process when two Python threads enter it at once, and
    each kernel already uses every thread of the pool.
    """
    global _pool_started
    if _forked:
        serial(*args)
        return
    with _lock:
        _pool_started = True
        parallel(*args)


@njit(nogil=True, cache=True)
def _insertion_sort(keys, toks, s, e):
    """Sort ``keys[s:e]`` ascending, ties by ascending ``toks`` (both in place)."""
    for i in range(s + 1, e):
        k = keys[i]
        t = toks[i]
        j = i - 1
        while j >= s and (keys[j] > k or (keys[j] == k and toks[j] > t)):
            keys[j + 1] = keys[j]
            toks[j + 1] = toks[j]
            j -= 1
        keys[j + 1] = k
        toks[j + 1] = t


@njit(nogil=True, cache=True)
def _radix_sort(keys, toks, tmp_keys, tmp_toks, s, e, hist):
    """Stable LSD radix sort of ``keys[s:e]`` (uint64) carrying ``toks``.

    ``tmp_keys[s:e]``/``tmp_toks[s:e]`` are scratch. Returns ``True`` when the sorted result
    is in the ``tmp`` arrays, else it is in ``keys``/``toks``.
    """
    n = e - s
    hist[:, :] = 0
    for i in range(s, e):
        k = keys[i]
        for b in range(8):
            hist[b, (k >> np.uint64(8 * b)) & _MASK] += 1
    src_k = keys
    src_t = toks
    dst_k = tmp_keys
    dst_t = tmp_toks
    in_tmp = False
    for b in range(8):
        shift = np.uint64(8 * b)
        if hist[b, (src_k[s] >> shift) & _MASK] == n:
            continue  # every element has the same digit here: the pass would not move anything
        acc = s
        for d in range(256):
            c = hist[b, d]
            hist[b, d] = acc
            acc += c
        for i in range(s, e):
            k = src_k[i]
            d = (k >> shift) & _MASK
            p = hist[b, d]
            hist[b, d] = p + 1
            dst_k[p] = k
            dst_t[p] = src_t[i]
        src_k, dst_k = dst_k, src_k
        src_t, dst_t = dst_t, src_t
        in_tmp = not in_tmp
    return in_tmp


@njit(nogil=True, cache=True)
def _fix_ties(sk, st, s, e):
    """Within each run of equal ``sk[s:e]`` put ``st`` in ascending order."""
    i = s + 1
    while i < e:
        if sk[i] != sk[i - 1]:
            i += 1
            continue
        a = i - 1
        b = i + 1
        while b < e and sk[b] == sk[a]:
            b += 1
        # ids inside a run are distinct: a radix-free insertion sort is fine for short runs and
        # runs are short unless a cell has many tied values (then still correct)
        for x in range(a + 1, b):
            t = st[x]
            j = x - 1
            while j >= a and st[j] > t:
                st[j + 1] = st[j]
                j -= 1
            st[j + 1] = t
        i = b + 1


@njit(nogil=True, cache=True)
def _sort_keys(keys, toks, tmp_keys, tmp_toks, hist, counts, m):
    """Sort ``keys[:m]`` ascending, ties by ascending ``toks``.

    The result is in ``tmp_keys``/``tmp_toks`` when this returns ``True``, else in
    ``keys``/``toks``.

    A bucket sort on the high bits of ``key - min(key)`` (up to 8 buckets per element: the bit
    patterns of floats are close to uniform in log scale, but values crowd in a few octaves),
    a stable radix sort plus tie fix-up inside buckets of more than 32 elements (e.g. many tied
    values), then one insertion sort over the whole array.
    """
    if m <= _INSERTION_MAX:
        _insertion_sort(keys, toks, 0, m)
        return False
    kmin = keys[0]
    kmax = keys[0]
    for i in range(1, m):
        k = keys[i]
        if k < kmin:
            kmin = k
        if k > kmax:
            kmax = k
    span = kmax - kmin
    if span == 0:  # all values tied: order by token id alone (ids within a cell are distinct)
        for i in range(m):
            keys[i] = np.uint64(toks[i])
        return _radix_sort(keys, toks, tmp_keys, tmp_toks, 0, m, hist)
    log_nb = 1
    while (1 << (log_nb + 1)) <= m:
        log_nb += 1
    log_nb += _BUCKETS_LOG2_PER_ELEMENT  # up to 8 buckets per element (``counts``: 8m + 2)
    n_bits = 0
    r = span
    while r != 0:
        r >>= np.uint64(1)
        n_bits += 1
    shift = np.uint64(max(0, n_bits - log_nb))
    n_buckets = int(span >> shift) + 1
    for b in range(n_buckets + 1):
        counts[b] = 0
    for i in range(m):
        counts[int((keys[i] - kmin) >> shift) + 1] += 1
    largest = 0
    for b in range(n_buckets):
        c = counts[b + 1]
        if c > largest:
            largest = c
        counts[b + 1] = c + counts[b]
    for i in range(m):
        b = int((keys[i] - kmin) >> shift)
        p = counts[b]
        counts[b] = p + 1
        tmp_keys[p] = keys[i]
        tmp_toks[p] = toks[i]
    s = 0
    for b in range(n_buckets if largest > _INSERTION_MAX else 0):
        e = counts[b]
        if e - s > _INSERTION_MAX:  # e.g. many exactly tied values
            if _radix_sort(tmp_keys, tmp_toks, keys, toks, s, e, hist):
                for i in range(s, e):
                    tmp_keys[i] = keys[i]
                    tmp_toks[i] = toks[i]
            _fix_ties(tmp_keys, tmp_toks, s, e)
        s = e
    # every element now sits in its bucket and the big buckets are sorted: one insertion sort
    # over the whole array finishes (elements only move within their bucket)
    _insertion_sort(tmp_keys, tmp_toks, 0, m)
    return True


@njit(inline="always")
def _check_count(x, n_neg, n_bad, n_frac, vmax, first_frac):
    """Tally one entry for the data checks: ``(usable, n_neg, n_bad, n_frac, vmax, first_frac)``.

    Not finite: counted and not usable. Negative and non-integer values are counted (the caller
    raises on them after the pass); ``first_frac`` is the first non-integer value seen.
    """
    if not np.isfinite(x):
        return False, n_neg, n_bad + 1, n_frac, vmax, first_frac
    if x < 0:
        n_neg += 1
    if x != np.floor(x):
        if n_frac == 0:
            first_frac = x
        n_frac += 1
    return True, n_neg, n_bad, n_frac, max(vmax, x), first_frac


@njit(nogil=True, cache=True)
def _scan_block(indptr, indices, data, col_token, n_tokens, has_dups, r0, r1, totals, in_vocab,
                n_unique, stats, bi):
    base = indptr[0]
    seen = np.full(n_tokens if has_dups else 0, -1, np.int64)
    n_neg = 0
    n_bad = 0
    n_frac = 0
    vmax = 0.0
    first_frac = 0.0
    for r in range(r0, r1):
        tot = 0.0
        voc = 0.0
        u = 0
        for j in range(indptr[r] - base, indptr[r + 1] - base):
            x = np.float64(data[j])
            ok, n_neg, n_bad, n_frac, vmax, first_frac = _check_count(
                x, n_neg, n_bad, n_frac, vmax, first_frac
            )
            if not ok:
                continue
            tot += x
            t = col_token[indices[j]]
            if t >= 0:
                voc += x
                if x != 0:
                    if has_dups:
                        if seen[t] != r:
                            seen[t] = r
                            u += 1
                    else:
                        u += 1
        totals[r] = tot
        in_vocab[r] = voc
        n_unique[r] = u
    stats[bi, 0], stats[bi, 1], stats[bi, 2] = n_neg, n_bad, n_frac
    stats[bi, 3], stats[bi, 4] = vmax, first_frac


def scan_csr(indptr, indices, data, col_token, n_tokens, has_dups, n_blocks, totals, in_vocab,
             n_unique, stats):
    """One pass over a CSR chunk: per-row sums and vocabulary-gene counts, plus data checks.

    Writes ``totals[r]`` (sum over all genes), ``in_vocab[r]`` (sum over vocabulary genes),
    ``n_unique[r]`` (number of distinct vocabulary tokens with a non-zero count) and, per block,
    ``stats[block] = (n_negative, n_not_finite, n_non_integer, max, first_non_integer)``.
    """
    _run(_scan_csr_parallel, _scan_csr_serial, indptr, indices, data, col_token, n_tokens,
         has_dups, n_blocks, totals, in_vocab, n_unique, stats)


@njit(parallel=True, nogil=True, cache=True)
def _scan_csr_parallel(indptr, indices, data, col_token, n_tokens, has_dups, n_blocks, totals,
                       in_vocab, n_unique, stats):
    n_rows = indptr.shape[0] - 1
    size = (n_rows + n_blocks - 1) // n_blocks
    for bi in prange(n_blocks):
        r0 = min(n_rows, bi * size)
        r1 = min(n_rows, r0 + size)
        _scan_block(indptr, indices, data, col_token, n_tokens, has_dups, r0, r1, totals,
                    in_vocab, n_unique, stats, bi)


@njit(nogil=True, cache=True)
def _scan_csr_serial(indptr, indices, data, col_token, n_tokens, has_dups, n_blocks, totals,
                     in_vocab, n_unique, stats):
    n_rows = indptr.shape[0] - 1
    size = (n_rows + n_blocks - 1) // n_blocks
    for bi in range(n_blocks):
        r0 = min(n_rows, bi * size)
        r1 = min(n_rows, r0 + size)
        _scan_block(indptr, indices, data, col_token, n_tokens, has_dups, r0, r1, totals,
                    in_vocab, n_unique, stats, bi)


@njit(nogil=True, cache=True)
def _encode_block(indptr, indices, data, obs_n, col_token, inv_median, has_dups, max_genes,
                  slots, out, lengths, totals, in_vocab, n_unique, stats, bos, eos, r0, r1, bi):
    """Rank value encoding of rows ``r0:r1`` (one pass over the entries, then the sort)."""
    base = indptr[0]
    n_tok = inv_median.shape[0]
    cap = 1
    for r in range(r0, r1):
        cap = max(cap, indptr[r + 1] - indptr[r])
    vals = np.empty(cap, np.float64)
    keys = vals.view(np.uint64)
    toks = np.empty(cap, np.int32)
    tmp_keys = np.empty(cap, np.uint64)
    tmp_toks = np.empty(cap, np.int32)
    hist = np.empty((8, 256), np.int64)
    counts = np.empty((1 << _BUCKETS_LOG2_PER_ELEMENT) * cap + 2, np.int64)
    acc = np.zeros(n_tok if has_dups else 0, np.float64)
    seen = np.full(n_tok if has_dups else 0, -1, np.int64)
    use_obs = obs_n.shape[0] > 0
    n_neg = 0
    n_bad = 0
    n_frac = 0
    vmax = 0.0
    first_frac = 0.0
    for r in range(r0, r1):
        tot = 0.0
        voc = 0.0
        m = 0
        for j in range(indptr[r] - base, indptr[r + 1] - base):
            x = np.float64(data[j])
            ok, n_neg, n_bad, n_frac, vmax, first_frac = _check_count(
                x, n_neg, n_bad, n_frac, vmax, first_frac
            )
            if not ok:
                continue
            tot += x
            t = col_token[indices[j]]
            if t >= 0 and x != 0:
                voc += x
                if has_dups:
                    if seen[t] != r:
                        seen[t] = r
                        acc[t] = x
                        toks[m] = t
                        m += 1
                    else:
                        acc[t] += x
                else:
                    vals[m] = x
                    toks[m] = t
                    m += 1
        totals[r] = tot
        in_vocab[r] = voc
        n_unique[r] = m
        n_counts = obs_n[r] if use_obs else tot
        c = 1.0 / n_counts if n_counts != 0 else np.inf  # a cell without counts has m == 0
        # the official tokenizer's operations: X * (1 / n_counts) * 10_000 * (1 / median)
        if has_dups:
            for i in range(m):
                t = toks[i]
                vals[i] = ((acc[t] * c) * 10000.0) * inv_median[t]
                keys[i] = ~keys[i]
        else:
            for i in range(m):
                vals[i] = ((vals[i] * c) * 10000.0) * inv_median[toks[i]]
                keys[i] = ~keys[i]  # positive floats: bit order == value order; descending
        if _sort_keys(keys, toks, tmp_keys, tmp_toks, hist, counts, m):
            st = tmp_toks
        else:
            st = toks
        o = slots[r]
        n_out = min(m, max_genes)
        out[o] = bos
        for i in range(n_out):
            out[o + 1 + i] = st[i]
        out[o + 1 + n_out] = eos
        lengths[r] = n_out + 2
    stats[bi, 0], stats[bi, 1], stats[bi, 2] = n_neg, n_bad, n_frac
    stats[bi, 3], stats[bi, 4] = vmax, first_frac


def encode_csr(indptr, indices, data, obs_n, col_token, inv_median, has_dups, max_genes, slots,
               out, lengths, totals, in_vocab, n_unique, stats, bos, eos, n_blocks):
    """Rank value encoding of every row of a CSR chunk, in one pass over the entries.

    Row ``r`` is written at ``out[slots[r]:]`` as ``<bos> tokens… <eos>`` (``lengths[r]``
    tokens, at most ``max_genes`` genes); ``slots`` must leave room for
    ``min(row nnz, max_genes) + 2`` tokens per row (see :func:`compact_rows`). ``n_counts`` is
    ``obs_n[r]``, or the row's total when ``obs_n`` is empty. Also writes per row ``totals``
    (all genes), ``in_vocab`` (vocabulary genes) and ``n_unique`` (distinct vocabulary genes
    detected), and per block ``stats = (n_negative, n_not_finite, n_non_integer, max,
    first_non_integer)`` for the caller to validate before using the tokens. Rows are split into
    ``n_blocks`` blocks ranked in parallel, each with its own scratch buffers.
    """
    _run(_encode_csr_parallel, _encode_csr_serial, indptr, indices, data, obs_n, col_token,
         inv_median, has_dups, max_genes, slots, out, lengths, totals, in_vocab, n_unique, stats,
         bos, eos, n_blocks)


@njit(parallel=True, nogil=True, cache=True)
def _encode_csr_parallel(indptr, indices, data, obs_n, col_token, inv_median, has_dups,
                         max_genes, slots, out, lengths, totals, in_vocab, n_unique, stats, bos,
                         eos, n_blocks):
    n_rows = indptr.shape[0] - 1
    size = (n_rows + n_blocks - 1) // n_blocks
    for bi in prange(n_blocks):
        r0 = min(n_rows, bi * size)
        r1 = min(n_rows, r0 + size)
        _encode_block(indptr, indices, data, obs_n, col_token, inv_median, has_dups, max_genes,
                      slots, out, lengths, totals, in_vocab, n_unique, stats, bos, eos, r0, r1,
                      bi)


@njit(nogil=True, cache=True)
def _encode_csr_serial(indptr, indices, data, obs_n, col_token, inv_median, has_dups,
                       max_genes, slots, out, lengths, totals, in_vocab, n_unique, stats, bos,
                       eos, n_blocks):
    n_rows = indptr.shape[0] - 1
    size = (n_rows + n_blocks - 1) // n_blocks
    for bi in range(n_blocks):
        r0 = min(n_rows, bi * size)
        r1 = min(n_rows, r0 + size)
        _encode_block(indptr, indices, data, obs_n, col_token, inv_median, has_dups, max_genes,
                      slots, out, lengths, totals, in_vocab, n_unique, stats, bos, eos, r0, r1,
                      bi)


def compact_rows(src, slots, lengths, offsets, dst):
    """Copy row ``r`` from ``src[slots[r]:slots[r] + lengths[r]]`` to ``dst[offsets[r]:]``."""
    _run(_compact_rows_parallel, _compact_rows_serial, src, slots, lengths, offsets, dst)


@njit(parallel=True, nogil=True, cache=True)
def _compact_rows_parallel(src, slots, lengths, offsets, dst):
    n = lengths.shape[0]
    for r in prange(n):
        a = slots[r]
        o = offsets[r]
        for i in range(lengths[r]):
            dst[o + i] = src[a + i]


@njit(nogil=True, cache=True)
def _compact_rows_serial(src, slots, lengths, offsets, dst):
    n = lengths.shape[0]
    for r in range(n):
        a = slots[r]
        o = offsets[r]
        for i in range(lengths[r]):
            dst[o + i] = src[a + i]


def pad_rows(flat, offsets, out, row0):
    """Copy flat rows ``flat[offsets[r]:offsets[r + 1]]`` into ``out[row0 + r, :len]``."""
    _run(_pad_rows_parallel, _pad_rows_serial, flat, offsets, out, row0)


@njit(parallel=True, nogil=True, cache=True)
def _pad_rows_parallel(flat, offsets, out, row0):
    n = offsets.shape[0] - 1
    for r in prange(n):
        o = offsets[r]
        for i in range(offsets[r + 1] - o):
            out[row0 + r, i] = flat[o + i]


@njit(nogil=True, cache=True)
def _pad_rows_serial(flat, offsets, out, row0):
    n = offsets.shape[0] - 1
    for r in range(n):
        o = offsets[r]
        for i in range(offsets[r + 1] - o):
            out[row0 + r, i] = flat[o + i]


@njit(nogil=True, cache=True)
def normalised_values_csr(indptr, indices, data, n_counts, col_gene, pos, out):
    """Scatter the non-zero ``x / n_counts * 10000`` of each gene into its segment of ``out``.

    ``pos[g]`` is the next free slot of gene ``g`` in ``out`` (advanced in place).
    """
    n_rows = indptr.shape[0] - 1
    base = indptr[0]
    for r in range(n_rows):
        n = n_counts[r]
        for j in range(indptr[r] - base, indptr[r + 1] - base):
            g = col_gene[indices[j]]
            x = np.float64(data[j])
            if g >= 0 and x != 0:
                p = pos[g]
                out[p] = x / n * 10000.0
                pos[g] = p + 1


@njit(nogil=True, cache=True)
def histogram_csr(indptr, indices, data, n_counts, col_gene, lo, inv_width, hist):
    """Add the non-zero ``log10(x / n_counts * 10000)`` of each gene to its row of ``hist``."""
    n_rows = indptr.shape[0] - 1
    n_bins = hist.shape[1]
    base = indptr[0]
    for r in range(n_rows):
        n = n_counts[r]
        for j in range(indptr[r] - base, indptr[r + 1] - base):
            g = col_gene[indices[j]]
            x = np.float64(data[j])
            if g >= 0 and x != 0:
                b = int(np.floor((np.log10(x / n * 10000.0) - lo) * inv_width))
                b = min(max(b, 0), n_bins - 1)
                hist[g, b] += 1


@njit(nogil=True, cache=True)
def _select(a, k):
    """Partially order ``a`` in place so that ``a[k]`` is its k-th smallest (quickselect)."""
    lo = 0
    hi = a.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # median of three as pivot
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


def segment_medians(values, starts, out):
    """``out[g]`` = median of ``values[starts[g]:starts[g + 1]]``, as :func:`numpy.median`.

    Segments are reordered in place; empty segments give nan.
    """
    _run(_segment_medians_parallel, _segment_medians_serial, values, starts, out)


@njit(nogil=True, cache=True)
def _segment_median(values, s, e):
    k = e - s
    if k == 0:
        return np.nan
    seg = values[s:e]
    h = (k - 1) // 2
    _select(seg, h)
    lo = seg[h]
    if k % 2 == 1:
        return lo
    hi = seg[h + 1]
    for i in range(h + 2, k):
        if seg[i] < hi:
            hi = seg[i]
    return 0.5 * (lo + hi)


@njit(parallel=True, nogil=True, cache=True)
def _segment_medians_parallel(values, starts, out):
    n = starts.shape[0] - 1
    for g in prange(n):
        out[g] = _segment_median(values, starts[g], starts[g + 1])


@njit(nogil=True, cache=True)
def _segment_medians_serial(values, starts, out):
    n = starts.shape[0] - 1
    for g in range(n):
        out[g] = _segment_median(values, starts[g], starts[g + 1])


@njit(nogil=True, cache=True)
def _hist_value_at(hist, g, k, lo, width):
    """Value of the element of 0-based rank ``k`` in row ``g`` of a log-histogram.

    Elements are placed uniformly (in log scale) inside their bin.
    """
    cum = 0
    for b in range(hist.shape[1]):
        c = hist[g, b]
        if c > 0 and cum + c > k:
            return 10.0 ** (lo + (b + (k - cum + 0.5) / c) * width)
        cum += c
    return np.nan


def histogram_medians(hist, lo, width, out):
    """Median of each gene's log-histogram (mean of the two middle elements when even)."""
    _run(_histogram_medians_parallel, _histogram_medians_serial, hist, lo, width, out)


@njit(nogil=True, cache=True)
def _histogram_median(hist, g, lo, width):
    total = 0
    for b in range(hist.shape[1]):
        total += hist[g, b]
    if total == 0:
        return np.nan
    a = _hist_value_at(hist, g, (total - 1) // 2, lo, width)
    if total % 2 == 1:
        return a
    return 0.5 * (a + _hist_value_at(hist, g, total // 2, lo, width))


@njit(parallel=True, nogil=True, cache=True)
def _histogram_medians_parallel(hist, lo, width, out):
    for g in prange(hist.shape[0]):
        out[g] = _histogram_median(hist, g, lo, width)


@njit(nogil=True, cache=True)
def _histogram_medians_serial(hist, lo, width, out):
    for g in range(hist.shape[0]):
        out[g] = _histogram_median(hist, g, lo, width)
