"""mt.tl.evaluate's held-out-donor split, checked against computations done by hand.

An untrained tiny model is enough: which cells form the split, which cells train the baselines and
serve as contexts, and the metrics of the predictions do not depend on what the model predicts.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from bad_input import FAST, TINY  # the shared untrained tiny model and fast options
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import maxtoki as mt
import maxtoki.tl._evaluate as evaluate_module

HELDOUT_AGES = (300.0, 500.0)
#: control donors: D02 (181 months) and D07 (882) form the split; D04 (476) is in the held-out ages
HELDOUT_DONORS = ["D02", "D04", "D07"]


@functools.cache
def _small():
    from maxtoki.train import build_model

    adata = mt.datasets.aging_atlas(n_donors=16, n_cells_per_donor=12, n_genes=200, seed=0)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    return adata, vocab, build_model("tiny", vocab=vocab, overrides=TINY)


def _evaluate(data, **kwargs):
    """One evaluate run, with what it drew, predicted and fitted recorded."""
    _, vocab, model = _small()
    seen = {"contexts": [], "predictions": {}, "fits": []}
    draw, predict = evaluate_module.draw_contexts, evaluate_module._model_predictions

    def spy_draw(ref, *args, **kw):
        out = draw(ref, *args, **kw)
        seen["contexts"].append(ref.rows[out])  # positions in the pool → rows of the AnnData
        return out

    def spy_predict(split, q, *args, **kw):
        preds, context_rows = predict(split, q, *args, **kw)
        seen["predictions"][split] = (q.copy(), preds)
        return preds, context_rows

    class SpySGD(SGDRegressor):
        def fit(self, X, y, **kw):
            seen["fits"].append((self.get_params(), np.asarray(y).copy()))
            return super().fit(X, y, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_module, "draw_contexts", spy_draw)
        mp.setattr(evaluate_module, "_model_predictions", spy_predict)
        mp.setattr("sklearn.linear_model.SGDRegressor", SpySGD)
        table = mt.tl.evaluate(
            data, model=model, vocab=vocab, heldout_ages=HELDOUT_AGES, n_cells=None,
            n_contexts=3, n_context_cells=2, n_boot=200, **FAST, **kwargs,
        )  # fmt: skip
    return table, seen


@pytest.fixture(scope="module")
def run():
    adata, _, _ = _small()
    data = adata.copy()
    table, seen = _evaluate(data, heldout_donors=HELDOUT_DONORS)
    return adata, data, table, seen


def _design(adata):
    """Ages, donors, the training cells and the split of each cell, from scratch."""
    obs = adata.obs
    ages = obs["age_months"].to_numpy(float)
    donors = obs["donor"].astype(str).to_numpy()
    ref = (obs["condition"] == "control").to_numpy()
    in_type = obs["cell_type"].isin(adata.uns["aging_atlas"]["heldout_cell_types"]).to_numpy()
    in_age = (ages >= HELDOUT_AGES[0]) & (ages <= HELDOUT_AGES[1])
    in_donor = np.isin(donors, HELDOUT_DONORS)
    train = ref & ~in_type & ~in_age & ~in_donor
    splits = {
        "heldout_cell_type": np.flatnonzero(ref & in_type),
        "heldout_age": np.flatnonzero(ref & in_age & ~in_type),
        "heldout_donor": np.flatnonzero(ref & in_donor & ~in_type & ~in_age),
    }
    return ages, donors, train, splits


def _assert_fitted_on(y, ages):
    """``y``, the targets the SGD saw (standardised ages), are those of ``ages``."""
    np.testing.assert_allclose(np.sort(y), np.sort((ages - ages.mean()) / ages.std()))


def _row_by_hand(adata, q, pred, ages):
    """The metrics of predictions ``pred`` of cells ``q``, cell and donor level."""
    err = pred - ages[q]
    cells = adata.obs.iloc[q][["donor", "cell_type"]].astype(str)
    donor = cells.assign(p=pred, t=ages[q]).groupby(["donor", "cell_type"]).mean()
    return {
        "n_cells": len(q),
        "n_donors": cells["donor"].nunique(),
        "median_abs_error_months": np.median(np.abs(err)),
        "bias_months": err.mean(),
        "pearson_r": np.corrcoef(pred, ages[q])[0, 1],
        "donor_median_abs_error_months": (donor["p"] - donor["t"]).abs().median(),
        "donor_pearson_r": np.corrcoef(donor["p"], donor["t"])[0, 1],
    }


def test_split_cells_and_rows_match_by_hand(run):
    adata, _, table, seen = run
    ages, donors, _, splits = _design(adata)
    assert list(table["split"].unique()) == list(splits)
    q = splits["heldout_donor"]
    assert set(donors[q]) == {"D02", "D07"}  # D04's cells are all in the held-out ages
    d04 = set(np.flatnonzero(donors == "D04"))  # in the splits of held-out types and ages
    assert d04 == d04 & set(splits["heldout_age"]) | d04 & set(splits["heldout_cell_type"])
    rows = table.set_index(["split", "method"])
    for split, cells in splits.items():
        got_q, preds = seen["predictions"][split]
        np.testing.assert_array_equal(got_q, cells)
        for method, pred in preds.items():
            row = rows.loc[(split, method)]
            for col, want in _row_by_hand(adata, cells, pred, ages).items():
                np.testing.assert_allclose(row[col], want, rtol=1e-6, atol=1e-6, err_msg=col)
            for prefix in ("", "donor_"):
                point = row[f"{prefix}median_abs_error_months"]
                assert row[f"{prefix}median_abs_error_ci_low_months"] <= point
                assert point <= row[f"{prefix}median_abs_error_ci_high_months"]


def test_baselines_never_trained_on_heldout_donors(run):
    adata, _, table, seen = run
    ages, donors, train, splits = _design(adata)
    ((params, y),) = seen["fits"]
    assert len(y) == train.sum() and np.isin(donors, HELDOUT_DONORS)[train].sum() == 0
    _assert_fitted_on(y, ages[train])
    # the SGD and naive rows from baselines fitted here on the same cells
    counts = sp.csr_matrix(adata.X, dtype=float).toarray()
    lognorm = np.log1p(counts * (1e4 / counts.sum(axis=1, keepdims=True)))
    sgd_age = (
        TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), SGDRegressor(**params)),
            transformer=StandardScaler(),
        )
        .fit(lognorm[train], ages[train])
        .predict(lognorm)
    )
    obs = adata.obs.astype({"cell_type": str, "sex": str})
    df = obs.loc[train, ["cell_type", "sex"]].assign(age=ages[train])
    mode = lambda a: a.value_counts().sort_index().idxmax()  # noqa: E731
    by_ts = df.groupby(["cell_type", "sex"])["age"].agg(mode)
    by_s = df.groupby("sex")["age"].agg(mode)
    q = splits["heldout_donor"]
    naive_age = np.array(
        [by_ts.get((t, s), by_s[s]) for t, s in zip(obs["cell_type"], obs["sex"], strict=True)]
    )
    rows = table.set_index(["split", "method"])
    for method, pred in (("sgd", sgd_age[q]), ("naive", naive_age[q])):
        got = rows.loc[("heldout_donor", method), "median_abs_error_months"]
        np.testing.assert_allclose(got, np.median(np.abs(pred - ages[q])), rtol=1e-6)


def test_a_given_train_mask_loses_the_heldout_donors():
    adata, _, _ = _small()
    ages, donors, train, _ = _design(adata)
    with_donors = train | (np.isin(donors, HELDOUT_DONORS) & (adata.obs["condition"] == "control"))
    assert with_donors.sum() > train.sum()
    _, seen = _evaluate(
        adata.copy(), heldout_donors=HELDOUT_DONORS, train_mask=with_donors.to_numpy()
    )
    ((_, y),) = seen["fits"]
    _assert_fitted_on(y, ages[train])


def test_contexts_from_other_training_donors_of_the_group(run):
    adata, _, _, seen = run
    ages, donors, _, splits = _design(adata)
    groups = adata.obs["cell_type"].astype(str) + "|" + adata.obs["sex"].astype(str)
    groups = groups.to_numpy()
    in_age = (ages >= HELDOUT_AGES[0]) & (ages <= HELDOUT_AGES[1])
    assert len(seen["contexts"]) == len(splits)  # one draw per split, in split order
    for (split, q), ctx in zip(splits.items(), seen["contexts"], strict=True):
        assert ctx.shape == (len(q), 3, 2)
        assert (donors[ctx] != donors[q][:, None, None]).all()  # never the query's donor
        assert not np.isin(donors[ctx], HELDOUT_DONORS).any()  # never a held-out donor
        assert (groups[ctx] == groups[q][:, None, None]).all()
        assert (adata.obs["condition"].to_numpy()[ctx] == "control").all()
        if split != "heldout_cell_type":
            assert not in_age[ctx].any()  # training ages only


def test_input_unchanged_but_the_table_and_plot_show_the_split(run, tmp_path):
    import matplotlib.pyplot as plt

    adata, data, table, _ = run
    assert set(data.uns) - set(adata.uns) == {"maxtoki_evaluate"}
    pd.testing.assert_frame_equal(data.obs, adata.obs)
    assert (data.X != adata.X).nnz == 0
    np.testing.assert_array_equal(data.obsm["maxtoki_tokens"], adata.obsm["maxtoki_tokens"])
    assert list(data.uns["maxtoki_evaluate"]["params"]["heldout_donors"]) == HELDOUT_DONORS
    pd.testing.assert_frame_equal(mt.get.evaluate(data), table)
    ax = mt.pl.evaluation(data, show=False)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["heldout cell type", "heldout age", "heldout donor"]
    plt.close(ax.figure)


def test_without_heldout_donors_their_cells_train_the_baselines(run):
    adata, _, _, _ = run
    table, seen = _evaluate(adata.copy())
    assert list(table["split"].unique()) == ["heldout_cell_type", "heldout_age"]
    ages, donors, train, _ = _design(adata)
    back = train | (np.isin(donors, ["D02", "D07"]) & ~_design_masks(adata))
    ((_, y),) = seen["fits"]
    assert len(y) == back.sum() > train.sum()
    _assert_fitted_on(y, ages[back])


def _design_masks(adata):
    """Cells outside the reference, in the held-out cell types or in the held-out ages."""
    ages = adata.obs["age_months"].to_numpy(float)
    return (
        (adata.obs["condition"] != "control").to_numpy()
        | adata.obs["cell_type"].isin(adata.uns["aging_atlas"]["heldout_cell_types"]).to_numpy()
        | ((ages >= HELDOUT_AGES[0]) & (ages <= HELDOUT_AGES[1]))
    )
