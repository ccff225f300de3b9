"""mt.get.tokens: tokens in obsm decoded back to gene IDs."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import maxtoki as mt
from maxtoki.pp import GeneVocab


def gene_id(i):
    return f"ENSG{i:011d}"


@pytest.fixture
def tokenized():
    vocab = GeneVocab.from_genes({gene_id(i): 1.0 for i in range(5)}, time_range=None)
    X = np.array([[1, 5, 0, 3], [0, 0, 0, 0], [2, 0, 9, 0]], dtype=np.float32)
    var = pd.DataFrame(
        {
            "ensembl_id": [gene_id(3) + ".2", gene_id(0), gene_id(1), "ENSG9"],
            "symbol": ["C", "A", "B", "Z"],
        },
        index=["c", "a", "b", "z"],
    )
    a = ad.AnnData(X, var=var)
    mt.pp.tokenize(a, vocab=vocab, min_overlap=0)
    return a, vocab


def test_list_output(tokenized):
    a, vocab = tokenized
    cells = mt.get.tokens(a)
    assert [c.tolist() for c in cells] == [[gene_id(0), gene_id(3)], [], [gene_id(1), gene_id(3)]]
    with_vocab = mt.get.tokens(a, vocab=vocab)
    assert [c.tolist() for c in with_vocab] == [c.tolist() for c in cells]
    special = mt.get.tokens(a, special_tokens=True, max_genes=1)
    assert special[0].tolist() == ["<bos>", gene_id(0)]
    assert special[1].tolist() == ["<bos>", "<eos>"]
    assert mt.get.tokens(a, gene_symbols="symbol")[2].tolist() == ["B", "C"]


def test_dataframes(tokenized):
    a, _ = tokenized
    wide = mt.get.tokens(a, output="wide", gene_symbols="symbol")
    assert wide.index.equals(a.obs_names) and wide.columns.tolist() == [1, 2]
    assert wide.iloc[0].tolist() == ["A", "C"] and wide.iloc[1].isna().all()
    long = mt.get.tokens(a, output="long")
    assert long.columns.tolist() == ["obs_name", "rank", "token_id", "gene"]
    assert len(long) == 4 and long["rank"].tolist() == [1, 2, 1, 2]
    assert long["obs_name"].tolist() == ["0", "0", "2", "2"]


def test_errors(tokenized):
    a, _ = tokenized
    with pytest.raises(ValueError, match=r"run `mt.pp.tokenize` first"):
        mt.get.tokens(a, tokens_key="other_tokens")
    other = GeneVocab.from_genes({gene_id(i): 2.0 for i in range(5)}, time_range=None)
    with pytest.raises(ValueError, match="made with vocabulary"):
        mt.get.tokens(a, vocab=other)
    with pytest.raises(ValueError, match="output"):
        mt.get.tokens(a, output="table")


def test_key_is_a_deprecated_alias_of_tokens_key(tokenized):
    a, _ = tokenized
    a.obsm["other_tokens"] = a.obsm["maxtoki_tokens"]
    a.uns["other_tokens"] = dict(a.uns["maxtoki_tokens"])
    expected = [c.tolist() for c in mt.get.tokens(a, tokens_key="other_tokens")]
    with pytest.warns(FutureWarning, match="tokens_key"):
        cells = mt.get.tokens(a, key="other_tokens")
    assert [c.tolist() for c in cells] == expected
    with pytest.raises(ValueError, match="once, as `tokens_key`"):
        mt.get.tokens(a, key="other_tokens", tokens_key="third_tokens")
