"""The training objective of one batch: CE on the answers, the timelapse loss at ``<eoq>``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import predict_timelapse, timelapse_loss
from ._config import TrainConfig
from ._prompts import IGNORE_INDEX


def batch_losses(
    model: nn.Module,
    batch: dict[str, Any],
    *,
    device: torch.device,
    model_config,
    config: TrainConfig,
    details: bool = False,
) -> dict[str, Any]:
    """Forward one collated batch and return its losses.

    Parameters
    ----------
    model
        The (possibly wrapped) model; it computes logits only where a loss reads them.
    batch
        A :class:`~maxtoki.models.Collator` batch (on the CPU).
    device
        Where the model runs.
    model_config
        The model's :class:`~maxtoki.models.MaxTokiConfig` (the timelapse bins).
    config
        The :class:`TrainConfig` (``ce_weight``, ``time_weight``).
    details
        Also return the predicted and true timelapses in months (``timelapses``, one pair per
        TimeBetweenCells prompt).

    Returns
    -------
    ``loss`` (with gradient: ``ce_weight`` × CE + ``time_weight`` × timelapse loss; CE alone on
    a stage-1 batch), the detached ``ce``, ``time``, ``ce_sum`` and ``time_sum``, and the counts
    ``n_ce`` (answer tokens) and ``n_time`` (TimeBetweenCells prompts).
    """
    input_ids = batch["input_ids"].to(device, non_blocking=True)
    labels = batch["labels"].to(device, non_blocking=True)
    t = input_ids.shape[1]
    # position p predicts labels[p + 1]
    ce_pos = torch.zeros_like(labels, dtype=torch.bool)
    ce_pos[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    time_rows = (batch["task"] == 0).nonzero()[:, 0]
    eoq = batch["eoq_index"][time_rows].to(device)
    want = ce_pos.clone()
    if len(eoq):
        want[eoq[:, 0], eoq[:, 1]] = True
    kwargs = {
        "position_ids": batch["position_ids"].to(device, non_blocking=True),
        "attention_mask": batch["attention_mask"].to(device, non_blocking=True),
    }
    if "seq_ids" in batch:
        kwargs["seq_ids"] = batch["seq_ids"].to(device, non_blocking=True)
    logits = model(input_ids, logits_positions=want, **kwargs).logits  # (N, vocab), row-major
    rank = torch.cumsum(want.flatten(), 0) - 1
    zero = logits.sum() * 0.0  # keeps every rank's graph connected to the output layer
    out: dict[str, Any] = {"n_ce": int(ce_pos.sum()), "n_time": len(eoq)}
    if out["n_ce"]:
        sel = rank[ce_pos.flatten()]
        targets = labels[:, 1:][ce_pos[:, :-1]]
        ce_sum = F.cross_entropy(logits[sel].float(), targets, reduction="sum")
        ce = ce_sum / out["n_ce"]
    else:
        ce_sum = ce = zero
    if out["n_time"]:
        eoq_logits = logits[rank[eoq[:, 0] * t + eoq[:, 1]]]
        target = batch["time_target"][time_rows].to(device)
        time_loss = timelapse_loss(eoq_logits, target, model_config)
        if config.time_class_weight:
            time_loss = time_loss + config.time_class_weight * _two_hot_time_ce(
                eoq_logits, target, model_config
            )
        if details:
            pred = predict_timelapse(eoq_logits.detach(), model_config)[0]
            out["timelapses"] = torch.stack([pred, target], 1).float().cpu().tolist()
    else:
        time_loss = zero
        if details:
            out["timelapses"] = []
    if all(int(v) == 2 for v in batch["task"].tolist()):  # stage 1
        loss = ce + zero
    else:
        loss = config.ce_weight * ce + config.time_weight * time_loss + zero
    out.update(
        loss=loss,
        ce=ce.detach(),
        time=time_loss.detach(),
        ce_sum=ce_sum.detach(),
        time_sum=time_loss.detach() * out["n_time"],
    )
    return out


def _two_hot_time_ce(eoq_logits: torch.Tensor, target: torch.Tensor, model_config) -> torch.Tensor:
    """Cross-entropy of the time-token softmax at ``<eoq>`` against two-hot targets.

    ``Δt / time_scale`` falls between two neighbouring time tokens; the target puts weight on
    both in proportion to nearness, so its mean is ``Δt / time_scale`` and the loss's optimum
    reads out the same expected value as the timelapse loss. Unlike that loss, its gradient
    (``softmax − target``) does not vanish where the softmax is peaked on a wrong token.
    """
    start, n = model_config.time_token_start_id, model_config.n_time_tokens
    log_p = eoq_logits[:, start : start + n].float().log_softmax(-1)
    at = (target.float() / model_config.time_scale - model_config.time_min_months).clamp(0, n - 1)
    low = at.floor().long()
    high = (low + 1).clamp(max=n - 1)
    upper = at - low
    picked = (1 - upper) * log_p.gather(1, low[:, None])[:, 0]
    picked = picked + upper * log_p.gather(1, high[:, None])[:, 0]
    return -picked.mean()
