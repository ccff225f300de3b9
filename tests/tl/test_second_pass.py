"""The second pass (``second_pass=True``): contexts drawn around a first estimate of the age.

The kept contexts are checked against the candidates the pass drew (the nearest last-cell ages
to the first estimate, never the query nor its donor), the read-out against a fake model and a
known calibration line, and the tools against their own first pass: the query's true age never
enters, the same seed gives the same ages, both passes' reads are aggregated together, and bad
flags leave the AnnData unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from tl_setup import MAX_GENES, controls, fake_reference, subset

import maxtoki as mt
from maxtoki.tl import _evaluate, _predict_time, _second_pass
from maxtoki.tl._calibration import Calibration

A, B = -40.0, 0.6  # the fake model's read-out: predicted = A + B × true


@pytest.fixture
def spies(monkeypatch):
    """The candidates the pass draws, and a model reading ``A + B × true`` timelapses."""
    seen = {"candidates": []}
    draw = _second_pass.draw_contexts

    def spy_draw(*args, **kwargs):
        out = draw(*args, **kwargs)
        seen["candidates"].append(out)
        return out

    def predict_ages(runner, encoder, ref_cells, ref_times, queries, contexts, *, desc):
        rows = np.array([int(q[0]) - 1000 for q in queries])
        dts = A + B * (ref_times[rows][:, None] - ref_times[contexts[:, :, -1]])
        return ref_times[contexts[:, :, -1]] + dts, dts

    monkeypatch.setattr(_second_pass, "draw_contexts", spy_draw)
    monkeypatch.setattr(_second_pass, "predict_ages", predict_ages)
    return seen


def _refine(ref, rows, first, seed=0, calibration=None, n_contexts=3):
    return _second_pass.refine_ages(
        None, None, ref, [ref.cells[r] for r in rows], ref.groups[rows], ref.donors[rows], rows,
        first, n_contexts=n_contexts, n_context_cells=2, gen=np.random.default_rng(seed),
        groupby="group", desc="test", calibration=calibration,
    )  # fmt: skip


def test_keeps_the_candidates_nearest_the_first_estimate(spies):
    ref = fake_reference(10, 8, groups=("g",))
    rows = np.arange(0, 80, 7)
    first = np.linspace(100, 900, len(rows))  # estimates unrelated to the true ages
    ages, dts, contexts = _refine(ref, rows, first)
    (candidates,) = spies["candidates"]
    assert candidates.shape == (len(rows), _second_pass.OVERSAMPLE * 3, 2)
    assert contexts.shape == (len(rows), 3, 2) and ages.shape == dts.shape == (len(rows), 3)
    for i, r in enumerate(rows):
        kept = {tuple(c) for c in contexts[i]}
        assert kept <= {tuple(c) for c in candidates[i]}
        distance = np.abs(ref.times[candidates[i, :, -1]] - first[i])
        kept_distance = np.abs(ref.times[contexts[i, :, -1]] - first[i])
        assert kept_distance.max() <= np.sort(distance)[2] + 1e-9  # the 3 nearest
        assert r not in contexts[i] and not (ref.donors[contexts[i]] == ref.donors[r]).any()
    # the model's reads from the kept contexts, as they are without a calibration
    true = ref.times[rows][:, None] - ref.times[contexts[:, :, -1]]
    np.testing.assert_allclose(dts, A + B * true)
    np.testing.assert_allclose(ages, ref.times[contexts[:, :, -1]] + dts)


def test_reads_through_the_calibration_line_and_is_deterministic(spies):
    ref = fake_reference(10, 8, groups=("g",))
    rows = np.arange(3, 80, 5)
    first = np.full(len(rows), 500.0)
    line = Calibration({"g": np.array([1e6, 0.0, A * 1e6, 1e6, B * 1e6])}, {})  # y = A + B x
    ages, dts, contexts = _refine(ref, rows, first, calibration=line)
    # the line inverts the fake read-out: every age is the query's true age
    np.testing.assert_allclose(ages, np.repeat(ref.times[rows][:, None], 3, axis=1), atol=1e-6)
    again = _refine(ref, rows, first, calibration=line)
    for x, y in zip((ages, dts, contexts), again, strict=True):
        np.testing.assert_array_equal(x, y)
    other = _refine(ref, rows, first, seed=1, calibration=line)[2]
    assert not np.array_equal(other, contexts)


@pytest.mark.parametrize("first", [np.zeros(3), np.array([1.0, np.nan] * 6 + [1.0])])
def test_first_ages_must_be_one_finite_age_per_query(spies, first):
    ref = fake_reference(10, 8, groups=("g",))
    with pytest.raises(ValueError, match="first_ages must hold one finite age per query"):
        _refine(ref, np.arange(13), first)


def test_predict_time_never_reads_the_true_age(trained):
    """Queries read against a separate reference: their own ages can be anything."""
    adata, vocab, model = trained
    sub = subset(controls(adata), 30, seed=4)
    kw = {"model": model, "vocab": vocab, "context": controls(adata), "n_contexts": 2,
          "max_genes": MAX_GENES, "random_state": 0, "copy": True}  # fmt: skip
    out = mt.tl.predict_time(sub, second_pass=True, calibrate=True, **kw)
    shifted = sub.copy()
    shifted.obs["age_months"] = np.random.default_rng(0).permutation(sub.obs["age_months"]) + 99
    again = mt.tl.predict_time(shifted, second_pass=True, calibrate=True, **kw)
    for key in ("maxtoki_age", "maxtoki_timelapse", "maxtoki_age_std"):
        np.testing.assert_array_equal(out.obs[key], again.obs[key])
    first = mt.tl.predict_time(sub, calibrate=True, **kw)
    assert np.isfinite(out.obs["maxtoki_age"]).all()
    assert not np.allclose(out.obs["maxtoki_age"], first.obs["maxtoki_age"])
    assert out.uns["maxtoki_predict_time"]["params"]["second_pass"] is True
    assert first.uns["maxtoki_predict_time"]["params"]["second_pass"] is False


def test_second_pass_must_be_a_bool(trained):
    adata, vocab, model = trained
    sub = subset(controls(adata), 5, seed=3)
    before = sub.copy()
    for tool in (mt.tl.predict_time, mt.tl.evaluate):
        with pytest.raises(TypeError, match="second_pass must be True or False"):
            tool(sub, model=model, vocab=vocab, second_pass=1, max_genes=MAX_GENES)
    assert list(sub.obs) == list(before.obs) and sub.obs.equals(before.obs)
    assert set(sub.uns) == set(before.uns)


def test_evaluate_starts_the_second_pass_from_the_calibrated_row(trained, monkeypatch):
    adata, vocab, model = trained
    seen = {"first": [], "predictions": []}
    refine, predict = _evaluate.refine_ages, _evaluate._model_predictions

    def spy_refine(*args, **kwargs):
        seen["first"].append(np.array(args[7]))
        return refine(*args, **kwargs)

    def spy_predict(*args, **kwargs):
        preds, context_rows = predict(*args, **kwargs)
        seen["predictions"].append((preds, context_rows))
        return preds, context_rows

    monkeypatch.setattr(_evaluate, "refine_ages", spy_refine)
    monkeypatch.setattr(_evaluate, "_model_predictions", spy_predict)
    table = mt.tl.evaluate(
        adata.copy(), model=model, vocab=vocab, heldout_ages=(400, 520), n_cells=40,
        n_contexts=2, n_boot=50, max_genes=MAX_GENES, calibrate=True, second_pass=True,
        train_mask=(adata.obs["role"] == "train").to_numpy(),
    ).set_index(["split", "method"])  # fmt: skip
    assert len(seen["first"]) == len(seen["predictions"]) == 2  # one per split
    for first, (preds, context_rows) in zip(seen["first"], seen["predictions"], strict=True):
        np.testing.assert_array_equal(first, preds["maxtoki_calibrated"])
        assert context_rows.shape[1] == 4  # both passes' contexts, for sgd_offset
    for split in ("heldout_cell_type", "heldout_age"):
        row = table.loc[(split, "maxtoki_second_pass")]
        assert row["n_cells"] == table.loc[(split, "maxtoki"), "n_cells"]
        assert np.isfinite(row[["median_abs_error_months", "pearson_r"]].astype(float)).all()


class _Reads:
    """Spies on a tool's first-pass reads and the second pass's reads, both per context."""

    def __init__(self, monkeypatch, module):
        self.first, self.second = [], []
        predict, refine = module.predict_ages, module.refine_ages

        def spy_predict(*args, **kwargs):
            out = predict(*args, **kwargs)
            self.first.append(out[0])
            return out

        def spy_refine(*args, **kwargs):
            out = refine(*args, **kwargs)
            self.second.append(out[0])
            return out

        monkeypatch.setattr(module, "predict_ages", spy_predict)
        monkeypatch.setattr(module, "refine_ages", spy_refine)


def test_predict_time_aggregates_both_passes_reads(trained, monkeypatch):
    adata, vocab, model = trained
    sub = subset(controls(adata), 20, seed=5)
    reads = _Reads(monkeypatch, _predict_time)
    kw = {"model": model, "vocab": vocab, "context": controls(adata), "n_contexts": 2,
          "max_genes": MAX_GENES, "random_state": 0, "copy": True}  # fmt: skip
    out = mt.tl.predict_time(sub, second_pass=True, **kw)
    (first,), (second,) = reads.first, reads.second
    both = np.hstack([first, second])
    assert both.shape == (sub.n_obs, 4)
    np.testing.assert_allclose(out.obs["maxtoki_age"], np.median(both, axis=1))
    np.testing.assert_allclose(out.obs["maxtoki_age_std"], both.std(axis=1, ddof=1))
    mean = mt.tl.predict_time(sub, second_pass=True, aggregate="mean", **kw)
    both = np.hstack([reads.first[1], reads.second[1]])
    np.testing.assert_allclose(mean.obs["maxtoki_age"], both.mean(axis=1))


def test_evaluate_second_pass_row_is_the_median_of_both_passes(trained, monkeypatch):
    adata, vocab, model = trained
    reads = _Reads(monkeypatch, _evaluate)
    seen = []
    predict = _evaluate._model_predictions

    def spy(*args, **kwargs):
        preds, context_rows = predict(*args, **kwargs)
        seen.append(preds)
        return preds, context_rows

    monkeypatch.setattr(_evaluate, "_model_predictions", spy)
    mt.tl.evaluate(
        adata.copy(), model=model, vocab=vocab, heldout_ages=(400, 520), n_cells=30,
        n_contexts=2, n_boot=20, max_genes=MAX_GENES, second_pass=True,
        train_mask=(adata.obs["role"] == "train").to_numpy(),
    )  # fmt: skip
    assert len(seen) == len(reads.first) == len(reads.second) == 2  # one per split
    for preds, first, second in zip(seen, reads.first, reads.second, strict=True):
        np.testing.assert_allclose(preds["maxtoki"], np.median(first, axis=1))
        np.testing.assert_allclose(
            preds["maxtoki_second_pass"], np.median(np.hstack([first, second]), axis=1)
        )
