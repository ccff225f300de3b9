"""The validation pass: every rank its share of the examples, the sums reduced over ranks."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

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
    """Validation loss, CE, timelapse loss and timelapse errors (months) of ``dataset``.

    Rank ``r`` evaluates examples ``r, r + world, …`` (at most ``config.eval_batches``
    micro-batches); a rank out of examples runs a dummy batch that counts nothing, so that the
    ranks stay in step (FSDP2). The sums and the errors are gathered over ranks. ``losses`` is
    called as ``losses(model, batch, details=True)`` (see :func:`batch_losses`); the model is
    left in training mode.
    """
    model.eval()
    n = len(dataset)
    per_rank = -(-n // info.world_size)
    n_batches = -(-per_rank // config.micro_batch_size)
    if config.eval_batches is not None:
        n_batches = min(n_batches, config.eval_batches)
    mine = list(range(info.rank, n, info.world_size))
    sums = torch.zeros(4, dtype=torch.float64)  # ce_sum, n_ce, time_sum, n_time
    errors: list[float] = []
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
        loss = config.ce_weight * ce + config.time_weight * tl
    else:
        loss = ce if n_ce else tl
    model.train()
    return {
        "loss": loss,
        "ce": ce,
        "time_loss": tl,
        "mae_months": float(np.mean(errors)) if errors else float("nan"),
        "median_ae_months": float(np.median(errors)) if errors else float("nan"),
        "n_time_prompts": int(n_time),
        "n_answer_tokens": int(n_ce),
    }
