"""The training data order: deterministic, resumable micro-batches of each rank; their loader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..models import Collator
from ._config import TrainConfig
from ._distributed import DistInfo


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


class IndexedDataset:
    """Adds the dataset index to every example (to name a bad batch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        example = dict(self.dataset[i])
        example["index"] = int(i)
        return example


class IndexedCollate:
    """Picklable collate function (DataLoader workers) that keeps dataset indices."""

    def __init__(self, collator: Collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        batch["index"] = [e["index"] for e in examples]
        return batch


def train_loader(
    dataset, collator: Collator, config: TrainConfig, info: DistInfo, *, start: int
) -> torch.utils.data.DataLoader:
    """The endless micro-batches of this rank from micro-batch ``start`` on.

    Batches carry the dataset indices of their examples (``batch["index"]``).
    """
    sampler = ShardedBatches(
        len(dataset),
        config.micro_batch_size,
        seed=config.seed,
        rank=info.rank,
        world=info.world_size,
        start=start,
    )
    return torch.utils.data.DataLoader(
        IndexedDataset(dataset),
        batch_sampler=sampler,
        collate_fn=IndexedCollate(collator),
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        multiprocessing_context="spawn" if config.num_workers > 0 else None,
        # its own generator: each new iterator draws a seed from it, and drawing from the
        # global one would leave a resumed run's RNG states off the uninterrupted run's
        generator=torch.Generator().manual_seed(config.seed + info.rank),
    )


def threads_beside_workers(config: TrainConfig, device: torch.device) -> int:
    """Torch threads for the training process, leaving a core to each data-loader worker.

    On a CPU, ``num_workers`` loader processes (one thread each) and the training process's
    intra-op threads would otherwise share the cores, and OpenMP threads waiting on a preempted
    one stall the step. On other devices, and with ``num_workers=0``, the current count stays.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or config.num_workers == 0:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(threads, (cores or 1) - config.num_workers))
