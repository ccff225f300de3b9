"""mt.tl.embed: cell embeddings in obsm['X_maxtoki'] that scanpy uses."""

from __future__ import annotations

import numpy as np
import pytest
from tl_setup import MAX_GENES, mudata_of, roundtrip, snapshot, subset, unchanged

import maxtoki as mt


def test_embed_neighbors_and_roundtrip(trained, tmp_path):
    import scanpy as sc

    adata, vocab, model = trained
    q = subset(adata, 200)
    assert mt.tl.embed(q, model=model, vocab=vocab, max_genes=MAX_GENES) is None
    emb = q.obsm["X_maxtoki"]
    assert emb.shape == (200, model.config.hidden_size) and np.isfinite(emb).all()
    assert q.uns["maxtoki"]["params"]["emb_mode"] == "cell"
    sc.pp.neighbors(q, use_rep="X_maxtoki", n_neighbors=10)
    # cells of one type are each other's neighbours more often than chance
    conn = q.obsp["connectivities"].tocoo()
    types = q.obs["cell_type"].to_numpy()
    same = np.mean(types[conn.row] == types[conn.col])
    chance = np.sum((q.obs["cell_type"].value_counts(normalize=True).to_numpy()) ** 2)
    assert same > chance + 0.2, (same, chance)
    back = roundtrip(q, tmp_path)
    np.testing.assert_allclose(back.obsm["X_maxtoki"], emb)


def test_reloaded_model_keeps_its_genes_per_cell(trained, tmp_path):
    adata, vocab, model = trained
    assert model.config.max_genes_per_cell == MAX_GENES  # recorded by mt.tl.train
    model.save_pretrained(tmp_path)
    reloaded = mt.models.MaxToki.from_pretrained(tmp_path, device="cpu")
    assert reloaded.config.max_genes_per_cell == MAX_GENES
    q = subset(adata, 30, seed=2)
    assert reloaded.vocab.hash == vocab.hash  # the model carries its vocabulary
    implicit = mt.tl.embed(q, model=reloaded, copy=True).obsm["X_maxtoki"]
    explicit = mt.tl.embed(q, model=model, vocab=vocab, max_genes=MAX_GENES, copy=True)
    np.testing.assert_allclose(implicit, explicit.obsm["X_maxtoki"], rtol=1e-5, atol=1e-6)
    allgenes = mt.tl.embed(q, model=model, vocab=vocab, max_genes=10**6, copy=True)
    allgenes = allgenes.obsm["X_maxtoki"]
    assert not np.allclose(implicit, allgenes)


def test_modes_layers_copy_and_mudata(trained):
    adata, vocab, model = trained
    q = subset(adata, 40, seed=1)
    before = snapshot(q)
    out = mt.tl.embed(
        q, model=model, vocab=vocab, emb_mode="eos", emb_layer=0, max_genes=MAX_GENES,
        key_added="maxtoki_eos", copy=True,
    )  # fmt: skip
    assert unchanged(q, before)
    assert out.obsm["X_maxtoki_eos"].shape[0] == 40
    assert out.uns["maxtoki_eos"]["params"]["emb_layer"] == 0
    md = mudata_of(q.copy())
    mt.tl.embed(md, model=model, vocab=vocab, max_genes=MAX_GENES, batch_size=7)
    assert md.mod["rna"].obsm["X_maxtoki"].shape == (40, model.config.hidden_size)


def test_errors(trained):
    adata, vocab, model = trained
    q = subset(adata, 10)
    before = snapshot(q)
    with pytest.raises(ValueError, match="emb_mode"):
        mt.tl.embed(q, model=model, vocab=vocab, emb_mode="cls")
    with pytest.raises(ValueError, match="emb_layer"):
        mt.tl.embed(q, model=model, vocab=vocab, emb_layer=99)
    with pytest.raises(ValueError, match="batch_size"):
        mt.tl.embed(q, model=model, vocab=vocab, batch_size=0)
    with pytest.raises(TypeError, match="GeneVocab"):
        mt.tl.embed(q, model=model, vocab="vocab")
    del q.obsm["maxtoki_tokens"]
    before = snapshot(q)
    with pytest.raises(ValueError, match=r"mt\.pp\.tokenize"):
        mt.tl.embed(q, model=model, vocab=vocab)
    assert unchanged(q, before)


def test_named_layers_say_which_hidden_state(trained):
    """'last' is the final-normed output, 'penultimate' Geneformer's emb_layer=-1."""
    adata, _, model = trained
    q = subset(adata, 20, seed=4)
    n = model.config.num_hidden_layers
    for name, index in (("last", n), ("penultimate", n - 1), ("embeddings", 0)):
        by_name = mt.tl.embed(q, model=model, emb_layer=name, max_genes=MAX_GENES, copy=True)
        by_index = mt.tl.embed(q, model=model, emb_layer=index, max_genes=MAX_GENES, copy=True)
        np.testing.assert_array_equal(by_name.obsm["X_maxtoki"], by_index.obsm["X_maxtoki"])
        assert by_name.uns["maxtoki"]["params"]["hidden_state"] == index
    last = mt.tl.embed(q, model=model, max_genes=MAX_GENES, copy=True).obsm["X_maxtoki"]
    penultimate = mt.tl.embed(q, model=model, emb_layer="penultimate", max_genes=MAX_GENES,
                              copy=True).obsm["X_maxtoki"]  # fmt: skip
    assert not np.allclose(last, penultimate)
