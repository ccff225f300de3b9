"""mt.pp.tokenize_corpus(client=…): shards as tasks on a dask cluster of 2 worker processes.

The reference is the same call without a cluster: the store must equal it cell for cell, also
after a worker dies in the middle of writing a shard and after the driver is interrupted.
"""

from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import maxtoki as mt
from maxtoki.pp import GeneVocab, TokenStore
from maxtoki.pp import _tokenize_corpus as tc

distributed = pytest.importorskip("distributed")

OPTIONS = {"max_len": 12, "obs_keys": ["donor", "age"], "chunk_size": 8, "min_overlap": 0}


def gene_id(i: int) -> str:
    return f"ENSG{i:011d}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three small files (27 + 9 + 20 cells, 8 shards), the vocabulary and the local store."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    vocab = GeneVocab.from_genes(
        {gene_id(i): float(m) for i, m in enumerate(rng.uniform(0.5, 3, 30))}, time_range=None
    )
    paths = []
    for k, n in enumerate((27, 9, 20)):
        X = rng.poisson(0.8, (n, 25)).astype(np.float32)
        X[2] = 0  # an empty cell in every file
        var = pd.DataFrame({"ensembl_id": [gene_id(i) for i in rng.permutation(32)[:25]]},
                           index=[f"g{i}" for i in range(25)])  # fmt: skip
        a = ad.AnnData(sp.csr_matrix(X), var=var)
        a.obs_names = [f"f{k}_c{i}" for i in range(n)]
        a.obs["donor"] = [f"d{i % 3}" for i in range(n)]
        a.obs["age"] = np.arange(n) * 12
        paths.append(root / f"file{k}.h5ad")
        a.write_h5ad(paths[-1])
    with mt.settings.override(verbosity=0):
        local = mt.pp.tokenize_corpus(paths, root / "local", vocab=vocab, **OPTIONS)
    assert local.n_shards == 4 + 2 + 3
    return paths, vocab, local


def assert_same_store(got: TokenStore, expected: TokenStore) -> None:
    assert got.complete and len(got) == len(expected) and got.n_shards == expected.n_shards
    assert got.dtype == expected.dtype
    for i in range(len(expected)):
        np.testing.assert_array_equal(got[i], expected[i])
    np.testing.assert_array_equal(got.lengths, expected.lengths)
    pd.testing.assert_frame_equal(got.obs, expected.obs)
    assert got.manifest["shards"] == expected.manifest["shards"]
    assert not list(got.path.glob(".tmp-*")), "temporary folders left behind"
    assert sorted(p.name for p in (got.path / "shards").iterdir()) == sorted(
        s["name"] for s in expected.manifest["shards"]
    )


def tokenize(paths, out, vocab, client):
    with mt.settings.override(verbosity=0):
        return mt.pp.tokenize_corpus(paths, out, vocab=vocab, client=client, **OPTIONS)


def test_the_cluster_writes_the_local_store(cluster, corpus, tmp_path):
    paths, vocab, local = corpus
    assert_same_store(tokenize(paths, tmp_path / "store", vocab, cluster), local)


def test_the_active_client_is_used_by_name(cluster, corpus, tmp_path):
    paths, vocab, local = corpus
    assert_same_store(tokenize(paths, tmp_path / "store", vocab, "active"), local)


def test_a_worker_killed_while_writing_a_shard_loses_nothing(cluster, corpus, tmp_path):
    """The first shard write on the cluster leaves a partial temporary folder and kills its worker
    process; dask runs the task again on a live worker."""
    paths, vocab, local = corpus
    marker = tmp_path / "killed"

    def patch(marker: str) -> None:  # runs on every worker (pickled by value: a closure)
        from maxtoki.pp import _tokenize_corpus

        real = _tokenize_corpus._write_shard

        def write_then_die(out, name, *args, **kwargs):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # only the first write dies
            except FileExistsError:
                return real(out, name, *args, **kwargs)
            partial = out / f".tmp-{name}-{os.getpid()}"
            partial.mkdir()
            (partial / "tokens.npy").write_bytes(b"\x93NUMPY half")
            os._exit(1)

        _tokenize_corpus._write_shard = write_then_die

    before = set(cluster.scheduler_info()["workers"])
    cluster.run(patch, str(marker))
    try:
        store = tokenize(paths, tmp_path / "store", vocab, cluster)
    finally:
        cluster.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker
    assert marker.exists()
    after = set(cluster.scheduler_info()["workers"])
    assert len(before - after) == 1, "exactly one worker process died"
    assert_same_store(store, local)


def test_an_interrupted_driver_resumes_on_the_cluster(cluster, corpus, tmp_path, monkeypatch):
    paths, vocab, local = corpus
    out = tmp_path / "store"
    writes = []
    real = tc.write_manifest

    def interrupt_after_two_shards(path, manifest):
        real(path, manifest)
        writes.append(len(manifest["shards"]))
        if len(manifest["shards"]) == 2:
            raise RuntimeError("driver interrupted")

    monkeypatch.setattr(tc, "write_manifest", interrupt_after_two_shards)
    with pytest.raises(RuntimeError, match="driver interrupted"):
        tokenize(paths, out, vocab, cluster)
    monkeypatch.undo()
    partial = TokenStore(out)
    assert not partial.complete and partial.n_shards == 2
    done = {s["name"] for s in partial.manifest["shards"]}
    first = {s["name"]: (out / "shards" / s["name"] / "tokens.npy").stat().st_mtime_ns
             for s in partial.manifest["shards"]}  # fmt: skip
    store = tokenize(paths, out, vocab, cluster)
    assert_same_store(store, local)
    for name in done:  # recorded shards are not written again
        assert (out / "shards" / name / "tokens.npy").stat().st_mtime_ns == first[name]


def test_a_resumed_local_store_finishes_on_the_cluster_and_back(cluster, corpus, tmp_path):
    """A store begun without a cluster is finished by one (and a rerun without it does nothing)."""
    paths, vocab, local = corpus
    out = tmp_path / "store"
    with mt.settings.override(verbosity=0):
        mt.pp.tokenize_corpus(paths, out, vocab=vocab, **OPTIONS)
    m = tc.read_manifest(out)
    m["shards"] = m["shards"][:3]
    m["complete"] = False
    tc.write_manifest(out, m)
    assert_same_store(tokenize(paths, out, vocab, cluster), local)
    assert_same_store(tokenize(paths, out, vocab, None), local)


def test_an_error_on_a_worker_reaches_the_caller(cluster, corpus, tmp_path):
    """Every file's first chunk is below min_overlap: whichever task fails first is reported."""
    paths, vocab, _ = corpus
    with pytest.raises(ValueError, match=r"of counts of .*file\d\.h5ad \(cells 0–7\) are in vocab"):
        with mt.settings.override(verbosity=0):
            mt.pp.tokenize_corpus(paths, tmp_path / "store", vocab=vocab, client=cluster,
                                  **{**OPTIONS, "min_overlap": 0.99})  # fmt: skip
    assert not TokenStore(tmp_path / "store").complete


def test_client_active_without_a_client_says_so(corpus, tmp_path, monkeypatch):
    paths, vocab, _ = corpus

    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "get_client", no_client)
    with pytest.raises(ValueError, match=r"no dask client is active; create one first"):
        tokenize(paths, tmp_path / "store", vocab, "active")
    assert not (tmp_path / "store").exists()
