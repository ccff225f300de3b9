"""mt.tl.evaluate: the paper's table on held-out cell types and ages, model vs baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tl_setup import MAX_GENES, mudata_of, roundtrip

import maxtoki as mt


@pytest.fixture(scope="module")
def table(trained):
    adata, vocab, model = trained
    data = adata.copy()
    role = data.obs["role"].to_numpy()
    df = mt.tl.evaluate(
        data, model=model, vocab=vocab, heldout_ages=(400, 520), train_mask=role == "train",
        n_cells=150, n_contexts=3, ablations=True, max_genes=MAX_GENES,
    )  # fmt: skip
    print(df.round(2).to_string())
    return data, df


def test_model_beats_naive_on_heldout_cell_types(table):
    _, df = table
    rows = df.set_index(["split", "method"])
    assert set(df["split"]) == {"heldout_cell_type", "heldout_age"}
    assert {"maxtoki", "naive", "sgd", "sgd_offset"} <= set(df["method"])
    model = rows.loc[("heldout_cell_type", "maxtoki")]
    naive = rows.loc[("heldout_cell_type", "naive")]
    assert model["median_abs_error_months"] < 0.75 * naive["median_abs_error_months"]
    assert model["pearson_r"] > 0.3
    assert np.isfinite(rows["donor_median_abs_error_months"]).all()
    for prefix in ("", "donor_"):  # every median error has its bootstrap interval around it
        point = rows[f"{prefix}median_abs_error_months"]
        assert (rows[f"{prefix}median_abs_error_ci_low_months"] <= point).all()
        assert (point <= rows[f"{prefix}median_abs_error_ci_high_months"]).all()
    # masking the query removes the information the model reads
    masked = rows.loc[("heldout_cell_type", "maxtoki_mask_query")]
    assert masked["median_abs_error_months"] > model["median_abs_error_months"]


def test_stored_and_roundtrip(table, tmp_path):
    data, df = table
    pd.testing.assert_frame_equal(mt.get.evaluate(data), df)
    back = roundtrip(data, tmp_path)
    pd.testing.assert_frame_equal(mt.get.evaluate(back), df, check_dtype=False)
    params = back.uns["maxtoki_evaluate"]["params"]
    assert params["ablations"].tolist() == ["mask_context", "mask_query", "shuffle_genes"]


def test_naive_baseline_falls_back_to_sex():
    from maxtoki.tl._baselines import naive

    ctype = np.array(["a", "a", "a", "b", "b", "c"])
    sex = np.array(["f", "f", "m", "f", "f", "f"])
    ages = np.array([10.0, 10.0, 30.0, 50.0, 50.0, 99.0])
    train = np.array([True, True, True, True, True, False])
    pred = naive(ctype, sex, ages, train)
    # 'c' is unseen: the most common training age of females (10 and 50 tie → youngest)
    np.testing.assert_allclose(pred, [10, 10, 30, 50, 50, 10])


def test_mudata_and_errors(trained):
    adata, vocab, model = trained
    small = adata[adata.obs["donor"].isin(adata.obs["donor"].cat.categories[:30])].copy()
    md = mudata_of(small)
    df = mt.tl.evaluate(md, model=model, vocab=vocab, n_cells=20, n_contexts=1, max_genes=MAX_GENES)
    assert "maxtoki_evaluate" in md.mod["rna"].uns and "maxtoki_evaluate" in md.uns
    methods = ["maxtoki", "naive", "sgd", "sgd_offset", "ridge", "ridge_offset"]
    methods += ["ridge_top_genes", "ridge_top_genes_offset"]
    assert df["method"].tolist() == methods
    with pytest.raises(ValueError, match="heldout_cell_types"):
        mt.tl.evaluate(small, model=model, vocab=vocab, heldout_cell_types=["dragon"])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        mt.tl.evaluate(small, model=model, vocab=vocab, heldout_cell_types=[])
    with pytest.raises(ValueError, match="unknown ablations"):
        mt.tl.evaluate(small, model=model, vocab=vocab, ablations=["drop_all"])
