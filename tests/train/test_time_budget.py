"""A wall-clock budget: the planned steps, the LR schedule ending there, the stop, the resume."""

from __future__ import annotations

import types

import pytest
import torch
import train_data as data

from maxtoki.models import MaxToki
from maxtoki.train import TrainConfig, Trainer, build_model
from maxtoki.train import _checkpoint as ck
from maxtoki.train import _trainer as trainer_module
from maxtoki.train._distributed import DistInfo
from maxtoki.train._run_state import TimeBudget


class FakeClock:
    """``perf_counter`` that advances ``step_s`` per training step and ``eval_s`` per validation."""

    def __init__(self, step_s: float, eval_s: float):
        self.now, self.step_s, self.eval_s = 0.0, step_s, eval_s

    def perf_counter(self) -> float:
        return self.now


class ClockedTrainer(Trainer):
    """Real steps and validations; the clock moves by fixed amounts in each."""

    clock: FakeClock

    def _train_step(self, model, it, micro_done):
        self.clock.now += self.clock.step_s
        return super()._train_step(model, it, micro_done)



def _trainer(config: TrainConfig, clock: FakeClock, monkeypatch, seed: int = 0) -> Trainer:
    torch.set_num_threads(1)
    fake_time = types.SimpleNamespace(perf_counter=clock.perf_counter)
    monkeypatch.setattr(trainer_module, "time", fake_time)
    validate = trainer_module.validation_metrics

    def slow_validation(*args, **kwargs):
        clock.now += clock.eval_s
        return validate(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "validation_metrics", slow_validation)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=seed)
    trainer = ClockedTrainer(model, data.dataset(16), data.dataset(8, seed=1), config)
    trainer.clock = clock
    return trainer


def _config(**changes) -> TrainConfig:
    base = dict(
        steps=100, time_budget=60.0, global_batch_size=4, micro_batch_size=2, eval_interval=10,
        log_interval=5, warmup_steps=2, lr=1e-3, min_lr_ratio=0.1, quiet=True, device="cpu",
        keep_last=50,
    )  # fmt: skip
    return TrainConfig(**{**base, **changes})


def test_the_plan():
    budget = TimeBudget(100.0, steps=1000, eval_interval=50)
    for seconds in [2.0] * 10 + [0.5] * 9:  # ten slow warm-up steps, then 0.5 s each
        budget.time_step(seconds)
    assert budget.calibrate_at == 20 and budget.plan(19, 10.0) is None
    budget.time_step(0.5)
    budget.eval_seconds, budget.n_evals = 4.0, 1
    # 0.5 s per step (the warm-up left out), 4 s per validation (one every 50 steps: 0.08 s per
    # step), one at the end: (100 - 14 - 4) / 0.58 = 141.4 more steps
    assert (budget.n_steps, budget.train_seconds) == (10, 5.0)
    assert budget.plan(20, 14.0) == 20 + 141
    assert budget.plan(40, 20.0) is None  # planned once
    never = TimeBudget(None, steps=10, eval_interval=5)
    assert never.planned and never.plan(10, 1e9) is None and never.total == 10
    roomy = TimeBudget(1e6, steps=30, eval_interval=5)
    for _ in range(3):
        roomy.time_step(1.0)
    assert roomy.plan(3, 3.0) == 30  # never more than `steps`
    budget.total = 25  # as a checkpoint would hold it
    again = TimeBudget(100.0, steps=30, eval_interval=5)
    again.load_state_dict(budget.state_dict())
    assert (again.total, again.planned) == (25, True)
    other = TimeBudget(50.0, steps=30, eval_interval=5)  # another budget: plan afresh
    other.load_state_dict(budget.state_dict())
    assert (other.total, other.planned) == (30, False)


def test_the_run_fits_the_budget_and_its_schedule_ends_there(monkeypatch):
    clock = FakeClock(step_s=1.0, eval_s=2.0)
    trainer = _trainer(_config(), clock, monkeypatch)
    history = trainer.fit()
    # calibration at step 10: 10 s of steps, one validation (at the start, 2 s) → per step
    # 1 + 2/10 s; left = 60 - 12 - 2 = 46 s → 38 more steps
    assert trainer.step == trainer.budget.total == 48
    assert history["step"].max() == 48 and history[history["kind"] == "eval"]["step"].max() == 48
    assert clock.now <= 60.0
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * 0.1, rel=1e-6)  # the cosine reached its floor


def test_an_overrun_stops_once_the_budget_is_spent(monkeypatch):
    clock = FakeClock(step_s=1.0, eval_s=2.0)
    trainer = _trainer(_config(), clock, monkeypatch)
    original = trainer._train_step

    def slower(model, it, micro_done):  # steps after the calibration take 3 s
        if trainer.step >= 10:
            clock.now += 2.0
        return original(model, it, micro_done)

    trainer._train_step = slower
    trainer.fit()
    # planned 48 steps; 2 + 10 + 2 s to step 10, then 3 s per step and 2 s per validation:
    # 46 s at step 20, 61 s at step 25, the first check (every log_interval) past 60 s
    assert trainer.step == trainer.budget.total == 25
    assert clock.now == 63.0  # and the last step's validation


def test_without_a_budget_the_steps_are_kept(monkeypatch):
    clock = FakeClock(step_s=1.0, eval_s=2.0)
    trainer = _trainer(_config(time_budget=None, steps=12), clock, monkeypatch)
    trainer.fit()
    assert trainer.step == 12 and trainer.budget.total == 12


def test_resume_keeps_the_plan_and_the_weights(tmp_path, monkeypatch):
    full = _trainer(
        _config(out_dir=str(tmp_path / "full"), checkpoint_interval=10),
        FakeClock(1.0, 2.0), monkeypatch,
    )  # fmt: skip
    full.fit()
    assert full.step == 48
    # resumed from step 20 on a machine 10 times faster: the plan of the checkpoint holds
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (tmp_path / "full" / "step_000020").rename(crashed / "step_000020")
    resumed = _trainer(
        _config(out_dir=str(crashed), checkpoint_interval=10, resume=True),
        FakeClock(0.1, 0.2), monkeypatch, seed=1,
    )  # fmt: skip
    resumed.fit()
    assert resumed.step == resumed.budget.total == 48
    assert ck.load_trainer_state(crashed / "step_000048")["time_budget"] == {
        "seconds": 60.0, "total": 48, "planned": True
    }  # fmt: skip
    a = MaxToki.from_pretrained(tmp_path / "full" / "step_000048", device="cpu").state_dict()
    b = MaxToki.from_pretrained(crashed / "step_000048", device="cpu").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_budgets():
    for bad in (0, -5.0):
        with pytest.raises(ValueError, match="time_budget must be > 0 seconds or None"):
            TrainConfig(time_budget=bad)
    for bad in (float("nan"), "ten minutes"):
        with pytest.raises(TypeError, match="time_budget must be float or null"):
            TrainConfig(time_budget=bad)
    assert TimeBudget(None, 5, 1).follow(1, 1.0, 1, DistInfo()) is False
