"""mt.tl.predict_time: TimeBetweenCells ages from trajectories of healthy reference cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tl_setup import (
    MAX_GENES,
    controls,
    mudata_of,
    predicted,
    roundtrip,
    snapshot,
    subset,
    unchanged,
)

import maxtoki as mt

KEYS = ["maxtoki_timelapse", "maxtoki_age", "maxtoki_age_std"]


@pytest.fixture(scope="module")
def small(trained):
    adata, _, _ = trained
    return subset(adata[(adata.obs["condition"] == "control").to_numpy()], 24, seed=1)


def test_slots_params_and_roundtrip(trained, tmp_path):
    sub = predicted()
    for key in KEYS:
        assert key in sub.obs and np.isfinite(sub.obs[key]).all()
    assert (sub.obs["maxtoki_age_std"] >= 0).all()
    params = sub.uns["maxtoki_predict_time"]["params"]
    assert params["aggregate"] == "median" and params["n_contexts"] == 3
    assert params["context"] == "separate AnnData"
    # reference controls (adults, never training queries) are aged far better than by the
    # training cells' mean age
    adata = trained[0]
    ref = sub.obs[sub.obs["role"] == "reference"]
    err = np.median(np.abs(ref["maxtoki_age"] - ref["age_months"]))
    mean_age = adata.obs.loc[adata.obs["role"] == "train", "age_months"].mean()
    const = np.median(np.abs(ref["age_months"] - mean_age))
    assert err < 0.6 * const, (err, const)
    back = roundtrip(sub, tmp_path)
    np.testing.assert_allclose(back.obs["maxtoki_age"], sub.obs["maxtoki_age"])
    assert back.uns["maxtoki_predict_time"]["params"]["groupby"].tolist() == ["cell_type", "sex"]


def test_default_context_is_the_objects_own_controls(trained):
    adata, vocab, model = trained
    q = subset(adata, 300, seed=2)
    out = mt.tl.predict_time(
        q, model=model, vocab=vocab, n_contexts=1, max_genes=MAX_GENES, copy=True
    )
    assert out is not q and "maxtoki_age" in out.obs and "maxtoki_age" not in q.obs
    params = out.uns["maxtoki_predict_time"]["params"]
    assert params["context"] == "query object"
    assert params["n_reference_cells"] == int((q.obs["condition"] == "control").sum())


def test_copy_false_writes_in_place_and_is_deterministic(trained, small):
    adata, vocab, model = trained
    a, b = small.copy(), small.copy()
    kw = dict(model=model, vocab=vocab, context=controls(adata), n_contexts=2, max_genes=MAX_GENES)
    assert mt.tl.predict_time(a, **kw) is None
    mt.tl.predict_time(b, **kw)
    np.testing.assert_allclose(a.obs["maxtoki_age"], b.obs["maxtoki_age"])


def test_group_is_not_shown_to_the_model(trained, small):
    """Renaming the groups consistently changes nothing: the group only picks contexts."""
    adata, vocab, model = trained
    ctx = controls(adata).copy()
    a, b = small.copy(), small.copy()
    kw = dict(model=model, vocab=vocab, n_contexts=2, max_genes=MAX_GENES, random_state=3)
    mt.tl.predict_time(a, context=ctx, **kw)
    for obj in (b, ctx):
        obj.obs["cell_type"] = obj.obs["cell_type"].cat.rename_categories(
            lambda c: f"type-{len(c)}-{c[::-1]}"
        )
    mt.tl.predict_time(b, context=ctx, **kw)
    np.testing.assert_allclose(a.obs["maxtoki_age"], b.obs["maxtoki_age"])


def test_mudata(trained, small):
    adata, vocab, model = trained
    md = mudata_of(small.copy())
    mt.tl.predict_time(
        md, model=model, vocab=vocab, context=controls(adata), n_contexts=1, max_genes=MAX_GENES
    )
    assert "maxtoki_age" in md.mod["rna"].obs
    np.testing.assert_allclose(md.obs["rna:maxtoki_age"], md.mod["rna"].obs["maxtoki_age"])


def test_errors_name_the_fix_and_leave_input_unchanged(trained, small):
    adata, vocab, model = trained
    q = small.copy()
    before = snapshot(q)
    no_tokens = q.copy()
    del no_tokens.obsm["maxtoki_tokens"]
    with pytest.raises(ValueError, match=r"mt\.pp\.tokenize"):
        mt.tl.predict_time(no_tokens, model=model, vocab=vocab)
    other = mt.pp.GeneVocab.from_genes({g: 1.0 for g in adata.var["ensembl_id"][:50]})
    with pytest.raises(ValueError, match="vocab"):
        mt.tl.predict_time(q, model=model, vocab=other)
    # a group without reference cells is named
    ctx = controls(adata)
    ctx = ctx[ctx.obs["cell_type"] != q.obs["cell_type"].iloc[0]]
    with pytest.raises(
        ValueError, match=f"no reference cells for the group.*{q.obs['cell_type'].iloc[0]}"
    ):
        mt.tl.predict_time(q, model=model, vocab=vocab, context=ctx)
    # a model without time tokens
    stage1 = mt.models.MaxToki(
        mt.models.MaxTokiConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            time_token_start_id=None,
        )
    )
    with pytest.raises(ValueError, match="no time tokens"):
        mt.tl.predict_time(q, model=stage1, vocab=vocab)
    with pytest.raises(ValueError, match="n_contexts"):
        mt.tl.predict_time(q, model=model, vocab=vocab, n_contexts=0)
    with pytest.raises(ValueError, match="no reference cells"):
        mt.tl.predict_time(q, model=model, vocab=vocab, reference="healthy")
    assert unchanged(q, before)
    assert torch.get_num_threads() == 1
