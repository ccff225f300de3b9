"""mt.tl.generate: NextCell cells as a new AnnData, with rank-reconstructed expression."""

from __future__ import annotations

import anndata
import numpy as np
import pytest
from tl_setup import MAX_GENES, controls, mudata_of, roundtrip

import maxtoki as mt


@pytest.fixture(scope="module")
def generated(trained):
    adata, vocab, model = trained
    return mt.tl.generate(
        controls(adata), model=model, vocab=vocab, timelapse=60, n_cells=120,
        max_genes=MAX_GENES, random_state=0,
    )  # fmt: skip


def test_new_anndata_with_provenance(trained, generated, tmp_path):
    adata, vocab, _ = trained
    g = generated
    assert g.n_obs == 120 and list(g.var_names) == list(adata.var_names)
    tok = g.obsm["maxtoki_tokens"]
    assert (tok[:, 0] == vocab.bos_id).all()
    n = g.obs["maxtoki_n_tokens"].to_numpy()
    assert (tok[np.arange(len(tok)), n - 1] == vocab.eos_id).all()
    for row, k in zip(tok, n, strict=True):  # no repeated genes
        assert len(set(row[1 : k - 1])) == k - 2
    assert (g.obs["n_genes"] <= MAX_GENES).all() and g.obs["n_genes"].mean() > MAX_GENES / 2
    np.testing.assert_allclose(
        g.obs["expected_age_months"], g.obs["context_age_months"] + g.obs["timelapse_months"]
    )
    first = g.obs["context_cells"].iloc[0].split(";")
    assert len(first) == 2 and all(c in adata.obs_names for c in first)
    ctx = adata.obs.loc[first]
    assert (ctx["cell_type"].astype(str) == g.obs["cell_type"].iloc[0]).all()
    # X: the expressed genes are exactly the generated ones
    nnz = np.diff(g.X.tocsr().indptr)
    np.testing.assert_array_equal(nnz, g.obs["n_genes"].to_numpy())
    assert g.uns["maxtoki_generate"]["params"]["timelapse"] == 60
    back = roundtrip(g, tmp_path)
    np.testing.assert_array_equal(back.obsm["maxtoki_tokens"], tok)


def test_generated_and_real_cells_embed_together(trained, generated):
    adata, vocab, model = trained
    real = controls(adata)[:100].copy()
    # token matrices of one width, so that concat keeps every token (its inner join cuts)
    width = real.obsm["maxtoki_tokens"].shape[1]
    generated = generated.copy()
    tok = generated.obsm["maxtoki_tokens"]
    generated.obsm["maxtoki_tokens"] = np.pad(tok, ((0, 0), (0, width - tok.shape[1])))
    both = anndata.concat([real, generated], label="source", keys=["real", "generated"])
    both.uns["maxtoki_tokens"] = real.uns["maxtoki_tokens"]
    mt.tl.embed(both, model=model, vocab=vocab, max_genes=MAX_GENES)
    assert np.isfinite(both.obsm["X_maxtoki"]).all()


def test_rank_expression_map_tracks_real_expression(trained):
    """Reconstructing real cells from their own ranks correlates with their measured values."""
    from maxtoki.tl._expression import log_normalised, rank_expression_map, reconstruct_expression
    from maxtoki.tl._utils import vocab_columns

    adata, vocab, _ = trained
    real = controls(adata)[:200].copy()
    tokens = real.obsm["maxtoki_tokens"]
    emap = rank_expression_map(real, tokens, vocab, "maxtoki_tokens")
    cols = vocab_columns(real, vocab, "maxtoki_tokens")
    rec = reconstruct_expression(tokens, emap, cols, vocab).toarray()
    obs = log_normalised(real, "maxtoki_tokens").toarray()[:, cols.var_rows]
    nz = rec > 0
    assert np.corrcoef(rec[nz], obs[nz])[0, 1] > 0.8


def test_generated_cells_checked_against_controls(trained, generated):
    adata, vocab, model = trained
    df = mt.tl.evaluate(
        controls(adata).copy(), model=model, vocab=vocab, heldout_cell_types=[],
        generated=generated, max_genes=MAX_GENES,
    )  # fmt: skip
    print(df.round(3).to_string())
    rows = df.set_index("method")
    auc = rows["classifier_auc"]
    # the controls: real vs real near 0.5, random genes told apart
    assert abs(auc["real_vs_real"] - 0.5) < 4 * np.sqrt((2 * 120 + 1) / 12) / 120
    assert auc["real_vs_random_genes"] >= 0.95
    assert auc["real_vs_generated"] < auc["real_vs_random_genes"]
    assert rows.loc["doublet_classifier", "classifier_accuracy"] > 0.75
    assert 0.0 <= rows.loc["cell_type_generated", "cell_type_match"] <= 1.0


def test_groups_timelapses_and_errors(trained):
    adata, vocab, model = trained
    ctx = controls(adata)
    group = "B cell|female"
    g = mt.tl.generate(
        mudata_of(ctx.copy()), model=model, vocab=vocab, timelapse=[0, 12, 24], n_cells=3,
        groups=[group], max_genes=8, random_state=1,
    )  # fmt: skip
    assert (g.obs["group"] == group).all() and g.obs["timelapse_months"].tolist() == [0, 12, 24]
    with pytest.raises(ValueError, match=r"no cells with a known age .*'dragon\|female'"):
        mt.tl.generate(ctx, model=model, vocab=vocab, groups=["dragon|female"], n_cells=2)
    with pytest.raises(ValueError, match="time tokens"):
        mt.tl.generate(ctx, model=model, vocab=vocab, timelapse=10_000, n_cells=2)
    with pytest.raises(ValueError, match="one per cell"):
        mt.tl.generate(ctx, model=model, vocab=vocab, timelapse=[1, 2], n_cells=3)
