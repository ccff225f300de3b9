"""``timelapse_ce_gain``: validation CE with NextCell timelapses rotated minus with true ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maxtoki.models import Collator
from maxtoki.train import TrainConfig
from maxtoki.train._distributed import DistInfo
from maxtoki.train._evaluation import _rotate_nextcell_timelapses, validation_metrics

BOQ, EOQ = 3, 4


def _example(task: int, dt_token: int, pad: int = 0) -> dict:
    """A NextCell prompt ``genes… <boq> Δt <eoq>`` answered by one token equal to Δt (task 1),
    or a TimeBetweenCells prompt without answer tokens (task 0)."""
    prompt = [10 + pad, 11, BOQ, dt_token, EOQ] if task == 1 else [10, 11, BOQ, 12, EOQ]
    answer = [dt_token] if task == 1 else []
    ids = np.array(prompt + answer, dtype=np.int64)
    labels = np.full(len(ids), -100, dtype=np.int64)
    labels[len(prompt) :] = answer
    target = 30.0 if task == 0 else float("nan")
    return {"input_ids": ids, "labels": labels, "task": task, "eoq_pos": len(prompt) - 1,
            "time_target": target}  # fmt: skip


def _answer_matches_timelapse(model, batch, details=False) -> dict:
    """A stand-in for ``batch_losses`` whose CE is 1 per NextCell answer that is not its Δt."""
    rows = (batch["task"] == 1).nonzero()[:, 0]
    at = batch["eoq_index"][rows]
    dt = batch["input_ids"][at[:, 0], at[:, 1] - 1]
    answer = batch["input_ids"][at[:, 0], at[:, 1] + 1]
    out = {"ce_sum": (dt != answer).float().sum(), "n_ce": len(rows), "time_sum": torch.tensor(0.0),
           "n_time": int((batch["task"] == 0).sum())}  # fmt: skip
    if details:
        out["timelapses"] = [[30.0, 30.0]] * out["n_time"]
    return out


def _validate(data: list[dict]) -> dict:
    """``validation_metrics`` in stage 2, micro-batches of 4, with the stand-in loss."""
    config = TrainConfig(stage=2, task_mix=0.5, global_batch_size=4, micro_batch_size=4)
    return validation_metrics(
        torch.nn.Identity(), data, collator=Collator(), losses=_answer_matches_timelapse,
        config=config, info=DistInfo(),
    )  # fmt: skip


def test_rotation_touches_only_nextcell_timelapses():
    batch = Collator()([_example(1, 100), _example(0, 0), _example(1, 101), _example(1, 102)])
    swapped, changed = _rotate_nextcell_timelapses(batch)
    assert changed
    diff = (swapped["input_ids"] != batch["input_ids"]).nonzero().tolist()
    assert diff == [[0, 3], [2, 3], [3, 3]]  # the Δt token of each NextCell row, nothing else
    assert sorted(swapped["input_ids"][[0, 2, 3], 3].tolist()) == [100, 101, 102]
    assert torch.equal(batch["input_ids"][1], swapped["input_ids"][1])


@pytest.mark.parametrize(
    "examples",
    [[_example(1, 100), _example(0, 0)], [_example(1, 100), _example(1, 100, pad=1)]],
    ids=["one NextCell prompt", "equal timelapses"],
)
def test_rotation_leaves_a_batch_it_cannot_change(examples):
    batch = Collator()(examples)
    swapped, changed = _rotate_nextcell_timelapses(batch)
    assert not changed and swapped is batch


def test_gain_is_the_ce_lost_with_wrong_timelapses():
    # 3 batches of 4: two with distinct NextCell timelapses (gain 1 nat per answer token each),
    # one with a single NextCell prompt (not counted)
    data = [_example(1, 100), _example(1, 101), _example(0, 0), _example(1, 102),
            _example(0, 0), _example(1, 103), _example(1, 104), _example(0, 0),
            _example(0, 0), _example(0, 0), _example(1, 105), _example(0, 0)]  # fmt: skip
    metrics = _validate(data)
    assert metrics["ce"] == 0.0  # the true timelapses: every answer matches
    assert metrics["timelapse_ce_gain"] == pytest.approx(1.0)


def test_gain_is_nan_without_nextcell_prompts_to_swap():
    data = [_example(0, 0), _example(1, 100), _example(0, 0), _example(0, 0)]
    metrics = _validate(data)
    assert np.isnan(metrics["timelapse_ce_gain"])
