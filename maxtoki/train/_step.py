"""One optimizer step of the trainer: accumulation, non-finite checks, clipping."""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from .. import logging as logg
from ._distributed import all_reduce_sum
from ._optim import clipped_grad_norm


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN/inf."""


def optimizer_step(
    model: nn.Module, it, *, accum: int, losses, autocast, optimizer, scheduler,
    config, info, step: int, micro_done: int,
) -> dict[str, float]:  # fmt: skip
    """One optimizer step over ``accum`` micro-batches drawn from ``it``; its statistics.

    A non-finite loss or gradient norm raises, or (``on_nan="skip"``) discards the whole step
    on every rank alike: its remaining micro-batches are drawn but not used, so the data
    position stays aligned and no rank applies gradients the others did not reduce.
    """
    cfg = config
    totals = {"loss": 0.0, "ce": 0.0, "time": 0.0, "tokens": 0}
    used, skip = 0, False
    for k in range(accum):
        batch = next(it)
        if skip:
            continue
        with _grad_sync(model, enabled=k == accum - 1):
            with autocast or nullcontext():
                out = losses(model, batch)
            loss = out["loss"]
            bad = not bool(torch.isfinite(loss.detach()))
            if info.initialized and info.world_size > 1:
                flag = torch.tensor([float(bad)], device=info.device)
                bad = bool(all_reduce_sum(flag, info)[0] > 0)
            if bad:
                where = (
                    f"step {step + 1}, micro-batch {k + 1}/{accum} "
                    f"(rank {info.rank}, micro-batch #{micro_done + k}, "
                    f"dataset indices {batch['index'][:16]})"
                )
                if cfg.on_nan == "raise":
                    raise NonFiniteLossError(
                        f"non-finite loss ({float(loss.detach())}) at {where}; lower the "
                        "learning rate, check these examples, or set on_nan='skip'"
                    )
                logg.warning(f"skipping the step: non-finite loss at {where}")
                skip = True
                continue
            (loss / accum).backward()
        used += 1
        totals["loss"] += float(loss.detach())
        totals["ce"] += float(out["ce"])
        totals["time"] += float(out["time"])
        totals["tokens"] += int(batch["n_tokens"])
    grad_norm = float("nan")
    if not skip:
        grad_norm = clipped_grad_norm(model, cfg.grad_clip)
        if not math.isfinite(grad_norm):
            if cfg.on_nan == "raise":
                raise NonFiniteLossError(
                    f"non-finite gradient norm at step {step + 1}; lower the learning "
                    "rate or set on_nan='skip'"
                )
            logg.warning(f"skipping step {step + 1}: non-finite gradient norm")
            skip = True
    if skip:
        optimizer.zero_grad(set_to_none=True)
    optimizer.step()  # a no-op when the step was skipped (no gradients)
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    n = max(used, 1)
    return {
        "loss": totals["loss"] / n if used else float("nan"),
        "ce": totals["ce"] / n,
        "time": totals["time"] / n,
        "tokens": totals["tokens"],
        "skipped": int(skip),
        "grad_norm": grad_norm,
    }


def _grad_sync(model: nn.Module, *, enabled: bool):
    """Skip the gradient all-reduce on accumulation micro-batches (DDP ``no_sync``, FSDP2 flag)."""
    if hasattr(model, "no_sync") and hasattr(model, "require_backward_grad_sync"):
        return nullcontext() if enabled else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(enabled)
    return nullcontext()
