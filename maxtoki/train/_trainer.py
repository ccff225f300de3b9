"""The training loop: AdamW, warm-up + cosine, accumulation, eval, checkpoints, torchrun."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import logging as logg
from .._settings import settings
from ..models import Collator
from . import _checkpoint as ckpt
from ._batches import ShardedBatches as ShardedBatches  # re-exported (tests import it from here)
from ._batches import threads_beside_workers, train_loader
from ._config import TrainConfig
from ._distributed import (
    DistInfo,
    all_gather_list,
    barrier,
    full_model_state_dict,
    init_distributed,
    is_sharded,
    optimizer_state_dict,
    parallelize,
)
from ._evaluation import validation_metrics
from ._losses import batch_losses
from ._metrics import (
    METRICS_FILE,
    TrainWindow,
    append_metrics,
    peak_flops,
    plain,
    start_metrics_file,
)
from ._model import attach_vocab
from ._optim import build_optimizer, set_total_steps
from ._readout import start_time_readout
from ._run_state import (
    EarlyStopping,
    TimeBudget,
    load_resume_checkpoint,
    restore_run_state,
    write_model,
    write_on_main,
)
from ._step import NonFiniteLossError as NonFiniteLossError  # re-exported
from ._step import optimizer_step
from ._tracking import Tracker, flat_params, make_tracker, tracker_metrics


class Trainer:
    """Train a MaxToki model on temporal prompts (stage 2) or single cells (stage 1).

    A plain PyTorch loop: AdamW (no decay on norms), linear warm-up then cosine decay, gradient
    accumulation from the global and micro batch sizes, gradient clipping, bf16 autocast on CUDA,
    optional ``torch.compile`` and activation checkpointing, DDP or FSDP2 under ``torchrun``.
    The loss is ``ce_weight`` × cross-entropy on NextCell answers (stage 1: on every gene) plus
    ``time_weight`` × the timelapse loss at ``<eoq>`` of TimeBetweenCells prompts.

    Parameters
    ----------
    model
        A :class:`~maxtoki.models.MaxToki` (plain: the trainer moves, wraps and shards it).
    train_dataset
        :class:`~maxtoki.train.PromptDataset` or :class:`~maxtoki.train.CellDataset` (or any
        dataset of the same example dicts).
    eval_dataset
        Validation examples (``None``: no validation).
    config
        The :class:`TrainConfig`.
    collator
        Batch builder; by default a :class:`Collator` honouring ``config.pack``.
    vocab
        The vocabulary of the training tokens; by default ``train_dataset.vocab``. A model
        without one takes it (``model.vocab``, saved with the model in checkpoints); one that
        disagrees with the model raises a ``ValueError``.
    tracker
        Where else the metrics go (rank 0): any object with ``log_params``, ``log_metrics`` and
        ``close`` (:class:`~maxtoki.train.Tracker`); by default the one ``config.tracker`` names
        (TensorBoard, MLflow or none). A tracker passed here is not closed by the trainer.

    Attributes
    ----------
    early_stopping
        The validation-loss watch (``config.early_stopping_patience``): ``best_loss``,
        ``best_step``, ``bad_evals`` and ``should_stop``, which is ``True`` after a run that
        stopped early.

    Examples
    --------
    >>> trainer = mt.train.Trainer(model, train, val, mt.train.TrainConfig(steps=500))
    >>> history = trainer.fit()
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset,
        eval_dataset=None,
        config: TrainConfig | None = None,
        *,
        collator: Collator | None = None,
        vocab=None,
        tracker: Tracker | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a MaxToki (torch.nn.Module), got {type(model).__name__}"
            )
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if tracker is not None and not isinstance(tracker, Tracker):
            raise TypeError(
                "tracker must have log_params(params), log_metrics(metrics, step) and close() "
                f"methods (see mt.train.Tracker), got {type(tracker).__name__}"
            )
        if config.early_stopping_patience is not None and eval_dataset is None:
            raise ValueError(
                "early_stopping_patience watches the validation loss: pass an eval_dataset, or "
                "set early_stopping_patience=None"
            )
        self.model = model
        self.config = config
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.vocab = vocab if vocab is not None else getattr(train_dataset, "vocab", None)
        attach_vocab(model, self.vocab)
        max_length = config.max_length or getattr(
            getattr(model, "config", None), "max_position_embeddings", None
        )
        self.collator = collator or Collator(
            pad_id=getattr(getattr(model, "config", None), "pad_token_id", 0) or 0,
            vocab_size=getattr(getattr(model, "config", None), "vocab_size", None),
            pack=config.pack,
            max_length=max_length,
        )
        self.history: list[dict[str, Any]] = []
        self.early_stopping = EarlyStopping(
            config.early_stopping_patience, config.early_stopping_min_delta
        )
        self._user_tracker = tracker
        self._tracker: Tracker | None = None
        self._elapsed = 0.0  # training seconds before this run (restored on resume)
        self.step = 0
        self.info: DistInfo | None = None

    # -- public ---------------------------------------------------------------------------------
    def fit(self) -> pd.DataFrame:
        """Run ``config.steps`` optimizer steps (continuing from a checkpoint with ``resume``).

        Returns
        -------
        The metrics of this run, one row per log or validation (``kind`` is ``"train"`` or
        ``"eval"``), also appended to ``out_dir/metrics.jsonl`` when ``out_dir`` is set.

        Notes
        -----
        Under ``torchrun`` the process group is joined here and left open (for
        :meth:`save_model`); end it with :func:`maxtoki.train.destroy_distributed`.
        """
        self.info = init_distributed(self.config.device)
        return self._fit(self.info)

    def save_model(self, path: str | os.PathLike) -> None:
        """Write the trained model (and vocabulary) as a ``save_pretrained`` folder (rank 0).

        Every rank must call it under FSDP2 (the shards are gathered).
        """
        info = self.info or DistInfo()
        state = full_model_state_dict(self._wrapped, info) if is_sharded(self._wrapped) else None
        if info.is_main:
            write_model(self.raw_model, Path(path), state)
        barrier(info)

    # -- setup ----------------------------------------------------------------------------------
    def _fit(self, info: DistInfo) -> pd.DataFrame:
        cfg = self.config
        _seed_everything(cfg.seed + info.rank)
        world = info.world_size
        if cfg.global_batch_size % (cfg.micro_batch_size * world):
            raise ValueError(
                f"global_batch_size ({cfg.global_batch_size}) must be a multiple of "
                f"micro_batch_size × world size ({cfg.micro_batch_size} × {world})"
            )
        self.accum = cfg.global_batch_size // (cfg.micro_batch_size * world)
        raw = self.model.to(info.device)
        self.raw_model = raw
        self._mcfg = getattr(raw, "config", None)
        self.n_params = sum(p.numel() for p in raw.parameters())
        resume_from, state = load_resume_checkpoint(raw, cfg, info)
        if state is None and cfg.stage == 2 and cfg.time_readout_start:
            start_time_readout(raw, self.train_dataset, self.collator)
        model, bf16 = self._parallelize(raw, info)
        self.optimizer, self.scheduler = build_optimizer(model, cfg)
        self.step = micro_done = 0
        self.early_stopping = EarlyStopping(
            cfg.early_stopping_patience, cfg.early_stopping_min_delta
        )
        self.budget = TimeBudget(cfg.time_budget, cfg.steps, cfg.eval_interval)
        if state is not None:
            self.step, micro_done, self._elapsed = restore_run_state(
                model, self.optimizer, self.scheduler, state, cfg, info
            )
            self.early_stopping.load_state_dict(state.get("early_stopping"))
            self.budget.load_state_dict(state.get("time_budget"))
            set_total_steps(self.optimizer, self.scheduler, self.budget.total)
            if info.is_main:
                logg.info(f"resumed from {resume_from} at step {self.step}")

        self._peak = peak_flops(cfg.peak_flops, info.device, bf16)
        self._metrics_path = Path(cfg.out_dir) / METRICS_FILE if cfg.out_dir else None
        if info.is_main and self._metrics_path is not None:
            start_metrics_file(self._metrics_path, resumed_at=None if state is None else self.step)
        loader = train_loader(self.train_dataset, self.collator, cfg, info, start=micro_done)
        if info.is_main:
            strategy = cfg.distributed if info.initialized else "single process"
            logg.info(
                f"training {self.n_params:,} parameters for {cfg.steps} steps on {info.device} "
                f"(world size {world}, {strategy}): "
                f"{len(self.train_dataset)} training examples, global batch "
                f"{cfg.global_batch_size} = "
                f"{cfg.micro_batch_size} × {self.accum} accumulation × {world} ranks"
            )
            self._tracker = self._user_tracker or make_tracker(
                cfg, resumed_at=None if state is None else self.step
            )
        threads = torch.get_num_threads()
        torch.set_num_threads(threads_beside_workers(cfg, info.device))
        try:
            if self._tracker is not None:
                self._tracker.log_params(flat_params(plain(cfg.to_dict())))
            return self._loop(model, loader, micro_done, fresh=state is None)
        finally:
            torch.set_num_threads(threads)
            if self._tracker is not None and self._user_tracker is None:
                self._tracker.close()
            self._tracker = None

    def _parallelize(self, raw: nn.Module, info: DistInfo) -> tuple[nn.Module, bool]:
        """Wrap, shard or compile ``raw`` per the config; choose autocast. Returns ``bf16`` too."""
        cfg = self.config
        cuda = info.device.type == "cuda"
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        self._wrapped = model = parallelize(
            raw,
            info=info,
            strategy=cfg.distributed,
            compile=cfg.compile,
            activation_checkpointing=cfg.activation_checkpointing,
            mixed_precision=bf16 and cuda,
        )
        sharded = is_sharded(model)
        self._autocast = (
            torch.autocast(info.device.type, dtype=torch.bfloat16)
            if bf16 and not (sharded and cuda)
            else None
        )
        return model, bf16

    # -- loop -----------------------------------------------------------------------------------
    def _loop(self, model: nn.Module, loader, micro_done: int, *, fresh: bool) -> pd.DataFrame:
        cfg, info = self.config, self.info
        from tqdm.auto import tqdm

        budget = self.budget
        bar = tqdm(
            total=budget.total,
            initial=self.step,
            disable=cfg.quiet or not info.is_main or not settings.show_progress,
            desc="maxtoki train",
            dynamic_ncols=True,
        )
        it = iter(loader)  # start DataLoader workers before evaluation touches the token source
        t0 = time.perf_counter() - self._elapsed
        if fresh and cfg.eval_at_start and self.eval_dataset is not None:
            row = self.evaluate()
            self._record(row)
            self.early_stopping.update(row["loss"], self.step)
        window = TrainWindow()
        stop = self._stopped_early()  # a run resumed from the checkpoint of an early stop
        try:
            while self.step < budget.total and not stop:
                model.train()
                started = time.perf_counter()
                step_stats = self._train_step(model, it, micro_done)
                budget.time_step(time.perf_counter() - started)
                micro_done += self.accum
                self.step += 1
                window.add(step_stats)
                bar.update(1)
                if budget.follow(self.step, time.perf_counter() - t0, cfg.log_interval, info):
                    bar.total = budget.total
                    set_total_steps(self.optimizer, self.scheduler, budget.total)
                last = self.step == budget.total
                if self.step % cfg.log_interval == 0 or last:
                    row = self._train_row(window, step_stats, t0)
                    self._record(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:,.0f}")
                    window.reset()
                if self.eval_dataset is not None and (self.step % cfg.eval_interval == 0 or last):
                    with window.paused():
                        row = self.evaluate()
                    row["elapsed_s"] = time.perf_counter() - t0
                    self._record(row)
                    if info.is_main and not cfg.quiet:
                        mae = row.get("mae_months", float("nan"))
                        bar.write(
                            f"step {self.step}: val loss {row['loss']:.4f}, "
                            f"time MAE {mae:.1f} months"
                        )
                    self.early_stopping.update(row["loss"], self.step)
                    stop = self._stopped_early()
                    if stop and window.steps:  # the steps since the last train row
                        self._record(self._train_row(window, step_stats, t0))
                if cfg.out_dir and (
                    last
                    or stop
                    or (cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0)
                ):
                    self._elapsed = time.perf_counter() - t0
                    with window.paused():
                        self.save_checkpoint(micro_done)
        finally:
            bar.close()
        return pd.DataFrame(self.history)

    def _train_row(self, window: TrainWindow, step_stats: dict, t0: float) -> dict[str, Any]:
        return window.row(
            step=self.step, lr=self.scheduler.get_last_lr()[0],
            grad_norm=step_stats["grad_norm"], n_params=self.n_params, peak_flops=self._peak,
            info=self.info, run_started=t0,
        )  # fmt: skip

    def _stopped_early(self) -> bool:
        """Whether early stopping ends the run now (logged once, on rank 0)."""
        if not self.early_stopping.should_stop:
            return False
        if self.info.is_main:
            logg.info(
                f"early stopping at step {self.step} of {self.config.steps}: "
                f"{self.early_stopping.describe()} (early_stopping_patience "
                f"{self.config.early_stopping_patience})"
            )
        return True

    def _train_step(self, model: nn.Module, it, micro_done: int) -> dict[str, float]:
        return optimizer_step(
            model, it, accum=self.accum, losses=self._losses, autocast=self._autocast,
            optimizer=self.optimizer, scheduler=self.scheduler, config=self.config,
            info=self.info, step=self.step, micro_done=micro_done,
        )  # fmt: skip

    # -- losses and evaluation ------------------------------------------------------------------
    def _losses(
        self, model: nn.Module, batch: dict[str, Any], *, details: bool = False
    ) -> dict[str, Any]:
        """Forward one batch; CE on answers and the timelapse loss at ``<eoq>``."""
        return batch_losses(
            model,
            batch,
            device=self.info.device,
            model_config=self._mcfg,
            config=self.config,
            details=details,
        )

    def evaluate(self) -> dict[str, Any]:
        """Validation loss, CE, timelapse loss and timelapse errors (months) on ``eval_dataset``.

        Every rank evaluates its share; the numbers are summed over ranks.
        """
        if not hasattr(self, "_wrapped") or self.eval_dataset is None:
            raise RuntimeError("evaluate() runs during or after fit(), on an eval_dataset")
        started = time.perf_counter()
        metrics = validation_metrics(
            self._wrapped,
            self.eval_dataset,
            collator=self.collator,
            losses=self._losses,
            config=self.config,
            info=self.info or DistInfo(),
            autocast=self._autocast,
        )
        self.budget.eval_seconds += time.perf_counter() - started
        self.budget.n_evals += 1
        return {"kind": "eval", "step": self.step, **metrics}

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, micro_done: int | None = None) -> Path | None:
        """Write a checkpoint of the current step to ``out_dir`` (rank 0 writes; all ranks call)."""
        cfg, info = self.config, self.info
        if cfg.out_dir is None:
            raise ValueError("set `out_dir` to write checkpoints")
        model = self._wrapped
        sharded = is_sharded(model)
        full = full_model_state_dict(model, info) if sharded else None
        optim = optimizer_state_dict(model, self.optimizer, info)
        rngs = (
            all_gather_list([ckpt.rng_state()], info) if info.world_size > 1 else [ckpt.rng_state()]
        )

        def write() -> Path:
            state = {
                "step": self.step,
                "micro_batches": micro_done if micro_done is not None else self.step * self.accum,
                "elapsed_s": self._elapsed,
                "optimizer": optim,
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs,
                "early_stopping": self.early_stopping.state_dict(),
                "time_budget": self.budget.state_dict(),
                "world_size": info.world_size,
                "config": plain(self.config.to_dict()),
            }
            return ckpt.save_checkpoint(
                cfg.out_dir,
                self.step,
                write_model=lambda p: write_model(self.raw_model, p, full),
                trainer_state=state,
                keep_last=cfg.keep_last,
            )

        return write_on_main(write, info)

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.info.is_main and self._metrics_path is not None:
            append_metrics(self._metrics_path, row)
        if self.info.is_main and self._tracker is not None:
            self._tracker.log_metrics(tracker_metrics(row), step=int(row["step"]))


# --- helpers -------------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state some libraries use)
    torch.manual_seed(seed)
