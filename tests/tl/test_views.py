"""Views of a query (``n_views``): the cell, then copies with a share of its genes dropped.

``query_views`` is checked against what it promises (the cell first, then ordered subsets that
keep ``<bos>`` and ``<eos>``, the dropout share, nothing drawn for a single view), the prompts
against the view each context must get, and the tools: more views keep the same contexts and the
same number of model calls, the calibration reads its reference cells through the same views,
and a bad ``n_views`` is refused with the AnnData unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from tl_setup import MAX_GENES, controls, subset

import maxtoki as mt
from maxtoki.pp import PromptEncoder
from maxtoki.tl import _calibration, _contexts, _evaluate, _predict_time, _views


def _cell(n_genes: int, first: int = 10) -> np.ndarray:
    return np.concatenate([[2], np.arange(first, first + n_genes), [3]])


def test_views_are_the_cell_then_ordered_subsets():
    cells = [_cell(400), _cell(1), np.array([2, 3])]  # many genes, one gene, no gene
    views = _views.query_views(cells, 5, np.random.default_rng(0))
    assert [len(v) for v in views] == [5, 5, 5]
    for cell, own in zip(cells, views, strict=True):
        assert own[0] is cell
        for view in own[1:]:
            assert view[0] == 2 and view[-1] == 3
            genes = view[1:-1]
            assert np.isin(genes, cell[1:-1]).all() and (np.diff(genes) > 0).all()  # in order
            assert len(genes) >= min(1, len(cell) - 2)  # a view keeps a gene when it has one
    kept = np.mean([len(v) - 2 for v in views[0][1:]]) / 400
    assert abs(kept - (1 - _views.VIEW_DROPOUT)) < 0.05  # 1,600 draws: sd of the share 0.01
    again = _views.query_views(cells, 5, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for x, y in zip(views, again, strict=True)
               for a, b in zip(x, y, strict=True))  # fmt: skip


def test_one_view_is_the_cell_and_draws_nothing():
    gen = np.random.default_rng(0)
    before = gen.bit_generator.state
    cells = [_cell(5), _cell(3)]
    views = _views.query_views(cells, 1, gen)
    assert [len(v) for v in views] == [1, 1]
    assert all(v[0] is c for v, c in zip(views, cells, strict=True))
    assert gen.bit_generator.state == before


def test_contexts_read_the_views_in_turn(trained):
    _, vocab, _ = trained
    ids = np.sort(vocab.gene_token_ids)[:40]
    ref_cells = [np.concatenate([[vocab.bos_id], ids[i : i + 5], [vocab.eos_id]]) for i in (0, 5)]
    views = [np.concatenate([[vocab.bos_id], ids[i : i + 3], [vocab.eos_id]]) for i in (20, 30)]
    encoder = PromptEncoder(vocab, max_length=256, max_genes=MAX_GENES)
    contexts = np.array([[[0, 1]] * 4])
    prompts = _contexts.time_prompts(encoder, ref_cells, np.array([100.0, 300.0]), [views],
                                     contexts)  # fmt: skip
    plain = _contexts.time_prompts(encoder, ref_cells, np.array([100.0, 300.0]), [views[0]],
                                   contexts)  # fmt: skip
    assert len(prompts) == 4
    for c, prompt in enumerate(prompts):
        view = views[c % 2]
        assert np.array_equal(prompt[-len(view) - 1 : -1], view)  # ... <bos> genes <eos> <eoq>
        assert np.array_equal(prompt[: -len(view) - 1], plain[c][: -len(view) - 1])
    assert all(np.array_equal(p, plain[0]) for p in plain)  # one array: every context reads it


def _spy(monkeypatch, module, seen: list):
    real = module.predict_ages

    def spy(runner, encoder, ref_cells, ref_times, queries, contexts, *, desc):
        seen.append((queries, contexts))
        return real(runner, encoder, ref_cells, ref_times, queries, contexts, desc=desc)

    monkeypatch.setattr(module, "predict_ages", spy)


def test_predict_time_views_keep_the_contexts_and_the_calls(trained, monkeypatch):
    adata, vocab, model = trained
    sub = subset(controls(adata), 20, seed=5)
    kw = {"model": model, "vocab": vocab, "context": controls(adata), "n_contexts": 4,
          "max_genes": MAX_GENES, "random_state": 0, "copy": True, "calibrate": True}  # fmt: skip
    seen, calibration_seen = [], []
    _spy(monkeypatch, _predict_time, seen)
    _spy(monkeypatch, _calibration, calibration_seen)
    one = mt.tl.predict_time(sub, **kw)
    four = mt.tl.predict_time(sub, n_views=4, **kw)
    (q1, c1), (q4, c4) = seen
    np.testing.assert_array_equal(c1, c4)  # the views are drawn after the contexts
    assert all(len(q) == 1 for q in q1)  # one view: the cell itself, in every context
    assert all(len(v) == 4 and np.array_equal(v[0], q[0]) for v, q in zip(q4, q1, strict=True))
    assert all(not np.array_equal(v[1], v[0]) for v in q4)
    assert all(isinstance(q, list) and len(q) == 4 for q in calibration_seen[1][0])
    assert np.isfinite(four.obs["maxtoki_age"]).all()
    assert not np.allclose(four.obs["maxtoki_age"], one.obs["maxtoki_age"])
    assert four.uns["maxtoki_predict_time"]["params"]["n_views"] == 4
    assert one.uns["maxtoki_predict_time"]["params"]["n_views"] == 1


def test_evaluate_reads_every_query_through_its_views(trained, monkeypatch):
    adata, vocab, model = trained
    seen = []
    _spy(monkeypatch, _evaluate, seen)
    data = adata.copy()
    table = mt.tl.evaluate(
        data, model=model, vocab=vocab, heldout_ages=(400, 520), n_cells=20,
        n_contexts=3, n_views=3, n_boot=50, max_genes=MAX_GENES, ablations=["mask_query"],
        train_mask=(adata.obs["role"] == "train").to_numpy(),
    )  # fmt: skip
    assert len(seen) == 4  # two splits, the model and its ablation
    for queries, contexts in seen:
        assert contexts.shape[1] == 3 and all(len(q) == 3 for q in queries)
    rows = table[table["method"] == "maxtoki"]
    assert np.isfinite(rows["median_abs_error_months"].astype(float)).all()
    assert data.uns["maxtoki_evaluate"]["params"]["n_views"] == 3


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4"])
def test_n_views_must_be_a_positive_integer(trained, bad):
    adata, vocab, model = trained
    sub = subset(controls(adata), 5, seed=3)
    before = sub.copy()
    for tool in (mt.tl.predict_time, mt.tl.evaluate):
        with pytest.raises(ValueError, match="n_views must be a positive integer"):
            tool(sub, model=model, vocab=vocab, n_views=bad, max_genes=MAX_GENES)
    assert list(sub.obs) == list(before.obs) and sub.obs.equals(before.obs)
    assert set(sub.uns) == set(before.uns)
