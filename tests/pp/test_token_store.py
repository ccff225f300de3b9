"""mt.pp.tokenize_corpus and mt.pp.TokenStore: shards, resume, crash safety, HF export."""

import json
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import maxtoki as mt
from maxtoki.pp import GeneVocab, TokenStore
from maxtoki.pp import _tokenize_corpus as tc


def gene_id(i):
    return f"ENSG{i:011d}"


@pytest.fixture
def vocab():
    rng = np.random.default_rng(1)
    return GeneVocab.from_genes(
        {gene_id(i): float(m) for i, m in enumerate(rng.uniform(0.5, 3, 30))}, time_range=None
    )


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths, adatas = [], []
    for k, n in enumerate((23, 7, 31)):
        X = rng.poisson(0.8, (n, 25)).astype(np.float32)
        X[3] = 0  # an empty cell in every file
        ids = [gene_id(i) for i in rng.permutation(32)[:25]]
        a = ad.AnnData(
            sp.csr_matrix(X),
            var=pd.DataFrame({"ensembl_id": ids}, index=[f"g{i}" for i in range(25)]),
        )
        a.obs_names = [f"f{k}_c{i}" for i in range(n)]
        a.obs["donor"] = [f"d{i % 3}" for i in range(n)]
        a.obs["age"] = np.arange(n) * 12
        p = tmp_path / f"file{k}.h5ad"
        a.write_h5ad(p)
        paths.append(p)
        adatas.append(a)
    return paths, adatas


def expected_tokens(adatas, vocab, max_len):
    out = []
    for a in adatas:
        b = a.copy()
        mt.pp.tokenize(b, vocab=vocab, max_len=max_len, min_overlap=0)
        T, L = b.obsm["maxtoki_tokens"], b.obs["maxtoki_n_tokens"].to_numpy()
        out += [T[i, : L[i]] for i in range(b.n_obs)]
    return out


def test_corpus_round_trip(tmp_path, files, vocab):
    paths, adatas = files
    store = mt.pp.tokenize_corpus(
        paths,
        tmp_path / "store",
        vocab=vocab,
        max_len=10,
        obs_keys=["donor", "age"],
        chunk_size=10,
        min_overlap=0,
    )
    assert isinstance(store, TokenStore) and store.complete
    assert len(store) == 23 + 7 + 31 and store.n_shards == 3 + 1 + 4
    exp = expected_tokens(adatas, vocab, 10)
    for i in range(len(store)):
        np.testing.assert_array_equal(store[i], exp[i])
    assert store[-1].tolist() == exp[-1].tolist()
    np.testing.assert_array_equal(store.lengths, [len(e) for e in exp])
    obs = store.obs
    assert obs.columns.tolist() == ["source_file", "obs_name", "donor", "age"]
    assert obs["obs_name"].tolist() == [n for a in adatas for n in a.obs_names]
    assert obs["age"].tolist() == [int(v) for a in adatas for v in a.obs["age"]]
    assert store.dtype == np.uint16 and store.vocab.hash == vocab.hash
    assert store[3].tolist() == [2, 3]  # empty cells are stored, as <bos> <eos>
    shard = tmp_path / "store" / "shards" / "f00000-r000000000000"
    toks = np.load(shard / "tokens.npy", mmap_mode="r")
    assert isinstance(toks, np.memmap) and toks.dtype == np.uint16
    assert np.load(shard / "offsets.npy").dtype == np.int64
    with pytest.raises(IndexError):
        store[len(store)]
    assert "61 cells" in repr(store)


def test_resume_skips_done_shards(tmp_path, files, vocab):
    paths, _ = files
    out = tmp_path / "store"
    mt.pp.tokenize_corpus(paths, out, vocab=vocab, chunk_size=10, min_overlap=0)
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    store = mt.pp.tokenize_corpus(paths, out, vocab=vocab, chunk_size=10, min_overlap=0)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == stamp
    assert len(store) == 61
    other = GeneVocab.from_genes({gene_id(i): 1.0 for i in range(30)}, time_range=None)
    with pytest.raises(ValueError, match="made with vocabulary"):
        mt.pp.tokenize_corpus(paths, out, vocab=other, chunk_size=10, min_overlap=0)
    with pytest.raises(ValueError, match="other parameters"):
        mt.pp.tokenize_corpus(paths, out, vocab=vocab, chunk_size=5, min_overlap=0)
    with pytest.raises(ValueError, match="other files"):
        mt.pp.tokenize_corpus(paths[:2], out, vocab=vocab, chunk_size=10, min_overlap=0)


def test_crash_mid_corpus_then_resume(tmp_path, files, vocab, monkeypatch):
    paths, adatas = files
    out = tmp_path / "store"
    real = tc._write_shard
    calls = {"n": 0}

    def crashing(out_dir, name, tokens, lengths, meta):
        calls["n"] += 1
        if calls["n"] == 5:  # die half-way through writing the 5th shard
            tmp = out_dir / f".tmp-{name}-123"
            tmp.mkdir()
            np.save(tmp / "tokens.npy", tokens[:3])
            raise KeyboardInterrupt
        real(out_dir, name, tokens, lengths, meta)

    monkeypatch.setattr(tc, "_write_shard", crashing)
    with pytest.raises(KeyboardInterrupt):
        mt.pp.tokenize_corpus(paths, out, vocab=vocab, chunk_size=10, min_overlap=0)
    partial = TokenStore(out)
    assert not partial.complete and partial.n_shards == 4 and len(partial) == 23 + 7
    # a shard renamed into place but not yet recorded is not part of the store either
    (out / "shards" / "f00002-r000000000010").mkdir()
    monkeypatch.setattr(tc, "_write_shard", real)
    store = mt.pp.tokenize_corpus(paths, out, vocab=vocab, chunk_size=10, min_overlap=0)
    assert store.complete and len(store) == 61
    assert store.obs["obs_name"].tolist() == [n for a in adatas for n in a.obs_names]
    exp = expected_tokens(adatas, vocab, 4096)
    for i in range(61):
        np.testing.assert_array_equal(store[i], exp[i])
    assert not list(out.glob(".tmp-*"))
    names = [s["name"] for s in json.loads((out / "manifest.json").read_text())["shards"]]
    assert len(names) == len(set(names)) == 8


def test_corpus_validates_before_writing(tmp_path, files, vocab):
    paths, _ = files
    out = tmp_path / "store"
    with pytest.raises(ValueError, match=r"obs has no column\(s\) \['nope'\]"):
        mt.pp.tokenize_corpus(paths, out, vocab=vocab, obs_keys=["nope"])
    assert not out.exists()
    bad = ad.read_h5ad(paths[1])
    bad.var["ensembl_id"] = [f"SYM{i}" for i in range(bad.n_vars)]
    bad.write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(ValueError, match="gene symbols"):
        mt.pp.tokenize_corpus([paths[0], tmp_path / "bad.h5ad"], out, vocab=vocab)
    assert not out.exists()
    with pytest.raises(ValueError, match="listed twice"):
        mt.pp.tokenize_corpus([paths[0], paths[0]], out, vocab=vocab)
    with pytest.raises(ValueError, match="not a token store"):
        TokenStore(tmp_path)


def test_hf_dataset_export(tmp_path, files, vocab):
    pytest.importorskip("datasets", reason="the optional `datasets` package is not installed")
    paths, adatas = files
    store = mt.pp.tokenize_corpus(
        paths[:2], tmp_path / "store", vocab=vocab, obs_keys=["donor"], chunk_size=10, min_overlap=0
    )
    ds = store.to_hf_dataset(cache_dir=str(tmp_path / "hf_cache"))
    assert len(ds) == 30
    assert {"input_ids", "length", "donor", "obs_name"} <= set(ds.column_names)
    assert ds[0]["input_ids"] == store[0].tolist() and ds[0]["length"] == len(store[0])
    assert ds[29]["donor"] == adatas[1].obs["donor"].iloc[-1]


def test_hf_export_without_datasets(tmp_path, files, vocab, monkeypatch):
    paths, _ = files
    store = mt.pp.tokenize_corpus(paths[1], tmp_path / "store", vocab=vocab, min_overlap=0)
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        store.to_hf_dataset()


def test_store_path_errors(tmp_path):
    with pytest.raises(TypeError, match="token store"):
        TokenStore(None)
    with pytest.raises(ValueError, match="tokenize_corpus"):
        TokenStore(tmp_path)
