"""Concurrency: DataLoader workers (fork, spawn), Python threads, tokenization after fork.

Every run that could deadlock has a timeout (a DataLoader ``timeout``, or a subprocess with
``timeout=`` for threads and forks, which also contains a hard abort of the interpreter by
Numba's threading layer). Results must equal the serial, single-process ones exactly.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import maxtoki as mt
from maxtoki.pp import GeneVocab, TokenStore
from maxtoki.train import ArrayTokens, CellDataset, Collator, PromptDataset

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
import train_data as data  # noqa: E402

N_GENES = 40
TIMEOUT = 180  # seconds; far above the few seconds each run needs


def _gene(i: int) -> str:
    return f"ENSG{i:011d}"


def _vocab() -> GeneVocab:
    medians = np.random.default_rng(3).choice([0.5, 1.0, 1.105969, 2.0], N_GENES)
    return GeneVocab.from_genes(
        {_gene(i): float(m) for i, m in enumerate(medians)}, time_range=(-400, 400)
    )


def _adata(seed: int, n: int = 300) -> ad.AnnData:
    """``n`` cells (≥ 256: the parallel kernels run), many ties, ages and groups."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.2, (n, N_GENES)).astype(np.float32)
    X[::17] = 0
    a = ad.AnnData(
        sp.csr_matrix(X),
        var=pd.DataFrame({"ensembl_id": [_gene(i) for i in range(N_GENES)]},
                         index=[f"g{i}" for i in range(N_GENES)]),
    )  # fmt: skip
    a.obs_names = [f"s{seed}_c{i}" for i in range(n)]
    a.obs["age_months"] = rng.choice([120.0, 240.0, 360.0, 480.0], n)
    a.obs["cell_type"] = rng.choice(["A", "B"], n)
    return a


def _tokens(a: ad.AnnData, vocab: GeneVocab) -> np.ndarray:
    b = mt.pp.tokenize(a, vocab=vocab, min_overlap=0, chunk_size=128, copy=True)
    return np.asarray(b.obsm["maxtoki_tokens"])


# --- DataLoader workers ---------------------------------------------------------------------------
class TokenizingDataset:
    """Tokenizes a slice of cells inside ``__getitem__`` (tokenization in the worker)."""

    def __init__(self, adata: ad.AnnData, vocab: GeneVocab, n_items: int = 6):
        self.adata, self.vocab = adata, vocab
        self.bounds = np.linspace(0, adata.n_obs, n_items + 1).astype(int)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        s, e = self.bounds[i], self.bounds[i + 1]
        mt.settings.verbosity = 0
        return _tokens(self.adata[s:e].copy(), self.vocab)


class AllDatasets:
    """Item ``i`` of each dataset, so that one DataLoader exercises them all."""

    def __init__(self, **datasets):
        self.datasets = datasets
        self.n = min(len(d) for d in datasets.values())

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: d[i] for k, d in self.datasets.items()}


class CollateAll:
    def __init__(self, collators: dict):
        self.collators = collators

    def __call__(self, items: list[dict]) -> dict:
        return {k: c([item[k] for item in items]) for k, c in self.collators.items()}


def _collate_arrays(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in arrays]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency")
    vocab = _vocab()
    mt.settings.verbosity = 0
    try:
        adatas = [_adata(seed) for seed in range(2)]
        for k, a in enumerate(adatas):
            a.write_h5ad(root / f"f{k}.h5ad")
        store = mt.pp.tokenize_corpus(
            [root / "f0.h5ad", root / "f1.h5ad"], root / "store", vocab=vocab, chunk_size=100,
            obs_keys=["age_months", "cell_type"], min_overlap=0,
        )  # fmt: skip
        obs = store.obs.set_index("obs_name")
        obs.index.name = None
        prompts = mt.pp.trajectories(ad.AnnData(obs=obs), groupby="cell_type", n_prompts=64)
        # the parent has run the parallel kernels: forked workers inherit a started thread pool
        tokens = _tokens(adatas[0], vocab)
    finally:
        mt.settings.verbosity = 2
    lengths = (tokens > 0).sum(axis=1)
    array_tokens = ArrayTokens(tokens, lengths, names=adatas[0].obs_names)
    dataset = AllDatasets(
        prompts_array=data.dataset(),
        cells_array=CellDataset(array_tokens, max_length=32),
        prompts_store=PromptDataset(prompts, store, max_length=256, max_genes_per_cell=20),
        cells_store=CellDataset(store, max_length=48),
        tokenized_in_worker=TokenizingDataset(adatas[1], vocab),
    )
    collate = CollateAll(
        {
            "prompts_array": Collator(),
            "cells_array": Collator(),
            "prompts_store": Collator(pack=True, max_length=512),
            "cells_store": Collator(),
            "tokenized_in_worker": _collate_arrays,
        }
    )
    return dataset, collate


def _batches(dataset, collate, **kw) -> list:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, shuffle=False, collate_fn=collate, **kw
    )
    return list(loader)


def _assert_same(a, b, where="batch") -> None:
    if isinstance(a, torch.Tensor):  # exactly equal, NaN where NaN
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_batches(datasets, context):
    if context not in torch.multiprocessing.get_all_start_methods():
        pytest.skip(f"no {context} start method here")
    dataset, collate = datasets
    serial = _batches(dataset, collate, num_workers=0)
    assert len(serial) == 3
    workers = _batches(
        dataset, collate, num_workers=2, multiprocessing_context=context, timeout=TIMEOUT
    )
    _assert_same(serial, workers)


def test_token_store_pickles_without_its_memory_maps(datasets):
    """Workers get the store's path, not a copy of every shard it had opened."""
    dataset, _ = datasets
    store = TokenStore(dataset.datasets["cells_store"]._cells.tokens.path)
    fresh = len(pickle.dumps(store))
    first = [store[i].copy() for i in range(len(store))]  # opens every shard
    assert len(store.obs) == len(store.lengths) == len(first)  # cached columns
    assert len(pickle.dumps(store)) == fresh
    clone = pickle.loads(pickle.dumps(store))
    for i in range(len(store)):
        np.testing.assert_array_equal(clone[i], first[i])


# --- threads and forks, in a subprocess each ------------------------------------------------
SCRIPT_HEAD = textwrap.dedent(
    f"""
    import os, sys, json
    import numpy as np
    sys.path[:0] = [{str(Path(__file__).resolve().parent)!r}, {str(TESTS)!r}]
    import maxtoki as mt
    from test_concurrency import _adata, _tokens, _vocab
    mt.settings.verbosity = 0
    mt.settings.n_jobs = 2  # the parallel kernels run even on a one-core machine
    vocab = _vocab()
    adatas = [_adata(seed) for seed in range(4)]
    """
)
THREADS = textwrap.dedent(
    """
    from concurrent.futures import ThreadPoolExecutor, wait
    from maxtoki.pp import TokenStore
    serial = [_tokens(a, vocab) for a in adatas]
    medians = mt.pp.gene_medians(adatas[0])
    with ThreadPoolExecutor(6) as pool:
        futs = [pool.submit(_tokens, adatas[i % 4], vocab) for i in range(12)]
        futs += [pool.submit(mt.pp.gene_medians, adatas[0]) for _ in range(3)]
        done, pending = wait(futs, timeout=120)
        if pending:
            print("DEADLOCK", flush=True)
            os._exit(3)
    for i, f in enumerate(futs[:12]):
        assert np.array_equal(f.result(), serial[i % 4]), i
    for f in futs[12:]:
        assert f.result().equals(medians)
    # concurrent reads of one token store
    out = sys.argv[1]
    for k, a in enumerate(adatas):
        a.write_h5ad(f"{out}/t{k}.h5ad")
    store = mt.pp.tokenize_corpus([f"{out}/t{k}.h5ad" for k in range(4)], f"{out}/store",
                                  vocab=vocab, chunk_size=50, min_overlap=0)
    expected = [store[i] for i in range(len(store))]
    shared = TokenStore(f"{out}/store")
    def read(k):
        idx = np.random.default_rng(k).permutation(len(shared))
        return all(np.array_equal(shared[int(i)], expected[int(i)]) for i in idx)
    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(read, k) for k in range(8)]
        done, pending = wait(futs, timeout=120)
        assert not pending and all(f.result() for f in futs)
    print("OK", len(futs), flush=True)
    """
)
FORKS = textwrap.dedent(
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    expected = [_tokens(a, vocab) for a in adatas]  # starts the parallel kernels' thread pool
    ctx = mp.get_context("fork")

    def child(q, k):
        q.put((k, _tokens(adatas[k], vocab).tolist()))

    def grandchild_parent(q):
        p = ctx.Process(target=child, args=(q, 3))
        p.start()
        p.join(120)
        os._exit(p.exitcode)

    q = ctx.Queue()
    procs = [ctx.Process(target=child, args=(q, k)) for k in range(2)]
    procs.append(ctx.Process(target=grandchild_parent, args=(q,)))
    for p in procs:
        p.start()
    got = dict(q.get(timeout=120) for _ in range(3))
    for p in procs:
        p.join(120)
        assert p.exitcode == 0, p.exitcode
    for k, tokens in got.items():
        assert np.array_equal(np.array(tokens), expected[k]), k
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(_tokens, adatas, [vocab] * 4, timeout=120))
    assert all(np.array_equal(r, e) for r, e in zip(results, expected))
    # the parent still runs the parallel kernels
    assert np.array_equal(_tokens(adatas[0], vocab), expected[0])
    print("OK", len(got) + len(results), flush=True)
    """
)


def _run(script: str, tmp_path: Path, layer: str | None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT_HEAD + script, str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=str(tmp_path),
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"deadlock: no answer in {TIMEOUT} s\n{e.stderr}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "OK" in proc.stdout
    return proc.stdout


def _layers() -> list:
    """Numba's threading layers: its default choice (OpenMP here), the ``workqueue`` fallback
    (not thread-safe, Numba's only layer without OpenMP or TBB) and TBB when installed."""
    import importlib

    params = [pytest.param(None, id="default"), pytest.param("workqueue", id="workqueue")]
    try:  # the module imports only when the TBB library loads
        importlib.import_module("numba.np.ufunc.tbbpool")
    except ImportError:
        params.append(pytest.param("tbb", marks=pytest.mark.skip(reason="no tbb layer")))
    else:
        params.append(pytest.param("tbb", id="tbb"))
    return params


@pytest.mark.slow
@pytest.mark.parametrize("layer", _layers())
def test_tokenize_from_many_threads(tmp_path, layer):
    _run(THREADS, tmp_path, layer)


@pytest.mark.slow
@pytest.mark.parametrize("layer", _layers())
def test_tokenize_after_fork(tmp_path, layer):
    _run(FORKS, tmp_path, layer)
