"""Rank value encoding: ``mt.pp.tokenize`` vs the official per-cell approach, same run.

``python -m benchmarks.tokenize [--cells N] [--quick]`` (default: 100,000 cells, then 1,000,000)
writes (once, cached under ``benchmarks/data/``) an h5ad of N cells × 20,000 genes with ~2,000
detected genes per cell and real Ensembl IDs from the official vocabulary (19,000 vocabulary
genes, 1,000 outside it), then measures

(a) the ranking kernel alone (cells/s, in memory): ``encode_chunk`` (scan + Numba ranking) vs
    NumPy per cell (normalise, ``np.argsort(-values)``, index the tokens), as ``rank_genes``;
(b) end to end from the file on disk, each in its own subprocess (cells/s and peak RSS:
    ``VmHWM`` of ``/proc/self/status``, as ``resource.getrusage().ru_maxrss`` is inherited
    across fork/exec on Linux and would report the parent's size): ``mt.pp.tokenize`` on the
    backed AnnData, ``mt.pp.tokenize_corpus`` into a token store, and a faithful
    re-implementation of the official ``TranscriptomeTokenizer`` (read the whole file, its
    ``sum_ensembl_ids`` check, chunks of 512 cells normalised with SciPy, ``np.argsort`` per
    cell, Python lists, a Hugging Face
    ``datasets.Dataset`` with the official ``format_cell_features`` map, ``save_to_disk``) — the
    last only up to 200,000 cells (it holds the whole matrix in memory);
(c) token storage: bytes per stored token.

Needs ``datasets`` for the official baseline (``pip install datasets``; a benchmark-only optional
dependency); without it the baseline stops at the Python lists (marked in the setting).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
N_GENES = 20_000
N_VOCAB_GENES = 19_000
# skewed draws with replacement, 1,300–3,020 per cell → ~2,000 distinct genes per cell on average
DRAWS_MIN, DRAWS_MAX = 1_300, 3_020
OFFICIAL_MAX_CELLS = 200_000  # the official approach holds the whole matrix in memory
OBSM_MAX_CELLS = 200_000  # tokenize → obsm holds n × width tokens in memory by design
TILE = 100_000  # bigger files repeat the cells of the 100,000-cell file


# --- data ------------------------------------------------------------------------------------
def load_vocab():
    """The official v1 vocabulary and medians, as shipped in the package."""
    from maxtoki.pp import GeneVocab

    return GeneVocab.official()


def dataset_path(n_cells: int) -> Path:
    """Write (once) and return the synthetic h5ad of ``n_cells`` cells."""
    path = DATA / f"synthetic_{n_cells}.h5ad"
    if path.is_file():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    gitignore = DATA / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    tmp = path.with_suffix(".tmp.h5ad")
    t0 = time.perf_counter()
    if n_cells > TILE and n_cells % TILE == 0:
        _write_tiled(tmp, dataset_path(TILE), n_cells // TILE)
    else:
        _write_synthetic(tmp, n_cells)
    os.replace(tmp, path)
    print(f"   wrote {path} ({path.stat().st_size / 2**30:.2f} GiB, "
          f"{time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    return path


def _write_tiled(path: Path, tile: Path, reps: int) -> None:
    """A big file made of ``reps`` copies of the cells of ``tile`` (fast to write; the same
    per-cell work, so throughput and memory scale as with new cells).
    """
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import read_elem, write_elem

    with h5py.File(tile, "r") as f:
        data, indices = f["X/data"][:], f["X/indices"][:]
        indptr = f["X/indptr"][:]
        obs, var = read_elem(f["obs"]), read_elem(f["var"])
    n, nnz = len(indptr) - 1, len(data)
    big_obs = pd.concat([obs] * reps)
    big_obs.index = [f"cell{i}" for i in range(n * reps)]
    ad.AnnData(obs=pd.DataFrame(index=big_obs.index), var=var).write_h5ad(path)
    with h5py.File(path, "a") as f:
        if "X" in f:
            del f["X"]
        g = f.create_group("X")
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = (n * reps, len(var))
        d = g.create_dataset("data", (nnz * reps,), dtype=data.dtype, chunks=(1 << 20,))
        ix = g.create_dataset("indices", (nnz * reps,), dtype=indices.dtype, chunks=(1 << 20,))
        for k in range(reps):
            d[k * nnz : (k + 1) * nnz] = data
            ix[k * nnz : (k + 1) * nnz] = indices
        full = np.concatenate([indptr[:-1] + k * nnz for k in range(reps)] + [[reps * nnz]])
        g.create_dataset("indptr", data=full.astype(np.int64))
        del f["obs"]
        write_elem(f, "obs", big_obs)


def _write_synthetic(path: Path, n_cells: int, chunk: int = 10_000) -> None:
    """Stream a CSR h5ad to disk chunk by chunk (bounded memory even for 10⁶ cells)."""
    import anndata as ad
    import h5py
    import pandas as pd

    from maxtoki._vocab import _OFFICIAL_MEDIANS, _read_package_json

    vocab = load_vocab()
    rng = np.random.default_rng(42)
    in_vocab = rng.choice(vocab.gene_ids, N_VOCAB_GENES, replace=False)
    vocab_set = set(vocab.gene_ids.tolist())
    # genes with an official median but no token: real Ensembl IDs outside the vocabulary
    extra = [g for g in _read_package_json(_OFFICIAL_MEDIANS) if g not in vocab_set]
    outside = list(rng.choice(extra, N_GENES - N_VOCAB_GENES, replace=False))
    ids = np.concatenate([in_vocab, outside])[rng.permutation(N_GENES)]
    popularity = rng.permutation(N_GENES)  # column of the r-th most popular gene
    lam = 0.2 + 12.0 * (1.0 - np.arange(N_GENES) / N_GENES) ** 6  # extra counts by popularity

    var = pd.DataFrame({"ensembl_id": ids}, index=[f"gene{i}" for i in range(N_GENES)])
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)])
    obs["cell_type"] = pd.Categorical(rng.choice(["T", "B", "NK", "Mono"], n_cells))
    ad.AnnData(obs=obs, var=var).write_h5ad(path)
    n_counts = np.empty(n_cells, dtype=np.float64)
    with h5py.File(path, "a") as f:
        if "X" in f:
            del f["X"]
        g = f.create_group("X")
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = (n_cells, N_GENES)
        data = g.create_dataset("data", (0,), dtype=np.float32, maxshape=(None,), chunks=(1 << 20,))
        indices = g.create_dataset("indices", (0,), dtype=np.int32, maxshape=(None,),
                                   chunks=(1 << 20,))
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        nnz = 0
        for s in range(0, n_cells, chunk):
            e = min(n_cells, s + chunk)
            ranks = (N_GENES * rng.random((e - s, DRAWS_MAX)) ** 1.6).astype(np.int64)
            n_draws = rng.integers(DRAWS_MIN, DRAWS_MAX + 1, e - s)  # cells of varying depth
            ranks[np.arange(DRAWS_MAX)[None, :] >= n_draws[:, None]] = N_GENES  # sentinel
            ranks.sort(axis=1)
            keep = np.ones(ranks.shape, dtype=bool)
            keep[:, 1:] = ranks[:, 1:] != ranks[:, :-1]
            keep &= ranks < N_GENES
            ranks = np.minimum(ranks, N_GENES - 1)
            size = rng.lognormal(0, 0.35, e - s)[:, None]
            counts = 1 + rng.poisson(lam[ranks] * size)
            row_nnz = keep.sum(axis=1)
            cols = popularity[ranks[keep]]
            vals = counts[keep].astype(np.float32)
            # sort columns within each row (canonical CSR)
            rows = np.repeat(np.arange(e - s), row_nnz)
            order = np.lexsort((cols, rows))
            cols, vals = cols[order].astype(np.int32), vals[order]
            indptr[s + 1 : e + 1] = nnz + np.cumsum(row_nnz)
            n_counts[s:e] = np.add.reduceat(vals.astype(np.float64),
                                            np.concatenate([[0], np.cumsum(row_nnz)[:-1]]))
            data.resize((nnz + len(vals),))
            indices.resize((nnz + len(vals),))
            data[nnz:] = vals
            indices[nnz:] = cols
            nnz += len(vals)
        g.create_dataset("indptr", data=indptr)
    # obs['n_counts'] (total counts, as the official tokenizer expects), known only now
    from anndata.io import read_elem, write_elem

    with h5py.File(path, "a") as f:
        obs_df = read_elem(f["obs"])
        obs_df["n_counts"] = n_counts
        del f["obs"]
        write_elem(f, "obs", obs_df)


# --- (a) the kernel alone ----------------------------------------------------------------------
def kernel_rates(path: Path, vocab, n_ours: int, n_numpy: int) -> tuple[float, float, float]:
    """cells/s of ``encode_chunk`` and of NumPy argsort per cell, and mean genes per cell."""
    import anndata as ad

    import maxtoki as mt
    from maxtoki.pp._chunks import encode_chunk, numba_threads, prepare, read_rows

    a = ad.read_h5ad(path, backed="r")
    plan = prepare(a, vocab, max_len=4096, layer=None, gene_id_key=None)
    n = min(n_ours, a.n_obs)
    X = a.X[:n]
    n_counts = a.obs["n_counts"].to_numpy()[:n]
    a.file.close()
    chunk = read_rows(X, 0, n)
    old = mt.settings.verbosity
    mt.settings.verbosity = 0
    with numba_threads():
        encode_chunk(read_rows(X, 0, 300), plan, n_counts[:300], row0=0, warned=[True])  # warm
        best, best_cpu = np.inf, np.inf
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            enc = encode_chunk(chunk, plan, n_counts, row0=0, warned=[True])
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    mt.settings.verbosity = old
    ours, ours_cpu = n / best, n / best_cpu

    # NumPy per cell, as the official rank_genes (normalise, argsort(-x), index the tokens)
    col_token = plan.col_token
    loc = np.flatnonzero(col_token >= 0)
    norm = vocab.median_per_token[col_token[loc]]
    tokens = col_token[loc]
    Xv = X[:n_numpy][:, loc]
    t0, c0 = time.perf_counter(), time.process_time()
    Xn = Xv.multiply(1.0 / n_counts[:n_numpy, None]).multiply(10_000).multiply(1.0 / norm).tocsr()
    for i in range(n_numpy):
        row = Xn.indptr[i], Xn.indptr[i + 1]
        vals = Xn.data[row[0] : row[1]]
        tokens[Xn.indices[row[0] : row[1]]][np.argsort(-vals)]
    baseline = n_numpy / (time.perf_counter() - t0)
    baseline_cpu = n_numpy / (time.process_time() - c0)
    return ours, baseline, ours_cpu, baseline_cpu, float(np.mean(enc.lengths) - 2)


# --- (b) end to end, one subprocess each --------------------------------------------------------
def _worker(kind: str, path: str, out: str) -> None:
    """Run one end-to-end variant and print a JSON line (seconds, peak RSS in MiB, extras)."""
    import maxtoki as mt

    mt.settings.verbosity = 0
    vocab = load_vocab()
    if kind in ("tokenize", "corpus"):  # load the cached kernels outside the timing
        import anndata as ad
        import pandas as pd

        tiny = ad.AnnData(np.ones((2, 2), np.float32),
                          var=pd.DataFrame({"ensembl_id": list(vocab.gene_ids[:2])},
                                           index=["a", "b"]))
        mt.pp.tokenize(tiny, vocab=vocab)
    extra: dict = {}
    t0 = time.perf_counter()
    if kind == "tokenize":
        import anndata as ad

        a = ad.read_h5ad(path, backed="r")
        mt.pp.tokenize(a, vocab=vocab)
        n = a.n_obs
        T = a.obsm["maxtoki_tokens"]
        extra = {"bytes": int(T.nbytes), "n_tokens": int(a.obs["maxtoki_n_tokens"].sum()),
                 "width": int(T.shape[1]), "dtype": T.dtype.name}
    elif kind == "corpus":
        store = mt.pp.tokenize_corpus([path], out, vocab=vocab, obs_keys=["cell_type"])
        n = len(store)
        size = sum(f.stat().st_size for f in Path(out).rglob("tokens.npy"))
        extra = {"bytes": int(size), "n_tokens": int(store.n_tokens)}
    else:
        n, extra = _official(path, vocab, out)
    seconds = time.perf_counter() - t0
    rss = peak_rss_mib()
    print(json.dumps({"kind": kind, "n": n, "seconds": seconds, "rss_mib": rss, **extra}))


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    ``/proc/self/status`` ``VmHWM`` where available: Linux's ``getrusage().ru_maxrss`` survives
    ``fork``/``exec``, so a worker started by a big parent would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _official(path: str, vocab, out: str) -> tuple[int, dict]:
    """A faithful re-implementation of the official TranscriptomeTokenizer on one file."""
    import scanpy as sc
    import scipy.sparse as sp

    gene_token_dict = vocab.token_to_id
    gene_median_dict = dict(vocab.gene_medians)
    gene_keys = list(gene_token_dict.keys())
    genelist_dict = dict(zip(gene_keys, [True] * len(gene_keys), strict=True))
    gene_mapping_dict = {k: k for k in gene_keys}
    target_sum, chunk_size, model_input_size = 10_000, 512, 4096

    adata = sc.read_h5ad(path)  # the official code reads the whole file
    # sum_ensembl_ids: no duplicated IDs here, so after its checks it returns the data
    gene_ids_in_dict = [g for g in adata.var.ensembl_id if g in gene_token_dict.keys()]
    assert len(gene_ids_in_dict) == len(set(gene_ids_in_dict))
    collapsed = [gene_mapping_dict.get(str(g).upper()) for g in adata.var.ensembl_id]
    _ = [g for g in collapsed if g in gene_token_dict.keys()]

    coding_miRNA_loc = np.where([genelist_dict.get(i, False) for i in adata.var["ensembl_id"]])[0]
    norm_factor_vector = np.array(
        [gene_median_dict[i] for i in adata.var["ensembl_id"].iloc[coding_miRNA_loc]])
    coding_miRNA_ids = adata.var["ensembl_id"].iloc[coding_miRNA_loc]
    coding_miRNA_tokens = np.array([gene_token_dict[i] for i in coding_miRNA_ids])
    filter_pass_loc = np.array([i for i in range(adata.shape[0])])
    tokenized_cells = []
    for i in range(0, len(filter_pass_loc), chunk_size):
        idx = filter_pass_loc[i : i + chunk_size]
        n_counts = adata[idx].obs["n_counts"].values[:, None]
        X_view0 = adata[idx, :].X
        X_view = X_view0[:, coding_miRNA_loc]
        X_norm = X_view / n_counts * target_sum / norm_factor_vector
        X_norm = sp.csr_matrix(X_norm)
        tokenized_cells += [
            coding_miRNA_tokens[X_norm[j].indices][np.argsort(-X_norm[j].data)]
            for j in range(X_norm.shape[0])
        ]
    n = len(tokenized_cells)
    try:
        from datasets import Dataset
    except ImportError:
        return n, {"datasets": False}

    ds = Dataset.from_dict({"input_ids": tokenized_cells})
    del tokenized_cells
    cls_id, eos_id = gene_token_dict.get("<bos>"), gene_token_dict.get("<eos>")

    def format_cell_features(example):
        example["input_ids"] = example["input_ids"][0 : model_input_size - 2]
        example["input_ids"] = np.insert(example["input_ids"], 0, cls_id)
        example["input_ids"] = np.insert(example["input_ids"], len(example["input_ids"]), eos_id)
        example["length"] = len(example["input_ids"])
        return example

    ds = ds.map(format_cell_features, num_proc=1)
    ds.save_to_disk(out)
    size = sum(f.stat().st_size for f in Path(out).rglob("*.arrow"))
    return n, {"datasets": True, "bytes": int(size),
               "n_tokens": int(np.sum(ds["length"]))}


def _run_worker(kind: str, path: Path, timeout: float = 3600) -> dict:
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        out = str(Path(tmp) / "out")
        cmd = [sys.executable, "-m", "benchmarks.tokenize", "--worker", kind, "--path", str(path),
               "--out", out]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT.parent,
                             timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- the benchmark ---------------------------------------------------------------------------
def run(quick: bool = False, n_cells: int | None = None) -> list[dict]:
    """Rows of the tokenize benchmark (``quick``: 20,000 cells; default 100,000 then 1,000,000)."""
    vocab = load_vocab()
    if n_cells or quick:
        return _run_size(n_cells or 20_000, vocab)[0]
    rows, official = _run_size(TILE, vocab)
    return rows + _run_size(10 * TILE, vocab, official_at_tile=official)[0]


def _run_size(
    n_cells: int, vocab, official_at_tile: dict | None = None
) -> tuple[list[dict], dict | None]:
    """Rows for one file size."""
    import maxtoki as mt

    path = dataset_path(n_cells)
    label = f"{n_cells:,} cells × {N_GENES:,} genes, load avg {os.getloadavg()[0]:.1f}"
    rows = []

    if official_at_tile is None:  # the kernel rows do not depend on the file size
        ours, base, ours_cpu, base_cpu, genes = kernel_rates(path, vocab, min(n_cells, 20_000),
                                                             min(n_cells, 3_000))
        threads = f"{mt.settings.n_threads} threads vs NumPy's 1"
        rows.append({"benchmark": "tokenize", "setting": f"ranking kernel alone, in memory, "
                     f"{genes:,.0f} genes/cell, {threads}, wall clock", "ours": ours,
                     "baseline": base, "unit": "cells/s", "ratio": ours / base})
        rows.append({"benchmark": "tokenize", "setting": "ranking kernel alone, per CPU-second "
                     "(independent of other load on the machine)", "ours": ours_cpu,
                     "baseline": base_cpu, "unit": "cells/CPU-s", "ratio": ours_cpu / base_cpu})

    tok = _run_worker("tokenize", path) if n_cells <= OBSM_MAX_CELLS else None
    corpus = _run_worker("corpus", path)
    official = None
    if n_cells <= OFFICIAL_MAX_CELLS:
        official = _run_worker("official", path)
    elif official_at_tile is not None:
        # the official approach reads the whole matrix into memory (~16 GB at 1M cells here):
        # its rate is per cell, so compare with its rate measured at 100,000 cells in this run
        label += f"; official rate and RSS as measured at {TILE:,} cells"
        official = official_at_tile
    off_rate = official["n"] / official["seconds"] if official else None
    off_note = "" if not official or official.get("datasets") else " (official without datasets)"
    for name, r in (("mt.pp.tokenize, backed AnnData → obsm", tok),
                    ("mt.pp.tokenize_corpus → token store", corpus)):
        if r is None:
            continue
        rate = r["n"] / r["seconds"]
        rows.append({"benchmark": "tokenize", "setting": f"end to end from h5ad, {name}, "
                     f"{label}{off_note}", "ours": rate, "baseline": off_rate, "unit": "cells/s",
                     "ratio": rate / off_rate if off_rate else None})
        rows.append({"benchmark": "tokenize", "setting": f"peak RSS, {name}, {label}",
                     "ours": r["rss_mib"], "baseline": official["rss_mib"] if official else None,
                     "unit": "MiB (lower is better)",
                     "ratio": official["rss_mib"] / r["rss_mib"] if official else None})
    if official_at_tile is not None:
        return rows, official
    for name, r in (("obsm (padded to the longest cell)", tok), ("token store", corpus)):
        if r is None:
            continue
        per = r["bytes"] / r["n_tokens"]
        base_per = (official["bytes"] / official["n_tokens"]
                    if official and official.get("bytes") else None)
        rows.append({"benchmark": "tokenize", "setting": f"storage per token, {name}",
                     "ours": per, "baseline": base_per, "unit": "bytes/token (lower is better)",
                     "ratio": base_per / per if base_per else None})
    return rows, official

def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark and print a table (or run one worker)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokenize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=None, help="number of cells (100,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 cells")
    parser.add_argument("--worker", choices=["tokenize", "corpus", "official"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.path, args.out)
        return 0
    from benchmarks.__main__ import to_markdown

    rows = run(quick=args.quick, n_cells=args.cells)
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
