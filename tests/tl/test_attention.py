"""mt.tl.attention: attention received per gene and head, enrichment on transcription factors."""

from __future__ import annotations

import numpy as np
import pytest
from tl_setup import MAX_GENES, mudata_of, roundtrip, snapshot, subset, unchanged

import maxtoki as mt


def test_attention_per_head_and_tf_enrichment(trained, tmp_path):
    adata, vocab, model = trained
    q = subset(adata, 300)
    assert mt.tl.attention(q, model=model, vocab=vocab, n_cells=150, max_genes=MAX_GENES) is None
    n_heads = model.config.num_hidden_layers * model.config.num_attention_heads
    varm = q.varm["maxtoki_attention"]
    assert varm.shape == (q.n_vars, n_heads)
    seen = np.isfinite(varm).all(axis=1)
    assert seen.sum() > 50 and (varm[seen] >= 0).all()
    heads = mt.get.attention_heads(q)
    print(heads.round(3).to_string())
    assert len(heads) == n_heads
    assert list(q.uns["maxtoki_attention"]["columns"][:2]) == ["L0H0", "L0H1"]
    assert heads["enrichment"].notna().all() and heads["pval"].between(0, 1).all()
    assert (heads["n_set"] > 0).all()
    back = roundtrip(q, tmp_path)
    np.testing.assert_allclose(back.varm["maxtoki_attention"], varm)
    assert len(mt.get.attention_heads(back)) == n_heads


def test_layers_gene_set_copy_and_mudata(trained):
    adata, vocab, model = trained
    q = subset(adata, 30, seed=1)
    before = snapshot(q)
    genes = list(q.var_names[q.var["is_housekeeping"].to_numpy()])
    out = mt.tl.attention(
        q, model=model, vocab=vocab, layers=[-1], gene_set=genes, max_genes=MAX_GENES, copy=True
    )
    assert unchanged(q, before)
    assert out.varm["maxtoki_attention"].shape[1] == model.config.num_attention_heads
    assert set(mt.get.attention_heads(out)["layer"]) == {model.config.num_hidden_layers - 1}
    md = mudata_of(q.copy())
    mt.tl.attention(md, model=model, vocab=vocab, n_cells=10, max_genes=MAX_GENES)
    assert "maxtoki_attention" in md.mod["rna"].varm


def test_errors(trained):
    adata, vocab, model = trained
    q = subset(adata, 10)
    before = snapshot(q)
    with pytest.raises(ValueError, match="layers"):
        mt.tl.attention(q, model=model, vocab=vocab, layers=[7])
    with pytest.raises(ValueError, match="gene_set"):
        mt.tl.attention(q, model=model, vocab=vocab, gene_set=["not-a-gene"])
    q2 = q.copy()
    del q2.var["is_tf"]
    with pytest.raises(ValueError, match="is_tf"):
        mt.tl.attention(q2, model=model, vocab=vocab)
    assert unchanged(q, before)
