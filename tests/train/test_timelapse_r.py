"""``timelapse_r`` of the validation pass, and the warning of a run that does not read time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from maxtoki.models import Collator
from maxtoki.tl._train import MIN_TIME_PROMPTS, _warn_if_time_unread
from maxtoki.train import TrainConfig
from maxtoki.train._distributed import DistInfo
from maxtoki.train._evaluation import validation_metrics

TARGETS = np.array([-300.0, -40.0, 0.5, 12.0, 60.0, 75.0, 240.0, 610.0, -900.0, 33.0])


def _prompt(target: float) -> dict:
    """A TimeBetweenCells prompt ``genes… <boq> cell <eoq>`` whose true timelapse is ``target``."""
    ids = np.array([10, 11, 3, 12, 4], dtype=np.int64)
    return {"input_ids": ids, "labels": np.full(5, -100, dtype=np.int64), "task": 0,
            "eoq_pos": 4, "time_target": target}  # fmt: skip


def _read_as_square(model, batch, details=False) -> dict:
    """A stand-in for ``batch_losses`` predicting ``target² / 100`` for every prompt."""
    target = batch["time_target"].double()
    out = {"ce_sum": torch.tensor(0.0), "n_ce": 0, "time_sum": torch.tensor(0.0),
           "n_time": len(target)}  # fmt: skip
    if details:
        out["timelapses"] = torch.stack([target**2 / 100, target], 1).tolist()
    return out


def test_validation_r_and_errors_are_numpys_over_every_prompt():
    config = TrainConfig(stage=2, task_mix=1.0, global_batch_size=4, micro_batch_size=4)
    metrics = validation_metrics(
        torch.nn.Identity(), [_prompt(t) for t in TARGETS], collator=Collator(),
        losses=_read_as_square, config=config, info=DistInfo(),
    )  # fmt: skip
    predicted = TARGETS**2 / 100
    assert metrics["timelapse_r"] == pytest.approx(np.corrcoef(predicted, TARGETS)[0, 1])
    assert metrics["median_ae_months"] == pytest.approx(np.median(np.abs(predicted - TARGETS)))
    assert metrics["mae_months"] == pytest.approx(np.mean(np.abs(predicted - TARGETS)))


def _history(r: float, n_time_prompts: int = 35) -> pd.DataFrame:
    rows = [
        {"kind": "eval", "step": 0, "n_time_prompts": 0, "timelapse_r": np.nan},  # stage 1
        {"kind": "train", "step": 500, "n_time_prompts": np.nan, "timelapse_r": np.nan},
        {"kind": "eval", "step": 500, "n_time_prompts": n_time_prompts, "timelapse_r": r},
    ]
    return pd.DataFrame(rows)


def _warned(caplog, history: pd.DataFrame) -> list[str]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="maxtoki"):
        _warn_if_time_unread(history)
    return [r.getMessage() for r in caplog.records if "reads time poorly" in r.getMessage()]


@pytest.mark.parametrize("r", [-0.07, 0.0, 0.66, 0.78, np.nan])
def test_a_run_whose_timelapses_follow_the_truth_poorly_is_warned_about(caplog, r):
    (message,) = _warned(caplog, _history(r))
    assert "after 500 steps" in message and "35 validation prompts" in message


@pytest.mark.parametrize(
    "history",
    [_history(0.97), _history(0.05, n_time_prompts=MIN_TIME_PROMPTS - 1),
     _history(0.05).drop(columns="timelapse_r")],
    ids=["reads time", "too few prompts to judge", "no timelapse_r (stage 1)"],
)  # fmt: skip
def test_no_warning_where_time_is_read_or_cannot_be_judged(caplog, history):
    assert _warned(caplog, history) == []
