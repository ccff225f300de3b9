"""The two-hot cross-entropy on the time tokens (``TrainConfig.time_class_weight``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import train_data as data

from maxtoki.models import predict_timelapse
from maxtoki.train import TrainConfig
from maxtoki.train._losses import _two_hot_time_ce

CONFIG = dataclasses.replace(data.TIME_CONFIG, time_scale=200.0)


def _numpy_two_hot_ce(logits: np.ndarray, target: np.ndarray, config) -> float:
    """The same loss written out: the renormalised time softmax against two-hot weights."""
    start, n = config.time_token_start_id, config.n_time_tokens
    time = logits[:, start : start + n].astype(np.float64)
    log_p = time - time.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    weights = np.zeros_like(log_p)
    values = np.arange(n) + config.time_min_months
    for row, months in enumerate(target):
        u = np.clip(months / config.time_scale, values[0], values[-1])
        weights[row] = np.clip(1 - np.abs(values - u), 0, None)  # the two nearest tokens
    return float(-(weights * log_p).sum(1).mean())


def test_two_hot_ce_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, CONFIG.vocab_size, generator=gen) * 3
    # between tokens, on a token, negative, and beyond either end of the answer range (clamped)
    target = torch.tensor([250.0, 400.0, -130.0, 0.0, 5000.0, -9000.0])
    got = float(_two_hot_time_ce(logits, target, CONFIG))
    assert got == pytest.approx(_numpy_two_hot_ce(logits.numpy(), target.numpy(), CONFIG), rel=1e-5)


@pytest.mark.parametrize("months", [250.0, -530.0, 20.0])
def test_its_optimum_reads_out_the_target(months):
    logits = torch.zeros(1, CONFIG.vocab_size, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(400):
        optimizer.zero_grad()
        _two_hot_time_ce(logits, torch.tensor([months]), CONFIG).backward()
        optimizer.step()
    read = float(predict_timelapse(logits.detach(), CONFIG)[0])
    assert read == pytest.approx(months, abs=5.0)


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="time_class_weight"):
        TrainConfig(time_class_weight=-1.0)
