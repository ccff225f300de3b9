"""The optimizer: AdamW (no weight decay on norms and biases), warm-up + cosine LR, resume."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ._config import TrainConfig
from ._distributed import load_optimizer_state_dict


class WarmupCosine:
    """Learning-rate factor: linear warm-up, then cosine decay to ``min_ratio`` (picklable)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(self.total - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _schedule(config: TrainConfig) -> WarmupCosine:
    return WarmupCosine(config.warmup_steps, config.steps, config.min_lr_ratio)


def build_optimizer(
    model: nn.Module, config: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (decay on matrices only) and its LR scheduler."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    return optimizer, scheduler


def restore_optimizer(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    state: dict[str, Any],
    config: TrainConfig,
) -> None:
    """Load a checkpoint's optimizer and scheduler state; the schedule follows ``config``.

    A resumed run may be longer than the checkpointed one (more ``steps``): the LR factor of
    the current step is recomputed from this config's schedule.
    """
    load_optimizer_state_dict(model, optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    schedule = _schedule(config)
    scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * schedule(scheduler.last_epoch)


def clipped_grad_norm(model: nn.Module, max_norm: float) -> float:
    """The total gradient norm, the gradients clipped to ``max_norm`` first when it is > 0."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def set_total_steps(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, total: int
) -> None:
    """End the warm-up + cosine schedule at ``total`` steps (the current LR follows at once)."""
    for schedule in scheduler.lr_lambdas:
        schedule.total = int(total)
    for group, base, schedule in zip(
        optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * schedule(scheduler.last_epoch)
