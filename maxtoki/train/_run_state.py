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

from .. import logging as logg
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


class TimeBudget:
    """Fit a run into ``seconds`` of wall clock by choosing its number of steps.

    After ``calibrate_at`` steps (a tenth of ``steps``, between 1 and 20), the seconds per step
    and per validation measured so far give the number of steps that fit in what is left of the
    budget; the run then has that many steps (never more than ``steps``) and its learning-rate
    schedule ends there. The rate leaves out the first ``calibrate_at // 2`` steps of the
    process, which can run ~1.5× slower (warm-up). A run that still overruns stops once the
    budget is spent. The plan is saved in checkpoints, so a resumed run keeps it.
    ``seconds=None`` keeps ``steps``.
    """

    def __init__(self, seconds: float | None, steps: int, eval_interval: int):
        self.seconds, self.total, self.eval_interval = seconds, int(steps), int(eval_interval)
        self.calibrate_at = max(1, min(20, steps // 10))
        self.untimed_steps = self.calibrate_at // 2
        self.planned = seconds is None
        self.train_seconds = self.eval_seconds = 0.0
        self.n_seen = self.n_evals = 0  # steps run and validations timed in this process

    @property
    def n_steps(self) -> int:
        """Steps timed into the rate (those after the untimed first ones)."""
        return max(0, self.n_seen - self.untimed_steps)

    def time_step(self, seconds: float) -> None:
        """Count one training step's seconds (not into the rate while warming up)."""
        self.n_seen += 1
        if self.n_steps:
            self.train_seconds += seconds

    def plan(self, step: int, elapsed: float) -> int | None:
        """The new total number of steps once calibrated (else ``None``)."""
        if self.planned or self.n_seen < self.calibrate_at:
            return None
        self.planned = True
        per_step = self.train_seconds / self.n_steps
        per_eval = self.eval_seconds / self.n_evals if self.n_evals else 0.0
        left = self.seconds - elapsed - per_eval  # the last step validates
        more = int(max(left, 0.0) / (per_step + per_eval / self.eval_interval))
        self.total = min(self.total, step + max(more, 0))
        return self.total

    def follow(self, step: int, elapsed: float, every: int, info: DistInfo) -> bool:
        """Plan at the calibration step; end the run once the budget is spent.

        Checked every ``every`` steps; rank 0 decides for all ranks. Returns whether ``total``
        changed.
        """
        if self.seconds is None or (self.planned and step % every):
            return False
        old, planned = self.total, self.planned
        self.plan(step, elapsed)
        if elapsed >= self.seconds:
            self.total = min(self.total, step)
        self.total = broadcast_object(self.total, info)
        if self.total != old and info.is_main:
            rate = not planned and self.planned  # planned by this call
            why = f"{self.train_seconds / self.n_steps:.3g} s per step" if rate else "spent"
            logg.info(f"time budget {self.seconds:g} s ({why}): {self.total} steps")
        return self.total != old

    def state_dict(self) -> dict[str, Any]:
        """The plan, for checkpoints."""
        return {"seconds": self.seconds, "total": self.total, "planned": self.planned}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Keep the plan of a checkpoint made under the same budget (else plan afresh)."""
        if state and self.seconds is not None and state.get("seconds") == self.seconds:
            self.total = min(self.total, int(state["total"]))
            self.planned = bool(state["planned"])


def write_model(raw: nn.Module, path: Path, full_state: dict[str, torch.Tensor] | None) -> None:
    """``save_pretrained`` of ``raw``, or under FSDP2 of a plain copy holding ``full_state``."""
    if full_state is None:
        raw.save_pretrained(path)
    else:
        copy = type(raw)(raw.config, vocab=raw.vocab)
        copy.load_state_dict(full_state)
        copy.save_pretrained(path)
