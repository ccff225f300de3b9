"""Checkpoints: atomic writes, exact resume after SIGKILL, half-written folders, NaN handling."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import train_data as data

from maxtoki.models import MaxToki
from maxtoki.train import NonFiniteLossError, TrainConfig, Trainer, build_model
from maxtoki.train import _checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import train_data as data
    from maxtoki.train import TrainConfig, Trainer, build_model
    from maxtoki.train import _checkpoint as ck

    out, kill_at = sys.argv[1], int(sys.argv[2])
    if kill_at:  # SIGKILL ourselves half-way through writing this step's checkpoint
        save = ck.save_checkpoint

        def save_and_die(out_dir, step, *, write_model, **kw):
            def write(path):
                write_model(path)
                if step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return save(out_dir, step, write_model=write, **kw)

        ck.save_checkpoint = save_and_die
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    cfg = TrainConfig(**{config!r}).replace(out_dir=out)
    Trainer(model, data.dataset(), data.dataset(16, seed=1), cfg).fit()
    """
)
_RESUME_CONFIG = TrainConfig(
    steps=12,
    global_batch_size=8,
    micro_batch_size=4,
    checkpoint_interval=4,
    resume=True,
    eval_interval=6,
    quiet=True,
    warmup_steps=2,
    keep_last=10,
    device="cpu",
)


def _run(script: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(script), str(out), str(kill_at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resume_after_sigkill_is_exact(tmp_path):
    script = tmp_path / "run.py"
    tests = str(Path(__file__).resolve().parents[1])
    script.write_text(SCRIPT.format(tests=tests, config=_RESUME_CONFIG.to_dict()))
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    # the uninterrupted reference runs here, with the same settings as the script
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    Trainer(
        model, data.dataset(), data.dataset(16, seed=1), _RESUME_CONFIG.replace(out_dir=str(full))
    ).fit()

    killed = _run(script, crashed, 12)
    assert killed.returncode == -9, killed.stderr  # SIGKILL while writing step 12
    assert (crashed / "latest").read_text().strip() == "step_000008"
    assert list(crashed.glob(".tmp_step_000012_*")), (
        "the half-written checkpoint should be left behind"
    )
    assert ck.latest_checkpoint(crashed).name == "step_000008"  # … and never picked up

    resumed = _run(script, crashed, 0)
    assert resumed.returncode == 0, resumed.stderr
    a = MaxToki.from_pretrained(full / "step_000012", device="cpu").state_dict()
    b = MaxToki.from_pretrained(crashed / "step_000012", device="cpu").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (
        ck.load_trainer_state(full / "step_000012"),
        ck.load_trainer_state(crashed / "step_000012"),
    )
    assert sa["micro_batches"] == sb["micro_batches"] == 24
    assert torch.equal(
        sa["optimizer"]["state"][0]["exp_avg_sq"], sb["optimizer"]["state"][0]["exp_avg_sq"]
    )
    # metrics of the lost steps were dropped and logged again: the two logs agree
    assert (full / "metrics.jsonl").read_text().count('"kind": "eval"') == 3
    assert (crashed / "metrics.jsonl").read_text().count('"kind": "eval"') == 3
    assert not list(crashed.glob(".tmp_step_*"))  # cleaned up by the next successful save


def _write_model(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"weights")


def test_save_is_atomic_and_keeps_last(tmp_path):
    for step in (1, 2, 3, 4):
        ck.save_checkpoint(
            tmp_path, step, write_model=_write_model, trainer_state={"step": step}, keep_last=2
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000003", "step_000004"]
    assert ck.load_trainer_state(tmp_path / "step_000004") == {"step": 4}


def test_failed_write_leaves_previous_checkpoint(tmp_path):
    ck.save_checkpoint(tmp_path, 2, write_model=_write_model, trainer_state={"step": 2})

    def broken(path: Path) -> None:
        (path / "model.safetensors").write_bytes(b"half")
        raise PermissionError(13, "Permission denied")

    with pytest.raises(OSError, match="previous checkpoint step_000002 is intact"):
        ck.save_checkpoint(tmp_path, 4, write_model=broken, trainer_state={"step": 4})
    assert (tmp_path / "latest").read_text().strip() == "step_000002"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000002"]
    assert ck.latest_checkpoint(tmp_path).name == "step_000002"


def test_unwritable_out_dir_fails_loudly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write checkpoint step_000001"):
        ck.save_checkpoint(blocker, 1, write_model=_write_model, trainer_state={})


def test_half_written_folders_are_never_picked(tmp_path):
    ck.save_checkpoint(tmp_path, 3, write_model=_write_model, trainer_state={"step": 3})
    (tmp_path / ".tmp_step_000009_abc").mkdir()
    (tmp_path / ".tmp_step_000009_abc" / ck.STATE_FILE).write_bytes(b"")
    (tmp_path / "step_000010").mkdir()  # no checkpoint.json: incomplete
    (tmp_path / "step_000010" / ck.STATE_FILE).write_bytes(b"")
    assert ck.latest_checkpoint(tmp_path).name == "step_000003"
    (tmp_path / "latest").write_text("step_000010\n")  # a pointer to an incomplete folder
    assert ck.latest_checkpoint(tmp_path).name == "step_000003"
    (tmp_path / "latest").unlink()
    assert ck.latest_checkpoint(tmp_path).name == "step_000003"
    assert ck.resolve_resume(True, tmp_path).name == "step_000003"
    assert ck.resolve_resume(True, tmp_path / "nothing_yet") is None
    with pytest.raises(ValueError, match="neither a complete checkpoint"):
        ck.resolve_resume(str(tmp_path / "step_000010"), None)


def test_rng_state_roundtrip_weights_only(tmp_path):
    import random

    state = ck.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    a = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    ck.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (random.random(), np.random.rand(), torch.rand(1))  # noqa: NPY002
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])


def _tiny_trainer(tmp_path, **cfg):
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    config = TrainConfig(
        steps=3,
        global_batch_size=4,
        micro_batch_size=2,
        quiet=True,
        warmup_steps=1,
        eval_at_start=False,
        device="cpu",
        **cfg,
    )
    return model, Trainer(model, data.dataset(16), None, config)


def test_nan_loss_stops_with_step_and_batch(tmp_path):
    model, trainer = _tiny_trainer(tmp_path)
    with torch.no_grad():
        model.lm_head.weight[5, 0] = float("nan")
    with pytest.raises(
        NonFiniteLossError, match=r"step 1, micro-batch 1/2 .*dataset indices \[\d+, \d+\]"
    ):
        trainer.fit()


def test_nan_loss_can_skip_batches(tmp_path):
    model, trainer = _tiny_trainer(tmp_path, on_nan="skip")
    with torch.no_grad():
        model.lm_head.weight[5, 0] = float("nan")
    before = model.model.embed_tokens.weight.clone()
    history = trainer.fit()
    assert history["skipped_steps"].sum() == 3  # every step
    assert torch.equal(before, model.model.embed_tokens.weight)  # nothing was applied


def test_resume_true_without_checkpoint_starts_fresh(tmp_path):
    _, trainer = _tiny_trainer(tmp_path, out_dir=str(tmp_path / "run"), resume=True)
    history = trainer.fit()
    assert history["step"].max() == 3
    assert ck.latest_checkpoint(tmp_path / "run").name == "step_000003"
    assert ck.load_trainer_state(tmp_path / "run" / "step_000003")["config"]["steps"] == 3


def test_elapsed_time_continues_after_resume(tmp_path):
    run = str(tmp_path / "run")
    _, first = _tiny_trainer(tmp_path, out_dir=run, log_interval=1)
    before = first.fit()["elapsed_s"].max()
    saved = ck.load_trainer_state(tmp_path / "run" / "step_000003")["elapsed_s"]
    assert saved >= before > 0
    model, second = _tiny_trainer(tmp_path, out_dir=run, log_interval=1, resume=True)
    second = Trainer(model, data.dataset(16), None, second.config.replace(steps=5))
    after = second.fit()
    assert after["step"].min() == 4 and after["elapsed_s"].min() > saved  # no restart at 0


def test_workers_and_activation_checkpointing_change_nothing(tmp_path):
    model, trainer = _tiny_trainer(tmp_path)
    trainer.fit()
    model_w, trainer_w = _tiny_trainer(tmp_path, num_workers=1, activation_checkpointing=True)
    trainer_w.fit()
    a, b = model.state_dict(), model_w.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
