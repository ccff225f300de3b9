"""The training metrics: ``"train"`` rows of a log window, throughput and MFU, ``metrics.jsonl``."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._distributed import DistInfo, all_reduce_sum

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


class TrainWindow:
    """The optimizer steps since the last ``"train"`` row: their summed statistics and a clock."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Start a new window: zero sums, the clock restarted."""
        self.loss = self.ce = self.time = 0.0
        self.steps = self.tokens = self.skipped = 0
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside (validation, checkpoints) out of the window's clock."""
        left = time.perf_counter()
        try:
            yield
        finally:
            self.started += time.perf_counter() - left

    def add(self, stats: dict[str, float]) -> None:
        """Add the statistics of one optimizer step (see ``Trainer._train_step``)."""
        self.loss += stats["loss"]
        self.ce += stats["ce"]
        self.time += stats["time"]
        self.steps += 1
        self.tokens += stats["tokens"]
        self.skipped += stats["skipped"]

    def row(
        self,
        *,
        step: int,
        lr: float,
        grad_norm: float,
        n_params: int,
        peak_flops: float,
        info: DistInfo,
        run_started: float,
    ) -> dict[str, Any]:
        """The ``"train"`` metrics row of the window (all ranks call).

        Tokens are summed over ranks, losses averaged over them (each rank's is the mean of its
        share of the batches).
        """
        elapsed = time.perf_counter() - self.started
        sums = [float(self.tokens), self.loss, self.ce, self.time]
        sums = all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=info.device), info)
        tokens, loss, ce, time_loss = (float(v) for v in sums)
        tps = tokens / max(elapsed, 1e-9)
        n = max(self.steps, 1) * info.world_size
        return {
            "kind": "train",
            "step": step,
            "loss": loss / n,
            "ce": ce / n,
            "time_loss": time_loss / n,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": tps,
            "mfu": 6 * n_params * tps / (peak_flops * info.world_size),
            "skipped_steps": self.skipped,
            "elapsed_s": time.perf_counter() - run_started,
        }


def peak_flops(peak: float | None, device: torch.device, bf16: bool) -> float:
    """Peak FLOP/s of one accelerator for the MFU: ``peak``, else looked up (NaN if unknown)."""
    if peak is not None:
        return float(peak)
    if device.type == "cuda" and bf16:
        name = torch.cuda.get_device_name(device)
        for key, value in _PEAK_BF16.items():
            if key in name:
                return value
    return float("nan")


def start_metrics_file(path: Path, *, resumed_at: int | None) -> None:
    """Empty ``path`` for a new run, or drop its rows after step ``resumed_at`` (a resumed one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if resumed_at is None:
        path.write_text("")
    else:
        truncate_metrics(path, resumed_at)


def truncate_metrics(path: Path, step: int) -> None:
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


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a ``metrics.jsonl`` file."""
    with path.open("a") as f:
        f.write(json.dumps(plain(row)) + "\n")


def plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and tuples as lists (JSON-ready)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value
