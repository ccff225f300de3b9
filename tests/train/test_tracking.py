"""The tracker hook: a user's tracker, TensorBoard and MLflow adapters, the missing-extra error."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types

import pytest
import torch
import train_data as data

from maxtoki.train import Tracker, TrainConfig, Trainer, build_model


class FakeTracker:
    """A user's tracker: keeps what it is given."""

    def __init__(self):
        self.params, self.metrics, self.closed = None, [], False

    def log_params(self, params):
        self.params = params

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def close(self):
        self.closed = True


def _config(**changes) -> TrainConfig:
    base = dict(
        steps=4,
        global_batch_size=4,
        micro_batch_size=2,
        eval_interval=2,
        log_interval=1,
        warmup_steps=1,
        quiet=True,
        device="cpu",
        model_overrides={"hidden_size": 32},
    )
    return TrainConfig(**{**base, **changes})


def _fit(config: TrainConfig, **kwargs) -> Trainer:
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    trainer = Trainer(model, data.dataset(16), data.dataset(8, seed=1), config, **kwargs)
    trainer.fit()
    return trainer


@pytest.fixture
def installed(monkeypatch):
    """Pretend the named packages are installed (find_spec finds them)."""
    real = importlib.util.find_spec

    def pretend(*names):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: object() if name in names else real(name, *a),
        )

    return pretend


def test_a_users_tracker_gets_every_row_of_metrics_jsonl(tmp_path):
    tracker = FakeTracker()
    assert isinstance(tracker, Tracker)
    _fit(_config(out_dir=str(tmp_path)), tracker=tracker)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(tracker.metrics) == len(rows) == 4 + 3  # train rows 1–4, evals at 0, 2, 4
    for (step, metrics), row in zip(tracker.metrics, rows, strict=True):
        assert step == row["step"]
        expected = {
            f"{row['kind']}/{k}": v
            for k, v in row.items()
            if k not in ("kind", "step") and isinstance(v, (int, float)) and math.isfinite(v)
        }
        assert metrics == pytest.approx(expected)
    assert "train/mfu" not in tracker.metrics[1][1]  # NaN on a CPU: left out
    assert {"eval/loss", "eval/mae_months"} <= set(tracker.metrics[0][1])
    assert tracker.params["steps"] == 4 and tracker.params["model_overrides.hidden_size"] == 32
    assert tracker.params["tracker"] == "none"
    assert not tracker.closed  # the user's object: the user closes it


def test_a_tracker_without_the_methods_is_refused():
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    with pytest.raises(TypeError, match=r"log_params\(params\), log_metrics\(metrics, step\)"):
        Trainer(model, data.dataset(16), None, _config(), tracker=object())


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_missing_extra_is_named(monkeypatch, tmp_path, name):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == name else real(n, *a)
    )
    with pytest.raises(ValueError, match=rf"pip install 'maxtoki\[{name}\]'"):
        TrainConfig(tracker=name, out_dir=str(tmp_path))


def test_tracker_config_values(tmp_path, installed):
    with pytest.raises(ValueError, match=r"tracker must be one of \['none', 'tensorboard', 'mlf"):
        TrainConfig(tracker="wandb")
    installed("tensorboard", "mlflow")
    with pytest.raises(ValueError, match="set out_dir"):
        TrainConfig(tracker="tensorboard")
    path = tmp_path / "train.yaml"
    path.write_text("tracker: mlflow\nout_dir: run\n")
    assert TrainConfig.from_yaml(path).tracker == "mlflow"
    config = TrainConfig.from_yaml(path, ["tracker=tensorboard"])
    assert config.tracker == "tensorboard" and config.to_dict()["tracker"] == "tensorboard"


def test_tensorboard_adapter(tmp_path, monkeypatch, installed):
    writers = []

    class SummaryWriter:  # torch.utils.tensorboard.SummaryWriter's interface
        def __init__(self, log_dir=None, purge_step=None):
            self.log_dir, self.purge_step = log_dir, purge_step
            self.scalars, self.texts, self.closed = [], [], False
            writers.append(self)

        def add_scalar(self, tag, scalar_value, global_step=None):
            self.scalars.append((tag, scalar_value, global_step))

        def add_text(self, tag, text_string, global_step=None):
            self.texts.append((tag, text_string))

        def flush(self):
            pass

        def close(self):
            self.closed = True

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    installed("tensorboard")
    out = tmp_path / "run"
    config = _config(tracker="tensorboard", out_dir=str(out), checkpoint_interval=2)
    trainer = _fit(config)
    [writer] = writers
    assert writer.log_dir == str(out / "tensorboard") and writer.purge_step is None
    assert writer.closed and writer.texts[0][0] == "config"
    losses = [(s, v) for tag, v, s in writer.scalars if tag == "train/loss"]
    train = [r for r in trainer.history if r["kind"] == "train"]
    assert losses == [(r["step"], pytest.approx(r["loss"])) for r in train]
    # a resumed run drops the events after its checkpoint, as metrics.jsonl drops its rows
    _fit(config.replace(resume=str(out / "step_000002")))
    assert writers[1].purge_step == 3


def test_mlflow_adapter(monkeypatch, installed):
    calls = []
    fake = types.ModuleType("mlflow")
    fake.active = None
    fake.active_run = lambda: fake.active
    fake.start_run = lambda: calls.append("start_run")
    fake.end_run = lambda: calls.append("end_run")
    fake.log_params = lambda params: calls.append(("params", params))
    fake.log_metrics = lambda metrics, step=None: calls.append(("metrics", step, metrics))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    installed("mlflow")
    _fit(_config(tracker="mlflow"))
    assert calls[0] == "start_run" and calls[-1] == "end_run"
    params = calls[1][1]
    assert params["tracker"] == "mlflow" and params["betas"] == "[0.9, 0.95]"
    steps = [c[1] for c in calls if c[0] == "metrics"]
    assert steps == [0, 1, 2, 2, 3, 4, 4]
    # inside a run the user started: use it, leave it open
    calls.clear()
    fake.active = object()
    _fit(_config(tracker="mlflow"))
    assert "start_run" not in calls and "end_run" not in calls


def test_real_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _fit(_config(tracker="tensorboard", out_dir=str(tmp_path)))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    expected = [(r["step"], r["loss"]) for r in trainer.history if r["kind"] == "train"]
    assert loss == [(s, pytest.approx(v, rel=1e-6)) for s, v in expected]
