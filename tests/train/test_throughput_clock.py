"""Tokens/s of a log window counts training time only: validation inside the window is left out."""

from __future__ import annotations

import time

import pytest

from maxtoki.train._distributed import DistInfo
from maxtoki.train._metrics import TrainWindow

STEP = {"loss": 1.0, "ce": 1.0, "time": 0.0, "tokens": 1000, "skipped": 0}


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    return now


def _row(window: TrainWindow) -> dict:
    return window.row(
        step=2, lr=1e-3, grad_norm=1.0, n_params=10, peak_flops=1.0, info=DistInfo(),
        run_started=100.0,
    )  # fmt: skip


def test_validation_inside_a_window_is_not_training_time(clock):
    window = TrainWindow()
    clock[0] += 2.0  # a training step of 2 s
    window.add(STEP)
    with window.paused():
        clock[0] += 10.0  # validation
    clock[0] += 2.0  # another step
    window.add(STEP)
    # 2,000 tokens in 4 s of training; counting from after the validation (the old clock) gave
    # 1,000 tokens/s, counting the validation 143
    assert _row(window)["tokens_per_s"] == pytest.approx(500.0)


def test_a_new_window_starts_its_clock(clock):
    window = TrainWindow()
    clock[0] += 7.0
    window.reset()
    clock[0] += 2.0
    window.add(STEP)
    assert _row(window)["tokens_per_s"] == pytest.approx(500.0)
