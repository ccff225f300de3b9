"""A run's state in checkpoints: the one to resume from, its state restored, rank 0's write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import _checkpoint as ckpt
from ._config import TrainConfig
from ._distributed import DistInfo, broadcast_object
from ._optim import restore_optimizer


def load_resume_checkpoint(
    model: nn.Module, config: TrainConfig, info: DistInfo
) -> tuple[str | None, dict[str, Any] | None]:
    """Load the weights of the checkpoint ``config.resume`` names into ``model`` (all ranks).

    Rank 0 resolves the checkpoint and tells the others. Returns its path and trainer state, or
    ``(None, None)`` for a fresh run.
    """
    resume_from = None
    if info.is_main:
        resume_from = ckpt.resolve_resume(config.resume, config.out_dir)
    resume_from = broadcast_object(None if resume_from is None else str(resume_from), info)
    if resume_from is None:
        return None, None
    loaded = type(model).from_pretrained(resume_from, device="cpu")
    model.load_state_dict(loaded.state_dict())
    del loaded
    return resume_from, ckpt.load_trainer_state(resume_from)


def restore_run_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    state: dict[str, Any],
    config: TrainConfig,
    info: DistInfo,
) -> tuple[int, int, float]:
    """Restore the optimizer, the scheduler and this rank's RNG state from a trainer state.

    Returns
    -------
    The optimizer step, the micro-batches drawn (where the data order resumes) and the training
    seconds elapsed.
    """
    restore_optimizer(model, optimizer, scheduler, state, config)
    step = int(state["step"])
    micro_done = int(state["micro_batches"])
    elapsed = float(state.get("elapsed_s", 0.0))  # elapsed_s continues
    rngs = state["rng"]
    ckpt.set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
    return step, micro_done, elapsed


def write_on_main(write: Callable[[], Path], info: DistInfo) -> Path | None:
    """Run ``write`` on rank 0; every rank raises if it failed (all ranks call).

    Rank 0 re-raises its own error; the others raise an ``OSError`` naming it.
    """
    path = None
    error = None
    if info.is_main:
        try:
            path = write()
        except BaseException as e:  # tell the other ranks before failing
            error = e
    failed = broadcast_object(None if error is None else repr(error), info)
    if error is not None:
        raise error
    if failed is not None:
        raise OSError(f"rank 0 failed to write the checkpoint: {failed}")
    return path
