"""The official TimeBetweenCells loss."""

from __future__ import annotations

import torch

from ._config import MaxTokiConfig
from ._time_regression import _time_logits


def timelapse_loss(
    logits_at_eoq: torch.Tensor, target_months: torch.Tensor, config: MaxTokiConfig
) -> torch.Tensor:
    """``MSE(pred / label_scale, target / label_scale) + non_time_penalty × mean non-time mass``.

    ``pred`` is the expected timelapse of :func:`predict_timelapse`; the penalty pushes the full
    softmax at ``<eoq>`` onto the time tokens.

    Parameters
    ----------
    logits_at_eoq
        ``(B, vocab_size)`` logits at the ``<eoq>`` positions.
    target_months
        ``(B,)`` true timelapses in months.
    config
        Supplies the time-token layout, ``label_scale`` and ``non_time_penalty``.

    Returns
    -------
    The scalar loss (float32).
    """
    time_logits, log_time_mass = _time_logits(logits_at_eoq, config)
    target = torch.as_tensor(target_months, device=time_logits.device).float()
    if target.shape != time_logits.shape[:-1]:
        raise ValueError(
            f"target_months must have shape {tuple(time_logits.shape[:-1])} (one per logits row), "
            f"got {tuple(target.shape)}."
        )
    months = torch.arange(config.n_time_tokens, device=time_logits.device, dtype=torch.float32)
    pred = (time_logits.softmax(-1) * (months + config.time_min_months)).sum(-1)
    mse = ((pred - target) / config.label_scale).pow(2).mean()
    return mse + config.non_time_penalty * (-torch.expm1(log_time_mass)).mean()
