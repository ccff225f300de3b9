"""The training loop: AdamW, warm-up + cosine, accumulation, eval, checkpoints, torchrun."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import logging as logg
from .._settings import settings
from ..models import Collator
from . import _checkpoint as ckpt
from ._config import TrainConfig
from ._distributed import (
    DistInfo,
    all_gather_list,
    all_reduce_sum,
    barrier,
    broadcast_object,
    full_model_state_dict,
    init_distributed,
    is_sharded,
    load_optimizer_state_dict,
    optimizer_state_dict,
    parallelize,
)
from ._model import attach_vocab
from ._prompts import IGNORE_INDEX

METRICS_FILE = "metrics.jsonl"
# dense bf16 peak FLOP/s of one accelerator, by a substring of torch.cuda.get_device_name()
_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN/inf."""


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


class ShardedBatches:
    """Deterministic, resumable micro-batches of one rank.

    The examples of all ranks form one stream of shuffled epochs (a new permutation per epoch,
    from ``seed``); rank ``r`` takes stream positions ``r, r + world, …``. Micro-batch ``j`` of
    every rank is therefore fixed by ``(seed, j)``, so a run resumes at any micro-batch.
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int, rank: int = 0, world: int = 1, start: int = 0
    ):
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def batch(self, j: int) -> list[int]:
        """Dataset indices of micro-batch ``j`` of this rank."""
        pos = (j * self.batch_size + np.arange(self.batch_size)) * self.world + self.rank
        out = []
        for p in pos:
            epoch, k = divmod(int(p), self.n)
            out.append(int(self._perm(epoch)[k]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        j = self.start
        while True:
            yield self.batch(j)
            j += 1


class _Indexed:
    """Adds the dataset index to every example (to name a bad batch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        example = dict(self.dataset[i])
        example["index"] = int(i)
        return example


class _IndexedCollate:
    """Picklable collate function (DataLoader workers) that keeps dataset indices."""

    def __init__(self, collator: Collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        batch["index"] = [e["index"] for e in examples]
        return batch


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
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a MaxToki (torch.nn.Module), got {type(model).__name__}"
            )
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
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
            self._write_model(Path(path), state)
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
        mcfg = getattr(raw, "config", None)
        self.n_params = sum(p.numel() for p in raw.parameters())

        resume_from = None
        if info.is_main:
            resume_from = ckpt.resolve_resume(cfg.resume, cfg.out_dir)
        resume_from = broadcast_object(None if resume_from is None else str(resume_from), info)
        state = None
        if resume_from is not None:
            loaded = type(raw).from_pretrained(resume_from, device="cpu")
            raw.load_state_dict(loaded.state_dict())
            del loaded
            state = ckpt.load_trainer_state(resume_from)

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
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        self.optimizer = optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
        )
        self.scheduler = scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, WarmupCosine(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        )
        micro_done = 0
        if state is not None:
            load_optimizer_state_dict(model, optimizer, state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            # the schedule follows this config (e.g. more steps than the checkpointed run)
            schedule = WarmupCosine(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
            scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * schedule(scheduler.last_epoch)
            self.step = int(state["step"])
            micro_done = int(state["micro_batches"])
            self._elapsed = float(state.get("elapsed_s", 0.0))  # elapsed_s continues
            rngs = state["rng"]
            ckpt.set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
            if info.is_main:
                logg.info(f"resumed from {resume_from} at step {self.step}")
        else:
            self.step = 0

        self._mcfg = mcfg
        self._peak = _peak_flops(cfg.peak_flops, info.device, bf16)
        self._metrics_path = Path(cfg.out_dir) / METRICS_FILE if cfg.out_dir else None
        if info.is_main and self._metrics_path is not None:
            self._metrics_path.parent.mkdir(parents=True, exist_ok=True)
            if state is None:
                self._metrics_path.write_text("")
            else:
                _truncate_metrics(self._metrics_path, self.step)

        sampler = ShardedBatches(
            len(self.train_dataset),
            cfg.micro_batch_size,
            seed=cfg.seed,
            rank=info.rank,
            world=world,
            start=micro_done,
        )
        loader = torch.utils.data.DataLoader(
            _Indexed(self.train_dataset),
            batch_sampler=sampler,
            collate_fn=_IndexedCollate(self.collator),
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            multiprocessing_context="spawn" if cfg.num_workers > 0 else None,
            # its own generator: each new iterator draws a seed from it, and drawing from the
            # global one would leave a resumed run's RNG states off the uninterrupted run's
            generator=torch.Generator().manual_seed(cfg.seed + info.rank),
        )
        if info.is_main:
            strategy = cfg.distributed if info.initialized else "single process"
            logg.info(
                f"training {self.n_params:,} parameters for {cfg.steps} steps on {info.device} "
                f"(world size {world}, {strategy}): "
                f"{len(self.train_dataset)} training examples, global batch "
                f"{cfg.global_batch_size} = "
                f"{cfg.micro_batch_size} × {self.accum} accumulation × {world} ranks"
            )
        return self._loop(model, loader, micro_done, fresh=state is None)

    # -- loop -----------------------------------------------------------------------------------
    def _loop(self, model: nn.Module, loader, micro_done: int, *, fresh: bool) -> pd.DataFrame:
        cfg, info = self.config, self.info
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=cfg.quiet or not info.is_main or not settings.show_progress,
            desc="maxtoki train",
            dynamic_ncols=True,
        )
        it = iter(loader)  # start DataLoader workers before evaluation touches the token source
        if fresh and cfg.eval_at_start and self.eval_dataset is not None:
            self._record(self.evaluate())
        window = {"loss": 0.0, "ce": 0.0, "time": 0.0, "n": 0, "tokens": 0, "skipped": 0}
        t_window = time.perf_counter()
        t0 = time.perf_counter() - self._elapsed
        try:
            while self.step < cfg.steps:
                model.train()
                step_stats = self._train_step(model, it, micro_done)
                micro_done += self.accum
                self.step += 1
                for k in ("loss", "ce", "time"):
                    window[k] += step_stats[k]
                window["n"] += 1
                window["tokens"] += step_stats["tokens"]
                window["skipped"] += step_stats["skipped"]
                bar.update(1)
                last = self.step == cfg.steps
                if self.step % cfg.log_interval == 0 or last:
                    elapsed = time.perf_counter() - t_window
                    tokens = float(
                        all_reduce_sum(
                            torch.tensor([float(window["tokens"])], device=info.device), info
                        )[0]
                    )
                    tps = tokens / max(elapsed, 1e-9)
                    n = max(window["n"], 1)
                    row = {
                        "kind": "train",
                        "step": self.step,
                        "loss": window["loss"] / n,
                        "ce": window["ce"] / n,
                        "time_loss": window["time"] / n,
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": step_stats["grad_norm"],
                        "tokens_per_s": tps,
                        "mfu": 6 * self.n_params * tps / (self._peak * info.world_size),
                        "skipped_steps": window["skipped"],
                        "elapsed_s": time.perf_counter() - t0,
                    }
                    self._record(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{tps:,.0f}")
                    window = dict.fromkeys(window, 0)
                    window["loss"] = window["ce"] = window["time"] = 0.0
                    t_window = time.perf_counter()
                if self.eval_dataset is not None and (self.step % cfg.eval_interval == 0 or last):
                    row = self.evaluate()
                    row["elapsed_s"] = time.perf_counter() - t0
                    self._record(row)
                    if info.is_main and not cfg.quiet:
                        mae = row.get("mae_months", float("nan"))
                        bar.write(
                            f"step {self.step}: val loss {row['loss']:.4f}, "
                            f"time MAE {mae:.1f} months"
                        )
                    t_window = time.perf_counter()
                if cfg.out_dir and (
                    last or (cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0)
                ):
                    self._elapsed = time.perf_counter() - t0
                    self.save_checkpoint(micro_done)
                    t_window = time.perf_counter()
        finally:
            bar.close()
        return pd.DataFrame(self.history)

    def _train_step(self, model: nn.Module, it, micro_done: int) -> dict[str, float]:
        """One optimizer step over ``accum`` micro-batches.

        A non-finite loss or gradient norm raises, or (``on_nan="skip"``) discards the whole step
        on every rank alike: its remaining micro-batches are drawn but not used, so the data
        position stays aligned and no rank applies gradients the others did not reduce.
        """
        cfg, info = self.config, self.info
        totals = {"loss": 0.0, "ce": 0.0, "time": 0.0, "tokens": 0}
        used, skip = 0, False
        for k in range(self.accum):
            batch = next(it)
            if skip:
                continue
            with _grad_sync(model, enabled=k == self.accum - 1):
                with self._autocast or nullcontext():
                    out = self._losses(model, batch)
                loss = out["loss"]
                bad = not bool(torch.isfinite(loss.detach()))
                if info.initialized and info.world_size > 1:
                    flag = torch.tensor([float(bad)], device=info.device)
                    bad = bool(all_reduce_sum(flag, info)[0] > 0)
                if bad:
                    where = (
                        f"step {self.step + 1}, micro-batch {k + 1}/{self.accum} "
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
                (loss / self.accum).backward()
            used += 1
            totals["loss"] += float(loss.detach())
            totals["ce"] += float(out["ce"])
            totals["time"] += float(out["time"])
            totals["tokens"] += int(batch["n_tokens"])
        grad_norm = float("nan")
        if not skip:
            params = [p for p in model.parameters() if p.grad is not None]
            if cfg.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
            if not math.isfinite(grad_norm):
                if cfg.on_nan == "raise":
                    raise NonFiniteLossError(
                        f"non-finite gradient norm at step {self.step + 1}; lower the learning "
                        "rate or set on_nan='skip'"
                    )
                logg.warning(f"skipping step {self.step + 1}: non-finite gradient norm")
                skip = True
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.step()  # a no-op when the step was skipped (no gradients)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        n = max(used, 1)
        return {
            "loss": totals["loss"] / n if used else float("nan"),
            "ce": totals["ce"] / n,
            "time": totals["time"] / n,
            "tokens": totals["tokens"],
            "skipped": int(skip),
            "grad_norm": grad_norm,
        }

    # -- losses ---------------------------------------------------------------------------------
    def _losses(
        self, model: nn.Module, batch: dict[str, Any], *, details: bool = False
    ) -> dict[str, Any]:
        """Forward one batch; CE on answers and the timelapse loss at ``<eoq>``."""
        from ..models import predict_timelapse, timelapse_loss

        dev = self.info.device
        cfg = self.config
        input_ids = batch["input_ids"].to(dev, non_blocking=True)
        labels = batch["labels"].to(dev, non_blocking=True)
        t = input_ids.shape[1]
        # position p predicts labels[p + 1]
        ce_pos = torch.zeros_like(labels, dtype=torch.bool)
        ce_pos[:, :-1] = labels[:, 1:] != IGNORE_INDEX
        time_rows = (batch["task"] == 0).nonzero()[:, 0]
        eoq = batch["eoq_index"][time_rows].to(dev)
        want = ce_pos.clone()
        if len(eoq):
            want[eoq[:, 0], eoq[:, 1]] = True
        kwargs = {
            "position_ids": batch["position_ids"].to(dev, non_blocking=True),
            "attention_mask": batch["attention_mask"].to(dev, non_blocking=True),
        }
        if "seq_ids" in batch:
            kwargs["seq_ids"] = batch["seq_ids"].to(dev, non_blocking=True)
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
            target = batch["time_target"][time_rows].to(dev)
            time_loss = timelapse_loss(eoq_logits, target, self._mcfg)
            if details:
                pred = predict_timelapse(eoq_logits.detach(), self._mcfg)[0]
                out["abs_err"] = (pred - target).abs().float().cpu().tolist()
        else:
            time_loss = zero
            if details:
                out["abs_err"] = []
        if all(int(v) == 2 for v in batch["task"].tolist()):  # stage 1
            loss = ce + zero
        else:
            loss = cfg.ce_weight * ce + cfg.time_weight * time_loss + zero
        out.update(
            loss=loss,
            ce=ce.detach(),
            time=time_loss.detach(),
            ce_sum=ce_sum.detach(),
            time_sum=time_loss.detach() * out["n_time"],
        )
        return out

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Validation loss, CE, timelapse loss and timelapse errors (months) on ``eval_dataset``.

        Every rank evaluates its share; the numbers are summed over ranks.
        """
        if not hasattr(self, "_wrapped") or self.eval_dataset is None:
            raise RuntimeError("evaluate() runs during or after fit(), on an eval_dataset")
        cfg, info = self.config, self.info or DistInfo()
        model = self._wrapped
        model.eval()
        n = len(self.eval_dataset)
        per_rank = -(-n // info.world_size)
        n_batches = -(-per_rank // cfg.micro_batch_size)
        if cfg.eval_batches is not None:
            n_batches = min(n_batches, cfg.eval_batches)
        mine = list(range(info.rank, n, info.world_size))
        sums = torch.zeros(4, dtype=torch.float64)  # ce_sum, n_ce, time_sum, n_time
        errors: list[float] = []
        for j in range(n_batches):
            idx = mine[j * cfg.micro_batch_size : (j + 1) * cfg.micro_batch_size]
            examples = [self.eval_dataset[i] for i in idx]
            if not examples:  # keep the ranks in step (FSDP2): a dummy batch that counts nothing
                dummy = dict(self.eval_dataset[0])
                dummy["labels"] = np.full_like(dummy["labels"], IGNORE_INDEX)
                dummy["task"] = -1
                examples = [dummy]
            batch = self.collator(examples)
            with self._autocast or nullcontext():
                out = self._losses(model, batch, details=True)
            sums += torch.tensor(
                [float(out["ce_sum"]), out["n_ce"], float(out["time_sum"]), out["n_time"]],
                dtype=torch.float64,
            )
            errors += out["abs_err"]
        sums = all_reduce_sum(sums.to(info.device), info).cpu()
        errors = all_gather_list(errors, info)
        ce_sum, n_ce, time_sum, n_time = sums.tolist()
        ce = ce_sum / n_ce if n_ce else float("nan")
        tl = time_sum / n_time if n_time else float("nan")
        if n_time and n_ce:
            loss = cfg.ce_weight * ce + cfg.time_weight * tl
        else:
            loss = ce if n_ce else tl
        model.train()
        return {
            "kind": "eval",
            "step": self.step,
            "loss": loss,
            "ce": ce,
            "time_loss": tl,
            "mae_months": float(np.mean(errors)) if errors else float("nan"),
            "median_ae_months": float(np.median(errors)) if errors else float("nan"),
            "n_time_prompts": int(n_time),
            "n_answer_tokens": int(n_ce),
        }

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
        path = None
        error = None
        if info.is_main:
            state = {
                "step": self.step,
                "micro_batches": micro_done if micro_done is not None else self.step * self.accum,
                "elapsed_s": self._elapsed,
                "optimizer": optim,
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs,
                "world_size": info.world_size,
                "config": _plain(self.config.to_dict()),
            }
            try:
                path = ckpt.save_checkpoint(
                    cfg.out_dir,
                    self.step,
                    write_model=lambda p: self._write_model(p, full),
                    trainer_state=state,
                    keep_last=cfg.keep_last,
                )
            except BaseException as e:  # tell the other ranks before failing
                error = e
        failed = broadcast_object(None if error is None else repr(error), info)
        if error is not None:
            raise error
        if failed is not None:
            raise OSError(f"rank 0 failed to write the checkpoint: {failed}")
        return path

    def _write_model(self, path: Path, full_state: dict[str, torch.Tensor] | None) -> None:
        raw = self.raw_model
        if full_state is None:
            raw.save_pretrained(path)
        else:  # FSDP2: rebuild a plain CPU copy from the gathered state dict
            copy = type(raw)(raw.config, vocab=raw.vocab)
            copy.load_state_dict(full_state)
            copy.save_pretrained(path)

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.info.is_main and self._metrics_path is not None:
            with self._metrics_path.open("a") as f:
                f.write(json.dumps(_plain(row)) + "\n")


# --- helpers -------------------------------------------------------------------------------------
def _grad_sync(model: nn.Module, *, enabled: bool):
    """Skip the gradient all-reduce on accumulation micro-batches (DDP ``no_sync``, FSDP2 flag)."""
    if hasattr(model, "no_sync") and hasattr(model, "require_backward_grad_sync"):
        return nullcontext() if enabled else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(enabled)
    return nullcontext()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state some libraries use)
    torch.manual_seed(seed)


def _peak_flops(peak: float | None, device: torch.device, bf16: bool) -> float:
    if peak is not None:
        return float(peak)
    if device.type == "cuda" and bf16:
        name = torch.cuda.get_device_name(device)
        for key, value in _PEAK_BF16.items():
            if key in name:
                return value
    return float("nan")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (by a run that was killed after its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(k + "\n" for k in keep))
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value
