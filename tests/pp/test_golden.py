"""Parity with the official MaxToki tokenizer on real cells, in every clone.

``tests/data/golden_pbmc.h5ad`` holds the first 300 cells of the reference golden set and
``tests/data/golden_pbmc_tokens.npz`` the official tokenizer's output for them (see
``tests/data/README.md``); the vocabulary is the packaged ``GeneVocab.official()``. Nothing here
needs ``../shared``, except the two tests that check the subset against the full reference set.
"""

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import maxtoki as mt
from maxtoki._keys import read_tokens
from maxtoki.pp import GeneVocab, TokenStore

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN_H5AD = DATA / "golden_pbmc.h5ad"
GOLDEN_TOKENS = DATA / "golden_pbmc_tokens.npz"
N_CELLS = 300

REF = Path(__file__).resolve().parents[3] / "shared" / "reference"
FULL = REF / "golden" / "celltypist_pbmc"
needs_full = pytest.mark.skipif(
    not (FULL / "expected_tokens.npz").is_file(),
    reason=f"the full reference golden set is not at {FULL} (../shared/reference)",
)


def split(tokens, lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [tokens[offsets[i] : offsets[i + 1]].astype(np.int64) for i in range(len(lengths))]


def as_list(adata, key="maxtoki_tokens"):
    T = adata.obsm[key]
    L = adata.obs[key.replace("_tokens", "_n_tokens")].to_numpy()
    return [T[i, : L[i]].astype(np.int64) for i in range(adata.n_obs)]


def assert_golden(got, expected):
    assert len(got) == len(expected)
    bad = [
        i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if not np.array_equal(g, e)
    ]
    assert not bad, f"{len(bad)} cells differ from the official tokenizer, e.g. cell {bad[:5]}"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN_TOKENS) as z:
        cell_id, lengths, tokens = z["cell_id"], z["lengths"], z["tokens"]
    adata = ad.read_h5ad(GOLDEN_H5AD)
    assert adata.n_obs == len(cell_id) == N_CELLS
    assert (adata.obs["cell_id"].to_numpy() == cell_id).all()
    return GeneVocab.official(), adata, split(tokens, lengths)


def test_golden_set_is_what_the_readme_says(golden):
    _, adata, expected = golden
    assert sp.issparse(adata.X) and adata.X.format == "csr"
    assert adata.X.dtype == np.uint16
    assert adata.obs["cell_id"].tolist() == [f"Cell_{i}" for i in range(1, N_CELLS + 1)]
    # only all-zero gene columns were dropped: X still sums to the cells' totals
    totals = np.asarray(adata.X.sum(axis=1, dtype=np.float64)).ravel()
    np.testing.assert_allclose(totals, adata.obs["n_counts"], rtol=0, atol=1e-6)
    assert (np.diff(sp.csc_matrix(adata.X).indptr) > 0).all()
    assert all(e[0] == 2 and e[-1] == 3 for e in expected)


def test_golden_in_memory(golden):
    vocab, adata, expected = golden
    a = adata.copy()
    assert mt.pp.tokenize(a, vocab=vocab, max_len=4096) is None
    assert_golden(as_list(a), expected)
    assert a.obsm["maxtoki_tokens"].dtype == np.uint16
    assert a.obsm["maxtoki_tokens"].shape[1] == max(len(e) for e in expected)
    np.testing.assert_array_equal(a.obs["maxtoki_n_tokens"], [len(e) for e in expected])
    info = a.uns["maxtoki_tokens"]
    assert info["vocab_hash"] == vocab.hash and info["vocab_size"] == 20_275
    assert info["n_genes_in_vocab"] == int((a.var["maxtoki_token_id"] >= 0).sum()) > 5_000
    assert 0.85 < info["frac_counts_in_vocab"] <= 1  # 0.89 in these cells


def test_golden_backed_chunks_dense_csc(golden):
    vocab, adata, expected = golden
    backed = ad.read_h5ad(GOLDEN_H5AD, backed="r")
    try:
        mt.pp.tokenize(backed, vocab=vocab, chunk_size=97)  # 4 chunks, read in a thread
        assert_golden(as_list(backed), expected)
    finally:
        backed.file.close()
    dense = adata.copy()
    dense.X = dense.X.toarray()
    mt.pp.tokenize(dense, vocab=vocab, chunk_size=200)
    assert_golden(as_list(dense), expected)
    csc = adata.copy()
    csc.X = sp.csc_matrix(csc.X).astype(np.int64)
    mt.pp.tokenize(csc, vocab=vocab)
    assert_golden(as_list(csc), expected)


def test_golden_token_store(golden, tmp_path):
    vocab, _, expected = golden
    store = mt.pp.tokenize_corpus(
        GOLDEN_H5AD, tmp_path / "store", vocab=vocab, chunk_size=64, obs_keys=["cell_id"]
    )
    assert isinstance(store, TokenStore) and store.complete
    assert len(store) == N_CELLS and store.n_shards == 5  # 64 × 4 + 44
    assert_golden([store[i].astype(np.int64) for i in range(len(store))], expected)
    np.testing.assert_array_equal(store.lengths, [len(e) for e in expected])
    assert store.obs["cell_id"].tolist() == [f"Cell_{i}" for i in range(1, N_CELLS + 1)]
    assert store.vocab.hash == vocab.hash
    reopened = TokenStore(tmp_path / "store")
    assert_golden(
        [t.astype(np.int64) for t in reopened.get([0, 150, 299])],
        [expected[0], expected[150], expected[299]],
    )


def test_golden_truncation(golden):
    """A shorter model input keeps the top of the official ranking (no ties in this set)."""
    vocab, adata, expected = golden
    a = adata.copy()
    mt.pp.tokenize(a, vocab=vocab, max_len=512, chunk_size=128)
    truncated = [np.concatenate([[2], e[1:-1][:510], [3]]) for e in expected]
    assert sum(len(e) > 512 for e in expected) > 250  # most cells are cut
    assert_golden(as_list(a), truncated)


def test_golden_temporal_vocab(golden):
    vocab, adata, expected = golden
    temporal = GeneVocab.official(temporal=True)
    a = adata[:60].copy()
    mt.pp.tokenize(a, vocab=temporal)
    assert_golden(as_list(a), expected[:60])
    a = a[:8].copy()
    assert a.uns["maxtoki_tokens"]["vocab_hash"] == temporal.hash
    # same genes, ids and medians: tokens of either vocabulary serve models of both
    assert temporal.encoding_hash == vocab.encoding_hash and temporal.hash != vocab.hash
    got = read_tokens(a, "maxtoki_tokens", vocab).matrix
    np.testing.assert_array_equal(got, a.obsm["maxtoki_tokens"])
    other = GeneVocab.from_genes({g: m * 2 for g, m in vocab.gene_medians.items()})
    with pytest.raises(ValueError, match="re-run `mt"):
        read_tokens(a, "maxtoki_tokens", other)


# --- the in-repo subset against the full reference set (only where ../shared exists) ---------
@pytest.fixture(scope="module")
def full():
    with np.load(FULL / "expected_tokens.npz") as z:
        cell_id, lengths, tokens = z["cell_id"], z["lengths"], z["tokens"]
    adata = ad.read_h5ad(FULL / "counts.h5ad")
    assert (adata.obs["cell_id"].to_numpy() == cell_id).all()
    return adata, cell_id, lengths, tokens


@needs_full
def test_subset_equals_the_reference_set(full):
    """The in-repo files are the first 300 cells of the reference files, so they can be trusted."""
    adata, cell_id, lengths, tokens = full
    with np.load(GOLDEN_TOKENS) as z:
        np.testing.assert_array_equal(z["cell_id"], cell_id[:N_CELLS])
        np.testing.assert_array_equal(z["lengths"], lengths[:N_CELLS])
        np.testing.assert_array_equal(z["tokens"], tokens[: lengths[:N_CELLS].sum()])
    sub = ad.read_h5ad(GOLDEN_H5AD)
    ref = adata[:N_CELLS]
    assert sub.obs_names.tolist() == ref.obs_names.tolist()
    np.testing.assert_array_equal(sub.obs["n_counts"], ref.obs["n_counts"])  # bit for bit
    np.testing.assert_array_equal(sub.obs["cell_id"], ref.obs["cell_id"])
    # every kept column is the reference column; every dropped one is zero in these cells
    pos = ref.var_names.get_indexer(sub.var_names)
    assert (pos >= 0).all() and (np.diff(pos) > 0).all()
    np.testing.assert_array_equal(sub.var["ensembl_id"], ref.var["ensembl_id"].to_numpy()[pos])
    X = sp.csr_matrix(ref.X)
    assert (sp.csr_matrix(sub.X, dtype=X.dtype) != X[:, pos]).nnz == 0
    dropped = np.setdiff1d(np.arange(ref.n_vars), pos)
    assert X[:, dropped].nnz == 0


@needs_full
def test_full_reference_set(full):
    """All 559 cells, 36 of them cut at 4,096 tokens."""
    adata, _, lengths, tokens = full
    expected = split(tokens, lengths)
    assert sum(len(e) == 4096 for e in expected) > 0
    a = adata.copy()
    mt.pp.tokenize(a, vocab=GeneVocab.official())
    assert_golden(as_list(a), expected)
