"""A run's state in checkpoints: the one to resume from, its state restored, rank 0's write.

Also the early-stopping watch on the validation loss, whose state travels in the checkpoint.
"""

from __future__ import annotations

import math
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


class EarlyStopping:
    """Watch the validation loss; stop after ``patience`` evaluations without improvement.

    An evaluation improves when its loss is below the best so far minus ``min_delta``; a
    non-finite loss never improves. ``patience=None`` never stops. The state (best loss, its step,
    the evaluations since) is saved in checkpoints, so a resumed run stops where the
    uninterrupted one would.
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.bad_evals = 0

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` evaluations in a row did not improve."""
        return self.patience is not None and self.bad_evals >= self.patience

    def update(self, loss: float, step: int) -> bool:
        """Record the validation loss of ``step``; return :attr:`should_stop`."""
        loss = float(loss)
        if math.isfinite(loss) and loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self.bad_evals = loss, int(step), 0
        else:
            self.bad_evals += 1
        return self.should_stop

    def state_dict(self) -> dict[str, Any]:
        """Plain values for the trainer state (``weights_only``-safe)."""
        return {
            "best_loss": self.best_loss,
            "best_step": -1 if self.best_step is None else self.best_step,
            "bad_evals": self.bad_evals,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict` output (``None``: a checkpoint from before early stopping)."""
        if state is None:
            return
        self.best_loss = float(state["best_loss"])
        self.best_step = None if int(state["best_step"]) < 0 else int(state["best_step"])
        self.bad_evals = int(state["bad_evals"])

    def describe(self) -> str:
        """``"best val loss 1.2345 at step 40, no improvement in the last 3 evaluations"``."""
        if self.best_step is None:
            return f"no finite val loss in {self.bad_evals} evaluations"
        return (
            f"best val loss {self.best_loss:.4f} at step {self.best_step}, no improvement in the "
            f"last {self.bad_evals} evaluations"
        )
