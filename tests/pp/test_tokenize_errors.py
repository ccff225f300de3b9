"""mt.pp.tokenize on bad input: clear errors, and the AnnData left unchanged."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import maxtoki as mt
from maxtoki.pp import GeneVocab

SYMBOLS = ["CD3E", "GAPDH", "MS4A1", "LYZ", "NKG7", "CD14"]


def gene_id(i):
    return f"ENSG{i:011d}"


@pytest.fixture
def vocab():
    return GeneVocab.from_genes({gene_id(i): 1.0 + i for i in range(6)}, time_range=None)


def make(X=None, ids=None, **kw):
    X = np.array([[1, 2, 0, 4, 0, 1], [0, 3, 1, 0, 2, 5]], dtype=np.float32) if X is None else X
    ids = [gene_id(i) for i in range(X.shape[1])] if ids is None else ids
    var = pd.DataFrame({"ensembl_id": ids}, index=SYMBOLS[: X.shape[1]])
    return ad.AnnData(X=X, var=var, **kw)


def snapshot(a):
    X = a.X.toarray() if sp.issparse(a.X) else np.array(a.X, copy=True)
    return (
        X,
        a.obs.copy(),
        a.var.copy(),
        set(a.obsm.keys()),
        set(a.uns.keys()),
        {k: np.array(v.toarray() if sp.issparse(v) else v) for k, v in a.layers.items()},
    )


def assert_unchanged(a, snap):
    X, obs, var, obsm, uns, layers = snap
    now = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    np.testing.assert_array_equal(now, X)
    pd.testing.assert_frame_equal(a.obs, obs)
    pd.testing.assert_frame_equal(a.var, var)
    assert set(a.obsm.keys()) == obsm and set(a.uns.keys()) == uns
    assert set(a.layers.keys()) == set(layers)


def check(a, vocab, exc, match, **kw):
    snap = snapshot(a)
    with pytest.raises(exc, match=match):
        mt.pp.tokenize(a, vocab=vocab, **kw)
    assert_unchanged(a, snap)


def test_negative_counts(vocab):
    X = np.array([[1, -2, 0, 4, 0, 1], [0, 3, 1, 0, 2, 5]], dtype=np.float32)
    check(make(sp.csr_matrix(X)), vocab, ValueError, "negative values")


def test_nan_counts(vocab):
    X = np.array([[1, np.nan, 0, 4, 0, 1], [0, 3, 1, 0, 2, 5]], dtype=np.float32)
    check(make(X), vocab, ValueError, "NaN or infinite")


def test_negative_counts_in_a_late_chunk_leave_no_trace(vocab):
    X = np.ones((50, 6), dtype=np.float32)
    X[47, 2] = -1
    check(make(X), vocab, ValueError, "negative values", chunk_size=10)


def test_log_normalised_data(vocab):
    counts = np.random.default_rng(0).poisson(3, (20, 6)).astype(np.float32) + 1
    a = make(np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4))  # sc.pp.log1p-style
    check(a, vocab, ValueError, "looks log-normalised")
    a.layers["counts"] = np.ones(a.shape, dtype=np.float32)
    mt.pp.tokenize(a, vocab=vocab, layer="counts")  # pointing at raw counts works


def test_non_integer_large_counts_warn(vocab, capsys):
    a = make(np.array([[1.5, 200, 0, 4, 0, 1]], dtype=np.float32))
    mt.pp.tokenize(a, vocab=vocab)
    assert "non-integer values" in capsys.readouterr().err


def test_missing_gene_ids(vocab):
    ids = [gene_id(0), None, gene_id(2), gene_id(3), "", gene_id(5)]
    check(make(ids=ids), vocab, ValueError, r"2 genes have no ID in var\['ensembl_id'\]")
    ids = [gene_id(0), np.nan, gene_id(2), gene_id(3), gene_id(4), gene_id(5)]
    check(make(ids=ids), vocab, ValueError, "have no ID")


def test_symbols_instead_of_ids(vocab):
    a = make()
    del a.var["ensembl_id"]
    check(
        a,
        vocab,
        ValueError,
        r"var_names look like gene symbols \(e\.g\. 'LYZ'.*pass gene_id_key= or run "
        r"mt.pp.map_gene_ids first",
    )
    b = make(ids=SYMBOLS)
    check(b, vocab, ValueError, r"var\['ensembl_id'\] looks like gene symbols")


def test_map_gene_ids_then_tokenize(vocab):
    a = make()
    del a.var["ensembl_id"]
    table = pd.DataFrame(
        {
            "symbol": [s.lower() for s in SYMBOLS[:5]],
            "gene_id": [gene_id(i) + ".3" for i in range(5)],
        }
    )
    snap = snapshot(a)
    with pytest.raises(ValueError, match="none of the 6 gene names"):
        mt.pp.map_gene_ids(a, {"FOO": gene_id(1)})
    assert_unchanged(a, snap)
    b = mt.pp.map_gene_ids(a, table, copy=True)
    assert "ensembl_id" not in a.var
    assert b.var["ensembl_id"].tolist() == [gene_id(i) for i in range(5)] + ["CD14"]
    mt.pp.map_gene_ids(
        a, dict(zip(SYMBOLS, [gene_id(i) for i in range(6)], strict=True)), key_added="gid"
    )
    mt.pp.tokenize(a, vocab=vocab, gene_id_key="gid")
    mt.pp.tokenize(b, vocab=vocab, min_overlap=0.1)
    assert b.var["maxtoki_token_id"].tolist() == [4, 5, 6, 7, 8, -1]
    with pytest.raises(TypeError, match="mapping must be"):
        mt.pp.map_gene_ids(a, [("CD3E", gene_id(0))])


def test_unknown_gene_id_key_and_no_ids(vocab):
    check(make(), vocab, ValueError, r"var has no column 'gid'", gene_id_key="gid")
    a = ad.AnnData(np.ones((2, 3), dtype=np.float32), var=pd.DataFrame(index=["1", "2", "3"]))
    check(a, vocab, ValueError, "no Ensembl gene IDs found")


def test_zero_and_low_overlap(vocab):
    ids = [f"ENSMUSG{i:011d}" for i in range(6)]
    check(make(ids=ids), vocab, ValueError, r"none of the 6 gene IDs .* are in the vocabulary")
    # one vocabulary gene carrying 1 of 13 counts
    X = np.array([[1, 2, 0, 4, 0, 1], [0, 3, 1, 0, 2, 0]], dtype=np.float32)
    ids = [gene_id(0)] + [f"ENSG9999999999{i}" for i in range(5)]
    check(make(X, ids), vocab, ValueError, r"only 7\.1% of counts are in vocabulary genes")
    a = make(X, ids)
    mt.pp.tokenize(a, vocab=vocab, min_overlap=0.05)
    assert a.uns["maxtoki_tokens"]["frac_counts_in_vocab"] == pytest.approx(1 / 14)


def test_bad_parameters(vocab):
    a = make()
    check(a, vocab, ValueError, "max_len must be an integer ≥ 3", max_len=2)
    check(a, vocab, ValueError, r"layer 'counts' not found; available layers: \[\]", layer="counts")
    check(a, vocab, ValueError, "min_overlap", min_overlap=1.5)
    check(a, vocab, ValueError, "chunk_size", chunk_size=0)
    check(a, {"<pad>": 0}, TypeError, "vocab must be a maxtoki.pp.GeneVocab")
    with pytest.raises(TypeError, match="AnnData or MuData"):
        mt.pp.tokenize(a.X, vocab=vocab)


def test_bad_n_counts(vocab):
    a = make()
    a.obs["n_counts"] = [10.0, -1.0]
    check(a, vocab, ValueError, r"obs\['n_counts'\] has 1 negative")
    a.obs["n_counts"] = [10.0, 0.0]
    check(a, vocab, ValueError, "total count")
    mt.pp.tokenize(a, vocab=vocab, n_counts_key=None)


def test_duplicates_are_not_an_error(vocab):
    a = make(ids=[gene_id(0)] * 3 + [gene_id(1)] * 3)
    mt.pp.tokenize(a, vocab=vocab)
    assert a.uns["maxtoki_tokens"]["n_tokens_in_vocab"] == 2
