"""mt.tl.perturb: in-silico deletion / overexpression and the shift in predicted age."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tl_setup import MAX_GENES, mudata_of, roundtrip, snapshot, subset, unchanged

import maxtoki as mt


@pytest.fixture(scope="module")
def query(trained):
    adata, _, _ = trained
    return subset(adata[(adata.obs["condition"] == "control").to_numpy()], 300, seed=4)


def _top_genes(q, n):
    """Genes that are most often among the cells' top-ranked tokens."""
    ids = q.obsm["maxtoki_tokens"][:, 1 : MAX_GENES + 1].ravel()
    counts = pd.Series(ids[ids > 3]).value_counts()
    by_token = pd.Series(q.var_names, index=q.var["maxtoki_token_id"].to_numpy())
    return [by_token[t] for t in counts.index[:n]]


def test_delete_and_overexpress(trained, query, tmp_path):
    adata, vocab, model = trained
    q = query.copy()
    genes = _top_genes(q, 3)
    kw = dict(vocab=vocab, n_cells=40, n_contexts=2, max_genes=MAX_GENES, context=adata)
    assert mt.tl.perturb(q, model=model, genes=genes, kind="delete", **kw) is None
    table = mt.get.perturb(q)
    print(table.round(2).to_string())
    assert table["gene"].tolist() == genes and (table["kind"] == "delete").all()
    assert (table["n_cells"] > 0).all() and table["mean_shift_months"].notna().all()
    assert np.allclose(table["shift_years"], table["mean_shift_months"] / 12)
    out = mt.tl.perturb(
        q, model=model, genes=genes[:1], kind="overexpress", key_added="over", copy=True, **kw
    )
    over = mt.get.perturb(out, key="over_perturb")
    assert over["n_cells"].iloc[0] == 40 and over["kind"].iloc[0] == "overexpress"
    back = roundtrip(q, tmp_path)
    pd.testing.assert_frame_equal(mt.get.perturb(back), table, check_dtype=False)


def test_mudata_and_errors(trained, query):
    adata, vocab, model = trained
    md = mudata_of(query[:60].copy())
    mt.tl.perturb(md, model=model, vocab=vocab, genes=_top_genes(query, 1), n_cells=10,
                  n_contexts=1, max_genes=MAX_GENES, context=adata)  # fmt: skip
    assert "maxtoki_perturb" in md.mod["rna"].uns
    q = query.copy()
    before = snapshot(q)
    with pytest.raises(ValueError, match="not in var_names"):
        mt.tl.perturb(q, model=model, vocab=vocab, genes=["NOPE"])
    with pytest.raises(ValueError, match="kind"):
        mt.tl.perturb(q, model=model, vocab=vocab, genes=_top_genes(q, 1), kind="knockdown")
    assert unchanged(q, before)
    with pytest.raises(ValueError, match=r"run `mt\.tl\.perturb` first"):
        mt.get.perturb(q)
