"""mt.pp.tokenize: exactness against the official tokenizer and a NumPy reference, slots."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import maxtoki as mt
from maxtoki._keys import read_tokens
from maxtoki.pp import GeneVocab

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN_H5AD = DATA / "golden_pbmc.h5ad"  # official tokens of real cells: see tests/data/README.md
GOLDEN_TOKENS = DATA / "golden_pbmc_tokens.npz"


# --- an independent NumPy reference ----------------------------------------------------------
def reference_tokens(X, gene_ids, vocab, *, n_counts=None, max_len=4096):
    """Per-cell rank value encoding written from the spec, one cell at a time in NumPy.

    Values use the official tokenizer's floating-point operations (SciPy divides a sparse matrix
    by a dense array by multiplying with the reciprocal): ((x * (1/n)) * 10000) * (1/median).
    Order: value descending, ties by ascending token id (np.lexsort).
    """
    X = np.asarray(X, dtype=np.float64)
    lookup = vocab.token_to_id
    genes = set(vocab.gene_ids.tolist())
    columns: dict[int, list[int]] = {}
    for j, g in enumerate(gene_ids):
        if g in genes:
            columns.setdefault(lookup[g], []).append(j)
    tok = np.array(sorted(columns), dtype=np.int64)
    med = vocab.median_per_token
    n = X.sum(axis=1) if n_counts is None else np.asarray(n_counts, dtype=np.float64)
    n = np.where(n > 0, n, np.nan)  # cells without counts are empty anyway
    out = []
    for i in range(X.shape[0]):
        x = np.array([X[i, columns[t]].sum() for t in tok]) if len(tok) else np.zeros(0)
        keep = x != 0
        t = tok[keep]
        v = ((x[keep] * (1.0 / n[i])) * 10000.0) * (1.0 / med[t])
        order = np.lexsort((t, -v))
        out.append(np.concatenate([[2], t[order][: max_len - 2], [3]]).astype(np.int64))
    return out


def as_list(adata, key="maxtoki_tokens"):
    T = adata.obsm[key]
    L = adata.obs[key.replace("_tokens", "_n_tokens")].to_numpy()
    return [T[i, : L[i]].astype(np.int64) for i in range(adata.n_obs)]


def gene_id(i):
    return f"ENSG{i:011d}"


def small_vocab(n_genes=12, medians=None):
    medians = np.linspace(0.5, 3.0, n_genes) if medians is None else medians
    return GeneVocab.from_genes(
        {gene_id(i): float(m) for i, m in enumerate(medians)}, time_range=None
    )


def small_adata(X, ids, **obs):
    a = ad.AnnData(
        X=X, var=pd.DataFrame({"ensembl_id": ids}, index=[f"g{j}" for j in range(len(ids))])
    )
    for k, v in obs.items():
        a.obs[k] = v
    return a


# --- the NumPy reference against the official tokenizer -------------------------------------
# (parity of mt.pp.tokenize with the official tokenizer: tests/pp/test_golden.py)
def test_reference_agrees_with_the_official_tokenizer():
    """The independent reference reproduces the official output on real cells (tests/data)."""
    with np.load(GOLDEN_TOKENS) as z:
        lengths, tokens = z["lengths"][:8], z["tokens"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    a = ad.read_h5ad(GOLDEN_H5AD)[:8]
    ref = reference_tokens(
        a.X.toarray(),
        a.var["ensembl_id"].tolist(),
        GeneVocab.official(),
        n_counts=a.obs["n_counts"].to_numpy(),
    )
    for i, r in enumerate(ref):
        np.testing.assert_array_equal(r, tokens[offsets[i] : offsets[i + 1]])


# --- property-based, against the NumPy reference ------------------------------------------------
@st.composite
def cases(draw):
    n_vocab = draw(st.integers(1, 10))
    # few distinct medians and small counts: ties are frequent
    med_pool = draw(st.sampled_from([[1.0], [0.5, 1.105969, 2.0], None]))
    if med_pool is None:
        medians = draw(st.lists(st.floats(0.05, 20.0), min_size=n_vocab, max_size=n_vocab))
    else:
        medians = draw(st.lists(st.sampled_from(med_pool), min_size=n_vocab, max_size=n_vocab))
    n_cols = draw(st.integers(1, 14))
    # var genes: vocabulary genes (repeats = duplicated IDs, summed) and genes outside it
    ids = draw(st.lists(st.integers(0, n_vocab + 2), min_size=n_cols, max_size=n_cols))
    ids[0] = draw(st.integers(0, n_vocab - 1))  # at least one vocabulary gene
    n_cells = draw(st.integers(1, 9))
    values = draw(
        st.lists(
            st.sampled_from([0, 0, 0, 1, 1, 2, 3, 7, 250]),
            min_size=n_cells * n_cols,
            max_size=n_cells * n_cols,
        )
    )
    X = np.array(values, dtype=np.float64).reshape(n_cells, n_cols)
    fmt = draw(st.sampled_from(["dense", "csr", "csc"]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
    max_len = draw(st.integers(3, n_cols + 3))
    use_layer = draw(st.booleans())
    obs_counts = draw(st.booleans())
    return dict(
        medians=medians,
        ids=[gene_id(i) for i in ids],
        X=X,
        fmt=fmt,
        dtype=dtype,
        max_len=max_len,
        use_layer=use_layer,
        obs_counts=obs_counts,
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_matches_numpy_reference(case):
    vocab = small_vocab(len(case["medians"]), case["medians"])
    X = case["X"].astype(case["dtype"])
    M = {"dense": X, "csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X)}[case["fmt"]]
    n_counts = None
    if case["obs_counts"]:
        n_counts = case["X"].sum(axis=1) + 5.0  # a stored total that differs from the row sum
    a = small_adata(np.zeros(X.shape, np.float32) if case["use_layer"] else M, case["ids"])
    if case["use_layer"]:
        a.layers["counts"] = M
    if n_counts is not None:
        a.obs["n_counts"] = n_counts
    mt.pp.tokenize(
        a,
        vocab=vocab,
        max_len=case["max_len"],
        min_overlap=0.0,
        layer="counts" if case["use_layer"] else None,
        chunk_size=4,
    )
    expected = reference_tokens(
        case["X"], case["ids"], vocab, n_counts=n_counts, max_len=case["max_len"]
    )
    got = as_list(a)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)
    T = a.obsm["maxtoki_tokens"]
    assert T.shape == (X.shape[0], max(len(e) for e in expected))  # never wider than needed
    assert (T[np.arange(T.shape[1]) >= a.obs["maxtoki_n_tokens"].to_numpy()[:, None]] == 0).all()
    np.testing.assert_array_equal(a.obs["maxtoki_empty"], [len(e) == 2 for e in expected])


def test_ties_break_by_ascending_token_id():
    vocab = small_vocab(6, [1.0] * 6)
    X = np.array([[3, 3, 3, 5, 3, 0]], dtype=np.float32)
    ids = [gene_id(i) for i in (4, 2, 0, 5, 1, 3)]  # var order unrelated to token order
    a = small_adata(X, ids)
    mt.pp.tokenize(a, vocab=vocab, min_overlap=0)
    tid = vocab.token_to_id
    tied = sorted(tid[gene_id(i)] for i in (4, 2, 0, 1))
    assert as_list(a)[0].tolist() == [2, tid[gene_id(5)], *tied, 3]


def test_many_ties_and_long_cells_use_the_radix_path():
    rng = np.random.default_rng(0)
    n_genes = 300
    vocab = small_vocab(n_genes, rng.choice([0.5, 1.0, 1.105969], n_genes))
    X = rng.choice([0, 1, 2, 3], size=(40, n_genes), p=[0.2, 0.5, 0.2, 0.1]).astype(np.float32)
    X[0] = 1  # one big tied group
    ids = [gene_id(i) for i in rng.permutation(n_genes)]
    a = small_adata(sp.csr_matrix(X), ids)
    mt.pp.tokenize(a, vocab=vocab, max_len=200, min_overlap=0)
    for g, e in zip(as_list(a), reference_tokens(X, ids, vocab, max_len=200), strict=True):
        np.testing.assert_array_equal(g, e)
    assert a.uns["maxtoki_tokens"]["n_truncated"] == 40


def test_float64_counts_that_float32_cannot_hold():
    vocab = small_vocab(4, [1.0, 2.0, 1.5, 1.0])
    X = np.array([[2.0**24 + 1, 2.0**25, 3, 0], [0.5, 1e9 + 3, 7, 2]], dtype=np.float64)
    ids = [gene_id(i) for i in range(4)]
    a = small_adata(sp.csr_matrix(X), ids)
    mt.pp.tokenize(a, vocab=vocab)
    for g, e in zip(as_list(a), reference_tokens(X, ids, vocab), strict=True):
        np.testing.assert_array_equal(g, e)


def test_slots_and_h5ad_round_trip(tmp_path):
    vocab = small_vocab()
    X = sp.csr_matrix(np.array([[1, 0, 2, 0], [0, 0, 0, 0], [5, 1, 0, 0]], dtype=np.float32))
    ids = [gene_id(0), gene_id(3), gene_id(7), "ENSG99999999999"]
    a = small_adata(X, ids)
    mt.pp.tokenize(a, vocab=vocab, max_len=16)
    assert a.obsm["maxtoki_tokens"].shape == (3, 4)
    assert a.obs["maxtoki_n_tokens"].tolist() == [4, 2, 4]
    assert a.obs["maxtoki_empty"].tolist() == [False, True, False]
    assert a.obsm["maxtoki_tokens"][1].tolist() == [2, 3, 0, 0]
    assert a.var["maxtoki_token_id"].tolist() == [4, 7, 11, -1]
    info = a.uns["maxtoki_tokens"]
    assert info["n_empty"] == 1 and info["params"]["max_len"] == 16
    a.write_h5ad(tmp_path / "t.h5ad")
    b = ad.read_h5ad(tmp_path / "t.h5ad")
    np.testing.assert_array_equal(b.obsm["maxtoki_tokens"], a.obsm["maxtoki_tokens"])
    assert b.obsm["maxtoki_tokens"].dtype == np.uint16
    assert b.uns["maxtoki_tokens"]["vocab_hash"] == vocab.hash
    assert b.obs["maxtoki_empty"].dtype == bool


def test_empty_cells_warn(capsys):
    vocab = small_vocab()
    a = small_adata(np.array([[0, 0], [1, 0]], dtype=np.float32), [gene_id(0), gene_id(1)])
    mt.pp.tokenize(a, vocab=vocab)
    assert "1 cells have no vocabulary gene" in capsys.readouterr().err
    assert a.obs["maxtoki_empty"].tolist() == [True, False]


def test_copy_and_key_added():
    vocab = small_vocab()
    a = small_adata(np.array([[1, 2], [3, 0]], dtype=np.float32), [gene_id(0), gene_id(1)])
    b = mt.pp.tokenize(a, vocab=vocab, copy=True, key_added="mine")
    assert isinstance(b, ad.AnnData) and b is not a
    assert "mine_tokens" not in a.obsm and "mine_n_tokens" not in a.obs
    assert {"mine_n_tokens", "mine_empty"} <= set(b.obs) and "mine_token_id" in b.var
    assert b.uns["mine_tokens"]["slots"]["n_tokens"] == "mine_n_tokens"


def test_n_counts_from_obs_or_computed():
    vocab = small_vocab(3, [1.0, 1.0, 1.0])
    X = np.array([[4, 2, 0, 10]], dtype=np.float32)  # last gene outside the vocabulary
    ids = [gene_id(0), gene_id(1), gene_id(2), "ENSG99999999999"]
    a = small_adata(X, ids, n_counts=[100.0])
    mt.pp.tokenize(a, vocab=vocab, min_overlap=0)
    b = small_adata(X, ids)
    mt.pp.tokenize(b, vocab=vocab, min_overlap=0)
    np.testing.assert_array_equal(as_list(a)[0], as_list(b)[0])  # same order either way
    assert a.uns["maxtoki_tokens"]["n_counts_source"] == "obs"
    assert b.uns["maxtoki_tokens"]["n_counts_source"] == "computed"


def test_gene_ids_from_index_with_versions_and_gene_id_key():
    vocab = small_vocab()
    X = np.array([[1, 3]], dtype=np.float32)
    a = ad.AnnData(X=X, var=pd.DataFrame(index=[gene_id(1) + ".4", gene_id(2) + ".1"]))
    mt.pp.tokenize(a, vocab=vocab)
    assert as_list(a)[0].tolist() == [2, 6, 5, 3]
    assert a.uns["maxtoki_tokens"]["gene_id_source"] == "var_names"
    c = ad.AnnData(X=X, var=pd.DataFrame({"gid": [gene_id(1), gene_id(2)]}, index=["A", "B"]))
    mt.pp.tokenize(c, vocab=vocab, gene_id_key="gid")
    assert as_list(c)[0].tolist() == [2, 6, 5, 3]


def test_duplicated_ids_are_summed():
    vocab = small_vocab(3, [1.0, 1.0, 1.0])
    X = np.array([[2, 2, 3]], dtype=np.float32)  # gene 0 twice: 4 > 3
    a = small_adata(X, [gene_id(0), gene_id(0), gene_id(1)])
    mt.pp.tokenize(a, vocab=vocab)
    assert as_list(a)[0].tolist() == [2, 4, 5, 3]
    assert a.var["maxtoki_token_id"].tolist() == [4, 4, 5]


def test_int32_tokens_for_large_vocabularies():
    vocab = small_vocab(70_000, np.ones(70_000))
    X = sp.csr_matrix(np.array([[0, 1, 5]], dtype=np.float32))
    a = small_adata(X, [gene_id(0), gene_id(69_990), gene_id(5)])
    mt.pp.tokenize(a, vocab=vocab)
    assert a.obsm["maxtoki_tokens"].dtype == np.int32
    assert as_list(a)[0].tolist() == [2, 9, 69_994, 3]


def test_mudata_obs_mirrored():
    mudata = pytest.importorskip("mudata")
    vocab = small_vocab()
    rna = small_adata(np.array([[1, 2], [0, 0]], dtype=np.float32), [gene_id(0), gene_id(1)])
    other = ad.AnnData(np.ones((2, 1), dtype=np.float32))
    md = mudata.MuData({"rna": rna, "prot": other})
    mt.pp.tokenize(md, vocab=vocab)
    assert "maxtoki_tokens" in md.mod["rna"].obsm
    assert md.obs["rna:maxtoki_n_tokens"].tolist() == [4, 2]
    assert md.obs["rna:maxtoki_empty"].tolist() == [False, True]
    out = mt.pp.tokenize(md, vocab=vocab, copy=True, key_added="x")
    assert "rna:x_n_tokens" in out.obs and "rna:x_n_tokens" not in md.obs


def test_read_tokens():
    vocab = small_vocab()
    a = small_adata(np.array([[1, 2]], dtype=np.float32), [gene_id(0), gene_id(1)])
    with pytest.raises(ValueError, match=r"run `mt.pp.tokenize\(adata\)` first"):
        read_tokens(a, "maxtoki_tokens", vocab)
    mt.pp.tokenize(a, vocab=vocab)
    assert read_tokens(a, "maxtoki_tokens", vocab).matrix is a.obsm["maxtoki_tokens"]
    other = small_vocab(12, np.full(12, 2.0))
    with pytest.raises(
        ValueError,
        match=(
            rf"the tokens in obsm\['maxtoki_tokens'\] were made with vocabulary {vocab.hash}, "
            rf"the model's is {other.hash}; re-run `mt.pp.tokenize` with the model's vocabulary"
        ),
    ):
        read_tokens(a, "maxtoki_tokens", other)
    # another key: the error names the tokens that exist
    mt.pp.tokenize(a, vocab=vocab, key_added="other")
    del a.obsm["maxtoki_tokens"]
    with pytest.raises(ValueError, match=r"tokens found under \['other_tokens'\]"):
        read_tokens(a, "maxtoki_tokens", vocab)
