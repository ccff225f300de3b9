"""The validation pass: every rank its share of the examples, the sums reduced over ranks."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from .._stats import pearson_r
from ..models import Collator
from ._config import TrainConfig
from ._distributed import DistInfo, all_gather_list, all_reduce_sum
from ._prompts import IGNORE_INDEX


@torch.no_grad()
def validation_metrics(
    model: nn.Module,
    dataset,
    *,
    collator: Collator,
    losses: Callable[..., dict[str, Any]],
    config: TrainConfig,
    info: DistInfo,
    autocast: AbstractContextManager | None = None,
) -> dict[str, Any]:
    """Validation loss, CE, timelapse loss, timelapse errors (months) and r of ``dataset``.

    Rank ``r`` evaluates examples ``r, r + world, …`` (at most ``config.eval_batches``
    micro-batches); a rank out of examples runs a dummy batch that counts nothing, so that the
    ranks stay in step (FSDP2). The sums and the errors are gathered over ranks. ``losses`` is
    called as ``losses(model, batch, details=True)`` (see :func:`batch_losses`); the model is
    left in training mode.

    In stage 2 (unless ``task_mix`` is 1) every batch is also run with the timelapses of its
    NextCell prompts rotated among them: ``timelapse_ce_gain`` is the CE of their answers so
    minus the CE with the true timelapses (nats per answer gene, over batches with at least two
    NextCell prompts; ~0: generation ignores the timelapse).
    """
    model.eval()
    n = len(dataset)
    per_rank = -(-n // info.world_size)
    n_batches = -(-per_rank // config.micro_batch_size)
    if config.eval_batches is not None:
        n_batches = min(n_batches, config.eval_batches)
    mine = list(range(info.rank, n, info.world_size))
    sums = torch.zeros(6, dtype=torch.float64)  # ce_sum, n_ce, time_sum, n_time, gain_sum, n_gain
    timelapses: list[list[float]] = []  # (predicted, true) months per TimeBetweenCells prompt
    # the same on every rank, so that ranks run the same forward passes (FSDP2)
    swap_timelapses = config.stage == 2 and config.task_mix != 1
    for j in range(n_batches):
        idx = mine[j * config.micro_batch_size : (j + 1) * config.micro_batch_size]
        examples = [dataset[i] for i in idx]
        if not examples:  # keep the ranks in step (FSDP2): a dummy batch that counts nothing
            dummy = dict(dataset[0])
            dummy["labels"] = np.full_like(dummy["labels"], IGNORE_INDEX)
            dummy["task"] = -1
            examples = [dummy]
        batch = collator(examples)
        with autocast or nullcontext():
            out = losses(model, batch, details=True)
        gain = (0.0, 0)
        if swap_timelapses:
            swapped, counted = _rotate_nextcell_timelapses(batch)
            with autocast or nullcontext():
                ce_swapped = float(losses(model, swapped)["ce_sum"])
            if counted:
                gain = (ce_swapped - float(out["ce_sum"]), out["n_ce"])
        sums += torch.tensor(
            [float(out["ce_sum"]), out["n_ce"], float(out["time_sum"]), out["n_time"], *gain],
            dtype=torch.float64,
        )
        timelapses += out["timelapses"]
    sums = all_reduce_sum(sums.to(info.device), info).cpu()
    pairs = np.asarray(all_gather_list(timelapses, info), dtype=float).reshape(-1, 2)
    errors = np.abs(pairs[:, 0] - pairs[:, 1])
    ce_sum, n_ce, time_sum, n_time, gain_sum, n_gain = sums.tolist()
    ce = ce_sum / n_ce if n_ce else float("nan")
    tl = time_sum / n_time if n_time else float("nan")
    if n_time and n_ce:
        loss = config.ce_weight * ce + config.time_weight * tl
    else:
        loss = ce if n_ce else tl
    model.train()
    return {
        "loss": loss,
        "ce": ce,
        "time_loss": tl,
        "mae_months": float(np.mean(errors)) if errors.size else float("nan"),
        "median_ae_months": float(np.median(errors)) if errors.size else float("nan"),
        "timelapse_r": pearson_r(pairs[:, 0], pairs[:, 1]),
        "n_time_prompts": int(n_time),
        "n_answer_tokens": int(n_ce),
        "timelapse_ce_gain": gain_sum / n_gain if n_gain else float("nan"),
    }


def _rotate_nextcell_timelapses(batch: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The batch with its NextCell prompts' timelapse tokens rotated among them.

    The timelapse token of a NextCell prompt sits just before its ``<eoq>``. Returns the batch
    and whether it was changed (it needs two NextCell prompts with different timelapses).
    """
    rows = (batch["task"] == 1).nonzero()[:, 0]
    at = batch["eoq_index"][rows]
    ids = batch["input_ids"]
    dts = ids[at[:, 0], at[:, 1] - 1]
    if len(rows) < 2 or bool((dts == dts[0]).all()):
        return batch, False
    ids = ids.clone()
    ids[at[:, 0], at[:, 1] - 1] = dts.roll(1)
    return {**batch, "input_ids": ids}, True
