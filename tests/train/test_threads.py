"""Training threads beside data-loader workers: no oversubscription, restored afterwards."""

from __future__ import annotations

import os

import pytest
import torch
import train_data as data

from maxtoki.train import TrainConfig, Trainer, build_model
from maxtoki.train._batches import threads_beside_workers


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_core_per_worker_on_the_cpu(two_cores):
    cpu = torch.device("cpu")
    assert threads_beside_workers(TrainConfig(num_workers=0), cpu) == 2
    assert threads_beside_workers(TrainConfig(num_workers=1), cpu) == 1
    assert threads_beside_workers(TrainConfig(num_workers=4), cpu) == 1  # never below one
    assert threads_beside_workers(TrainConfig(num_workers=1), torch.device("cuda")) == 2
    torch.set_num_threads(1)  # a user's lower setting is kept
    assert threads_beside_workers(TrainConfig(num_workers=0), cpu) == 1


class ThreadsSeen(Trainer):
    seen: list[int]

    def _train_step(self, model, it, micro_done):
        self.seen.append(torch.get_num_threads())
        return super()._train_step(model, it, micro_done)


def test_the_trainer_uses_them_and_restores_the_setting(two_cores):
    config = TrainConfig(
        steps=2, global_batch_size=4, micro_batch_size=2, warmup_steps=0, quiet=True,
        device="cpu", num_workers=1, eval_at_start=False,
    )  # fmt: skip
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    trainer = ThreadsSeen(model, data.dataset(16), None, config)
    trainer.seen = []
    trainer.fit()
    assert trainer.seen == [1, 1] and torch.get_num_threads() == 2
