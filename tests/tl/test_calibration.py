"""Calibration of the timelapse read-out on reference cells (``calibrate=True``).

The fitted lines are checked against ``numpy.polyfit`` on the same pairs, the leave-donor-out
line against a fit without that donor's pairs, and ``predict_time(calibrate=True)`` against its
uncalibrated output mapped through the stored lines.
"""

from __future__ import annotations

import numpy as np
import pytest
from tl_setup import MAX_GENES, controls, fake_reference, subset

import maxtoki as mt
from maxtoki.tl import _calibration

A, B = -40.0, 0.6  # the fake model's read-out: predicted = A + B × true (+ noise)


@pytest.fixture
def fake_model(monkeypatch):
    """``predict_ages`` replaced by ``A + B × true`` plus noise, keeping every pair it made."""
    pairs = []
    gen = np.random.default_rng(1)

    def predict_ages(runner, encoder, ref_cells, ref_times, queries, contexts, *, desc):
        rows = np.array([int(np.ravel(q[0])[0]) - 1000 for q in queries])  # a cell or its views
        true = ref_times[rows][:, None] - ref_times[contexts[:, :, -1]]
        dts = A + B * true + gen.normal(0, 30, true.shape)
        pairs.append((rows, contexts, true, dts))
        return ref_times[contexts[:, :, -1]] + dts, dts

    monkeypatch.setattr(_calibration, "predict_ages", predict_ages)
    return pairs


def test_lines_match_polyfit_and_leave_the_donor_out(fake_model):
    ref = fake_reference(12, 6)
    cal = _calibration.fit_calibration(
        None, None, ref, np.array(["a", "b"]), n_context_cells=2,
        gen=np.random.default_rng(0), desc="test",
    )  # fmt: skip
    rows, contexts, true, dts = fake_model[0]
    for g in ("a", "b"):
        mine = ref.groups[rows] == g
        slope, intercept = np.polyfit(true[mine].ravel(), dts[mine].ravel(), 1)
        a, b, n = cal.line(g)
        assert n == mine.sum() * contexts.shape[1]
        np.testing.assert_allclose([a, b], [intercept, slope], rtol=1e-9, atol=1e-6)
        assert abs(b - B) < 0.05 and abs(a - A) < 25  # the fake read-out is recovered
        # leaving donor d3 out drops every pair with a d3 cell, as query or in the context
        donor_of = ref.donors
        keep = (
            ~((donor_of[rows][:, None] == "d3") | (donor_of[contexts] == "d3").any(axis=2))
            & mine[:, None]
        )
        slope, intercept = np.polyfit(true[keep], dts[keep], 1)
        a, b, n = cal.line(g, "d3")
        assert n == keep.sum() < cal.line(g)[2]
        np.testing.assert_allclose([a, b], [intercept, slope], rtol=1e-9, atol=1e-6)
    # apply inverts the read-out: (A + B × t − a) / b ≈ t
    t = np.array([[-300.0, 0.0, 500.0]])
    back = cal.apply(A + B * t, np.array(["a"]), np.array(["d0"]))
    np.testing.assert_allclose(back, t, atol=40)


def test_flat_or_missing_lines_leave_timelapses_unchanged():
    flat = np.array([100.0, 0.0, 500.0, 100_000.0, 0.0])  # slope 0: the model reads nothing
    cal = _calibration.Calibration({"a": flat}, {})
    assert cal.line("a") is None and cal.line("zzz") is None
    dts = np.array([[10.0, -20.0], [3.0, 4.0]])
    out = cal.apply(dts, np.array(["a", "zzz"]), None)
    np.testing.assert_array_equal(out, dts)


def test_uncalibrated_groups_are_warned_about_unless_told_not_to(caplog):
    cal = _calibration.Calibration({}, {})
    dts = np.array([[10.0, -20.0]])
    with caplog.at_level("WARNING", logger="maxtoki"):
        cal.apply(dts, np.array(["a"]), None)
        assert sum("left uncalibrated" in r.getMessage() for r in caplog.records) == 1
        cal.apply(dts, np.array(["a"]), None, warn=False)  # the second pass's read
        assert sum("left uncalibrated" in r.getMessage() for r in caplog.records) == 1


def test_predict_time_calibrated_is_the_raw_read_out_through_the_lines(trained):
    adata, vocab, model = trained
    sub = subset(controls(adata), 40, seed=3)
    kw = {"model": model, "vocab": vocab, "context": controls(adata), "n_contexts": 3,
          "max_genes": MAX_GENES, "random_state": 0, "donor_key": None, "copy": True}  # fmt: skip
    raw = mt.tl.predict_time(sub, **kw)
    cal = mt.tl.predict_time(sub, calibrate=True, **kw)
    uns = cal.uns["maxtoki_predict_time"]
    assert (
        uns["params"]["calibrate"] is True and "calibration" not in raw.uns["maxtoki_predict_time"]
    )
    lines = {g: (a, b) for g, a, b in zip(
        uns["calibration"]["group"], uns["calibration"]["intercept_months"],
        uns["calibration"]["slope"], strict=True)}  # fmt: skip
    groups = (sub.obs["cell_type"].astype(str) + "|" + sub.obs["sex"].astype(str)).to_numpy()
    assert set(groups) <= set(lines)
    a = np.array([lines[g][0] for g in groups])
    b = np.array([lines[g][1] for g in groups])
    usable = np.isfinite(b)
    assert usable.any()
    expected = np.where(
        usable,
        (raw.obs["maxtoki_timelapse"] - a) / np.where(usable, b, 1),
        raw.obs["maxtoki_timelapse"],
    )
    np.testing.assert_allclose(cal.obs["maxtoki_timelapse"], expected, rtol=1e-6, atol=1e-3)
    assert np.isfinite(cal.obs["maxtoki_age"]).all()


def test_calibrate_must_be_a_bool(trained):
    adata, vocab, model = trained
    sub = subset(controls(adata), 5, seed=3)
    before = sub.copy()
    with pytest.raises(TypeError, match="calibrate must be True or False"):
        mt.tl.predict_time(sub, model=model, vocab=vocab, calibrate="yes", max_genes=MAX_GENES)
    assert "maxtoki_age" not in sub.obs and sub.obs.equals(before.obs)


def test_paired_ages_go_through_the_line(trained, monkeypatch):
    """A fixed line ``y = 25 + x`` moves every paired cell's age by −25: differences unchanged."""
    from maxtoki.tl import _paired

    adata, vocab, model = trained
    sub = predicted_subset(adata)
    kw = {"method": "paired", "model": model, "vocab": vocab, "context": controls(adata),
          "stratify_by": "cell_type", "n_contexts": 2, "age_match": 120,
          "max_genes": MAX_GENES, "n_boot": 200, "random_state": 0, "copy": True}  # fmt: skip
    raw = mt.tl.age_acceleration(sub, **kw)
    line = np.array([1e6, 0.0, 25e6, 1e6, 1e6])  # n, Σx, Σy, Σx², Σxy: y = 25 + x
    fixed = _calibration.Calibration(dict.fromkeys(_groups(adata), line), {})
    monkeypatch.setattr(_paired, "fit_calibration", lambda *args, **kwargs: fixed)
    cal = mt.tl.age_acceleration(sub, calibrate=True, **kw)
    assert cal.uns["maxtoki_age_acceleration"]["params"]["calibrate"] is True
    key = "maxtoki_age_acceleration"
    done = np.isfinite(raw.obs[key]).to_numpy()
    assert done.any() and np.array_equal(done, np.isfinite(cal.obs[key]).to_numpy())
    np.testing.assert_allclose(cal.obs[key][done], raw.obs[key][done] - 25, atol=1e-6)
    effects = [mt.get.age_acceleration(x)["effect_months"] for x in (raw, cal)]
    np.testing.assert_allclose(effects[1], effects[0], atol=1e-6)


def predicted_subset(adata):
    keep = adata.obs["cell_type"].isin(["fibroblast", "microglia"]) & adata.obs["role"].isin(
        ["disease", "reference"]
    )
    return adata[keep.to_numpy()].copy()


def _groups(adata):
    return set((adata.obs["cell_type"].astype(str) + "|" + adata.obs["sex"].astype(str)).tolist())


def test_evaluate_reports_the_calibrated_row(trained, monkeypatch):
    """``maxtoki_calibrated`` is the model's row read through the lines: the identity line
    ``y = x`` gives the ``maxtoki`` row back in every split; real lines give their own row."""
    from maxtoki.tl import _evaluate

    adata, vocab, model = trained
    kw = {"model": model, "vocab": vocab, "heldout_ages": (400, 520), "n_cells": 60,
          "n_contexts": 2, "n_boot": 50, "max_genes": MAX_GENES,
          "train_mask": (adata.obs["role"] == "train").to_numpy()}  # fmt: skip
    real = mt.tl.evaluate(adata.copy(), calibrate=True, **kw).set_index(["split", "method"])
    for split in ("heldout_cell_type", "heldout_age"):
        row = real.loc[(split, "maxtoki_calibrated")]
        assert row["n_cells"] == real.loc[(split, "maxtoki"), "n_cells"]
        assert np.isfinite(row[["median_abs_error_months", "pearson_r"]].astype(float)).all()
    identity = np.array([1e6, 0.0, 0.0, 1e6, 1e6])  # n, Σx, Σy, Σx², Σxy: y = x
    fixed = _calibration.Calibration(dict.fromkeys(_groups(adata), identity), {})
    monkeypatch.setattr(_evaluate, "fit_calibration", lambda *args, **kwargs: fixed)
    same = mt.tl.evaluate(adata.copy(), calibrate=True, **kw).set_index(["split", "method"])
    cols = ["median_abs_error_months", "pearson_r", "bias_months"]
    for split in ("heldout_cell_type", "heldout_age"):
        np.testing.assert_allclose(
            same.loc[(split, "maxtoki_calibrated"), cols].astype(float),
            same.loc[(split, "maxtoki"), cols].astype(float),
        )
