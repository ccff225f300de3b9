"""Early stopping on the validation loss: the rule, the loop, the log, and an exact resume."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import train_data as data

from maxtoki.models import MaxToki
from maxtoki.train import TrainConfig, Trainer, build_model
from maxtoki.train import _checkpoint as ck
from maxtoki.train._run_state import EarlyStopping

# validation losses by step: best 4.0 at step 2, then three evaluations without improvement
LOSSES = {0: 5.0, 2: 4.0, 4: 4.5, 6: 4.4, 8: 4.3, 10: 4.2, 12: 3.0, 14: 2.0, 16: 1.0}


class ScriptedTrainer(Trainer):
    """Real training steps and checkpoints; the validation loss read from ``LOSSES``."""

    crash_at: int | None = None

    def evaluate(self):
        if self.step == self.crash_at:
            raise RuntimeError("simulated crash")
        return {"kind": "eval", "step": self.step, "loss": LOSSES[self.step], "mae_months": 1.0}


def _config(**changes) -> TrainConfig:
    base = dict(
        steps=16,
        global_batch_size=4,
        micro_batch_size=2,
        eval_interval=2,
        log_interval=3,
        warmup_steps=1,
        quiet=True,
        device="cpu",
        early_stopping_patience=3,
        keep_last=20,
    )
    return TrainConfig(**{**base, **changes})


def _trainer(config: TrainConfig, cls=ScriptedTrainer, seed: int = 0) -> Trainer:
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=seed)
    return cls(model, data.dataset(16), data.dataset(8, seed=1), config)


def test_the_rule():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    decisions = [stopper.update(loss, step) for step, loss in enumerate([3.0, 2.95, 2.5, 2.45])]
    # 2.95 is not below 3.0 - 0.1; 2.5 improves; 2.45 does not; then one more bad one stops
    assert decisions == [False, False, False, False]
    assert (stopper.best_loss, stopper.best_step, stopper.bad_evals) == (2.5, 2, 1)
    assert stopper.update(float("nan"), 4) is True and stopper.should_stop
    restored = EarlyStopping(patience=2, min_delta=0.1)
    restored.load_state_dict(stopper.state_dict())
    assert vars(restored) == vars(stopper)
    never = EarlyStopping(patience=None)
    assert not any(never.update(1.0, step) for step in range(100))
    fresh = EarlyStopping(patience=1)
    fresh.load_state_dict(None)  # a checkpoint written before early stopping existed
    assert fresh.best_loss == math.inf and fresh.best_step is None


def test_the_loop_stops_logs_and_checkpoints(tmp_path, caplog):
    out = tmp_path / "run"
    trainer = _trainer(_config(out_dir=str(out), checkpoint_interval=4))
    history = trainer.fit()
    # evaluations at 0, 2 (best), 4, 6, 8: the third without improvement is at step 8
    assert history["step"].max() == 8 and trainer.step == 8
    evals = history[history["kind"] == "eval"]
    assert evals["step"].tolist() == [0, 2, 4, 6, 8]
    train = history[history["kind"] == "train"]
    assert train["step"].tolist() == [3, 6, 8]  # the steps after the last train row are logged
    assert trainer.early_stopping.should_stop
    assert (trainer.early_stopping.best_step, trainer.early_stopping.bad_evals) == (2, 3)
    [line] = [r.getMessage() for r in caplog.records if "early stopping" in r.getMessage()]
    assert line.startswith("early stopping at step 8 of 16: best val loss 4.0000 at step 2")
    assert ck.latest_checkpoint(out).name == "step_000008"
    saved = ck.load_trainer_state(out / "step_000008")["early_stopping"]
    assert saved == {"best_loss": 4.0, "best_step": 2, "bad_evals": 3}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 8
    # resuming a run that stopped early stops again at once
    again = _trainer(_config(out_dir=str(out), checkpoint_interval=4, resume=True))
    assert len(again.fit()) == 0 and again.step == 8


def test_without_patience_the_run_goes_on():
    trainer = _trainer(_config(early_stopping_patience=None, steps=10))
    assert trainer.fit()["step"].max() == 10 and not trainer.early_stopping.should_stop


def test_resume_stops_where_the_uninterrupted_run_stops(tmp_path):
    full = _trainer(_config(out_dir=str(tmp_path / "full"), checkpoint_interval=2))
    full.fit()
    crashed_dir = str(tmp_path / "crashed")
    crashing = _trainer(_config(out_dir=crashed_dir, checkpoint_interval=2))
    crashing.crash_at = 6  # checkpoints at 2 and 4 are written; best 4.0 at 2, one bad eval
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit()
    assert ck.latest_checkpoint(crashed_dir).name == "step_000004"
    # a different init: the weights must come from the checkpoint
    resumed = _trainer(_config(out_dir=crashed_dir, checkpoint_interval=2, resume=True), seed=1)
    history = resumed.fit()
    assert history["step"].min() == 6 and resumed.step == full.step == 8
    # without the saved state, the resumed run would have restarted the count and gone on
    assert vars(resumed.early_stopping) == vars(full.early_stopping)
    a = MaxToki.from_pretrained(tmp_path / "full" / "step_000008", device="cpu").state_dict()
    b = MaxToki.from_pretrained(tmp_path / "crashed" / "step_000008", device="cpu").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_real_validation_loss_that_does_not_improve_enough(caplog):
    """The real evaluation, with a min_delta no improvement can reach: stops after patience."""
    config = _config(
        steps=20, eval_interval=3, early_stopping_patience=2, early_stopping_min_delta=1e6
    )
    trainer = _trainer(config, cls=Trainer)
    history = trainer.fit()
    evals = history[history["kind"] == "eval"]
    assert evals["step"].tolist() == [0, 3, 6]  # the first one sets the best, two more stop
    assert trainer.step == 6 and trainer.early_stopping.best_step == 0
    assert math.isfinite(evals["loss"].iloc[0])
    assert any(
        r.levelno == logging.INFO and r.getMessage().startswith("early stopping at step 6")
        for r in caplog.records
    )


def test_config_checks_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="early_stopping_patience must be >= 1"):
        TrainConfig(early_stopping_patience=0)
    with pytest.raises(TypeError, match="early_stopping_patience must be int or null"):
        TrainConfig(early_stopping_patience=1.5)
    with pytest.raises(ValueError, match="early_stopping_min_delta must be >= 0"):
        TrainConfig(early_stopping_min_delta=-0.1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    with pytest.raises(ValueError, match="pass an eval_dataset"):
        Trainer(model, data.dataset(16), None, TrainConfig(early_stopping_patience=2))
    path = tmp_path / "train.yaml"
    path.write_text("early_stopping_patience: 4\nearly_stopping_min_delta: 1e-3\n")
    config = TrainConfig.from_yaml(path, ["early_stopping_patience=5"])
    assert (config.early_stopping_patience, config.early_stopping_min_delta) == (5, 0.001)
    assert config.to_dict()["early_stopping_patience"] == 5
