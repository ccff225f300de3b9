"""The slot contract end to end: custom ``key_added``/``tokens_key`` through every consumer."""

from __future__ import annotations

import copy

import anndata
import numpy as np
import pytest
from tl_setup import MAX_GENES, subset

import maxtoki as mt
from maxtoki._keys import SLOTS, slot


@pytest.fixture(scope="module")
def custom(trained):
    """Cells tokenized under the prefix ``'mine'`` only (no default slots at all)."""
    adata, vocab, model = trained
    q = subset(adata, 160, seed=3)
    for key in [k for k in q.obsm if k.startswith("maxtoki")]:
        del q.obsm[key]
    for key in [k for k in q.uns if k.startswith("maxtoki")]:
        del q.uns[key]
    q.obs = q.obs.drop(columns=[c for c in q.obs if c.startswith("maxtoki")])
    q.var = q.var.drop(columns=[c for c in q.var if c.startswith("maxtoki")])
    mt.pp.tokenize(q, vocab=vocab, key_added="mine")
    return q, model


def test_tokenize_writes_every_slot_under_the_prefix(custom):
    q, _ = custom
    written = {f"{kind}:{name.format(k='mine')}" for kind, name in SLOTS["mt.pp.tokenize"]}
    present = {f"obsm:{k}" for k in q.obsm} | {f"obs:{k}" for k in q.obs}
    present |= {f"var:{k}" for k in q.var} | {f"uns:{k}" for k in q.uns}
    assert written <= present
    assert not any(k.startswith("maxtoki") for k in q.obsm)
    assert q.obsm["mine_tokens"].dtype == np.uint16


def test_every_consumer_reads_the_custom_tokens(custom, tmp_path):
    q, model = custom
    q = q.copy()
    kw = {"model": model, "tokens_key": "mine_tokens", "max_genes": MAX_GENES, "key_added": "run"}
    mt.tl.embed(q, **kw)
    mt.tl.predict_time(q, n_contexts=1, **kw)
    mt.tl.attention(q, n_cells=20, **kw)
    mt.tl.perturb(q, genes=[q.var_names[0]], n_cells=10, n_contexts=1, **kw)
    mt.tl.age_acceleration(q, predicted_key=slot("run", "age"), n_boot=20, key_added="run")
    for written in ("X_run", "run_age", "run_timelapse", "run_attention", "run_age_acceleration"):
        assert written in q.obsm or written in q.obs or written in q.varm, written
    assert q.uns["run_predict_time"]["params"]["tokens_key"] == "mine_tokens"
    assert len(mt.get.age_acceleration(q, key="run_age_acceleration"))
    assert len(mt.get.attention_heads(q, key="run_attention"))
    assert len(mt.get.perturb(q, key="run_perturb")) == 1
    assert len(mt.get.tokens(q, tokens_key="mine_tokens")) == q.n_obs
    ax = mt.pl.predicted_age(q, predicted_key="run_age", show=False)
    assert len(ax.collections)

    generated = mt.tl.generate(q, n_cells=4, **kw)
    assert generated.obsm["run_tokens"].dtype == np.uint16  # tokens as tokenize writes them
    assert {"run_n_tokens", "run_empty"} <= set(generated.obs)
    mt.tl.embed(generated, model=model, tokens_key="run_tokens", max_genes=MAX_GENES)
    table = mt.tl.evaluate(
        q, model=model, tokens_key="mine_tokens", n_cells=10, n_contexts=1, max_genes=MAX_GENES,
        key_added="run", generated=generated, heldout_cell_types=[],
    )  # fmt: skip
    assert len(table) and "run_evaluate" in q.uns
    own = copy.deepcopy(model)  # training changes the model in place: not the shared one
    back = mt.tl.train(q, model=own, tokens_key="mine_tokens", steps=1, quiet=True)[0]
    assert back is own

    path = tmp_path / "custom.h5ad"
    q.write_h5ad(path)
    again = anndata.read_h5ad(path)
    np.testing.assert_array_equal(again.obsm["mine_tokens"], q.obsm["mine_tokens"])
    assert again.uns["mine_tokens"]["slots"]["tokens"] == "mine_tokens"


def test_a_missing_key_names_the_tokens_that_exist(custom):
    q, model = custom
    with pytest.raises(ValueError, match=r"tokens found under \['mine_tokens'\]"):
        mt.tl.embed(q, model=model)
