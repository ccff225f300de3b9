"""Fault injection: SIGKILL at random moments, full disks, unwritable folders, NaN batches.

Training and ``mt.pp.tokenize_corpus`` are killed with SIGKILL at seeded random moments (some
timed, some triggered by a checkpoint or shard write appearing on disk) and resumed; the result
must equal an uninterrupted run bit for bit, and after every kill the folder must hold only
loadable checkpoints / shards. The runs are forked from a warm "zygote" subprocess that has
imported torch/numba once, so one kill costs a fraction of a second instead of a fresh start.
Write errors (ENOSPC after partial bytes, EACCES) are injected by monkeypatching the functions the
checkpoint code writes with.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import maxtoki as mt
from maxtoki.models import MaxToki
from maxtoki.pp import GeneVocab, TokenStore
from maxtoki.pp import _tokenize_corpus as tc
from maxtoki.train import NonFiniteLossError, TrainConfig, Trainer, build_model
from maxtoki.train import _checkpoint as ck
from maxtoki.train._trainer import ShardedBatches

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
import train_data as data  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


# --- a warm subprocess that forks one run per request --------------------------------------------
ZYGOTE = textwrap.dedent(
    """
    import os, sys, traceback
    setup = sys.argv[1]
    namespace = {}
    exec(setup, namespace)  # defines run(out) and warms up the imports
    print("ready", flush=True)
    for line in sys.stdin:
        out = line.strip()
        pid = os.fork()
        if pid == 0:
            os.dup2(2, 1)  # stdout is the protocol channel
            code = 0
            try:
                namespace["run"](out)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    """
)


class Zygote:
    """Starts the zygote; ``start(out)`` forks a run and returns its pid, ``wait()`` its status."""

    def __init__(self, setup: str, log: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.log = log
        self._err = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, setup],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self._next(180) == "ready", self.stderr()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _next(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"the zygote did not answer in {timeout} s\n{self.stderr()}"
            ) from None
        if line is None:
            raise AssertionError(f"the zygote died\n{self.stderr()}")
        return line

    def start(self, out: Path) -> int:
        self.proc.stdin.write(f"{out}\n")
        self.proc.stdin.flush()
        return int(self._next(60))

    def wait(self, timeout: float = 300) -> int:
        return int(self._next(timeout))

    def stderr(self) -> str:
        self._err.flush()
        return self.log.read_text()[-6000:]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        pass


def _kill_when(pid: int, condition, *, delay: float, timeout: float) -> None:
    """SIGKILL ``pid`` ``delay`` seconds after ``condition()`` first holds (polled every 0.3 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            if delay:
                time.sleep(delay)
            break
        time.sleep(0.0003)
    _kill(pid)


def _entries(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


# --- 1. SIGKILL during training -------------------------------------------------------------
KILL_CONFIG = TrainConfig(
    steps=24,
    global_batch_size=8,
    micro_batch_size=4,
    checkpoint_interval=1,  # a checkpoint every step: many kills land inside a write
    keep_last=2,
    resume=True,
    eval_interval=5,
    eval_batches=1,
    log_interval=1,  # windows restart at a resume: one step per row compares exactly
    quiet=True,
    warmup_steps=2,
    device="cpu",
)
TRAIN_SETUP = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS)!r})
    import torch
    torch.set_num_threads(1)
    import maxtoki as mt
    import train_data as data
    from maxtoki.models import MaxToki
    from maxtoki.train import TrainConfig, Trainer, build_model
    mt.settings.verbosity = 0
    CONFIG = {KILL_CONFIG.to_dict()!r}

    def run(out, steps=None):
        cfg = TrainConfig(**CONFIG).replace(out_dir=out)
        if steps is not None:
            cfg = cfg.replace(steps=steps, out_dir=None, checkpoint_interval=None, resume=False)
        model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
        Trainer(model, data.dataset(), data.dataset(16, seed=1), cfg).fit()

    run(None, steps=1)  # warm-up: every lazy import and first call happens before the forks
    """
)
_LITTER = (".tmp_step_", ".old_step_", ".del_step_", ".latest.")


def _step(path: Path | None) -> int:
    return -1 if path is None else int(path.name.removeprefix("step_"))


def _check_run_folder(out: Path, last_good: int) -> int:
    """Every listed checkpoint loads; ``latest`` never goes back. Returns the latest step."""
    for path in ck.list_checkpoints(out):
        MaxToki.from_pretrained(path, device="cpu")  # raises on a partial folder
        assert ck.load_trainer_state(path)["step"] == _step(path)
    latest = ck.latest_checkpoint(out)
    assert _step(latest) >= last_good, f"latest went back from step {last_good} to {latest}"
    return _step(latest)


def _same(a, b, where="") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _metrics(out: Path) -> list[dict]:
    timing = {"elapsed_s", "tokens_per_s", "mfu"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in timing} for r in rows]


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_exactly(tmp_path):
    rng = random.Random(20240917)
    zygote = Zygote(TRAIN_SETUP, tmp_path / "zygote.log")
    try:
        full, crashed = tmp_path / "full", tmp_path / "crashed"
        t0 = time.monotonic()
        zygote.start(full)
        assert zygote.wait() == 0, zygote.stderr()
        t_run = time.monotonic() - t0

        kills = in_write = 0
        last_good = -1
        final = KILL_CONFIG.steps
        for attempt in range(60):
            mode = ("timer", "write", "commit")[attempt % 3] if kills < 20 else "none"
            litter = {n for n in _entries(crashed) if n.startswith(_LITTER)}
            pid = zygote.start(crashed)
            if mode == "timer":  # anywhere: start-up, resume, a step, a write, pruning
                time.sleep(rng.uniform(0.0, 0.3) * t_run)
                _kill(pid)
            elif mode == "write":  # while a checkpoint folder is being written
                target = min(max(last_good, 0) + rng.randint(1, 2), final)
                prefix = f".tmp_step_{target:06d}_"
                _kill_when(
                    pid,
                    lambda p=prefix: any(n.startswith(p) for n in _entries(crashed)),
                    delay=rng.uniform(0, 0.004),
                    timeout=2 * t_run,
                )
            elif mode == "commit":  # right after a checkpoint is committed: pruning, next step
                target = min(max(last_good, 0) + rng.randint(1, 2), final)
                name = f"step_{target:06d}"
                _kill_when(
                    pid,
                    lambda n=name: (
                        (crashed / "latest").is_file()
                        and (crashed / "latest").read_text().strip() == n
                    ),
                    delay=rng.uniform(0, 0.01),
                    timeout=2 * t_run,
                )
            status = zygote.wait()
            assert status in (0, -signal.SIGKILL), zygote.stderr()
            if status == 0:
                last_good = _check_run_folder(crashed, last_good)
                if last_good == final:
                    break
                continue
            kills += 1
            in_write += any(n.startswith(_LITTER) and n not in litter for n in _entries(crashed))
            last_good = _check_run_folder(crashed, last_good)
        else:
            pytest.fail("the run never finished")
    finally:
        zygote.close()

    assert kills >= 15, kills
    assert in_write >= 3, in_write
    print(f"{kills} SIGKILLs, {in_write} of them inside a checkpoint write")
    name = ck.step_dir_name(final)
    a = MaxToki.from_pretrained(full / name, device="cpu").state_dict()
    b = MaxToki.from_pretrained(crashed / name, device="cpu").state_dict()
    _same(a, b, "model")
    sa, sb = ck.load_trainer_state(full / name), ck.load_trainer_state(crashed / name)
    for state in (sa, sb):  # the run folder and the wall-clock time differ by design
        state["config"].pop("out_dir"), state.pop("elapsed_s")
    _same(sa, sb, "trainer_state")  # optimizer, scheduler, RNG states, data position
    assert _metrics(full) == _metrics(crashed)  # lost rows were dropped and logged again
    assert not [n for n in _entries(crashed) if n.startswith(".")], _entries(crashed)


def test_kill_while_pruning_never_leaves_a_broken_complete_checkpoint(tmp_path, monkeypatch):
    """Old checkpoints are deleted so that a kill half-way never exposes a partial folder."""

    def write_model(path: Path) -> None:
        (path / "model.safetensors").write_bytes(b"weights")

    for step in (1, 2):
        ck.save_checkpoint(tmp_path, step, write_model=write_model, trainer_state={"step": step})
    real_rmtree = ck.shutil.rmtree

    def killed_rmtree(path, ignore_errors=False):
        path = Path(path)
        if path.is_dir():  # delete the weights first, then "die"
            for f in sorted(path.iterdir(), key=lambda f: f.name != "model.safetensors"):
                f.unlink()
                raise KeyboardInterrupt
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(ck.shutil, "rmtree", killed_rmtree)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(
            tmp_path, 3, write_model=write_model, trainer_state={"step": 3}, keep_last=1
        )
    monkeypatch.setattr(ck.shutil, "rmtree", real_rmtree)
    for path in ck.list_checkpoints(tmp_path):  # what is listed is whole
        assert (path / "model.safetensors").is_file(), path
    assert ck.latest_checkpoint(tmp_path).name == "step_000003"
    ck.save_checkpoint(tmp_path, 4, write_model=write_model, trainer_state={"step": 4}, keep_last=1)
    assert sorted(os.listdir(tmp_path)) == ["latest", "step_000004"]  # the leftovers are gone


# --- 2. full disk, unwritable folder --------------------------------------------------------
FAULT_CONFIG = dict(
    steps=4,
    global_batch_size=4,
    micro_batch_size=2,
    checkpoint_interval=2,
    keep_last=3,
    resume=True,
    quiet=True,
    warmup_steps=1,
    eval_at_start=False,
    log_interval=1,
    device="cpu",
)


def _fit(out: Path):
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    trainer = Trainer(model, data.dataset(16), None, TrainConfig(**FAULT_CONFIG, out_dir=str(out)))
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    _fit(out)
    final = out / ck.step_dir_name(FAULT_CONFIG["steps"])
    state = ck.load_trainer_state(final)
    state["config"].pop("out_dir"), state.pop("elapsed_s")
    return MaxToki.from_pretrained(final, device="cpu").state_dict(), state


def _assert_equals_reference(out: Path, reference) -> None:
    final = out / ck.step_dir_name(FAULT_CONFIG["steps"])
    _same(reference[0], MaxToki.from_pretrained(final, device="cpu").state_dict(), "model")
    state = ck.load_trainer_state(final)
    state["config"].pop("out_dir"), state.pop("elapsed_s")
    _same(reference[1], state, "trainer_state")


def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class _Armed:
    """Arms the injected fault only while the step-4 checkpoint is written."""

    def __init__(self, monkeypatch, step: int = 4):
        self.on = False
        self.fired = 0
        real = ck.save_checkpoint

        def save(out_dir, s, **kw):
            self.on = s == step
            try:
                return real(out_dir, s, **kw)
            finally:
                self.on = False

        monkeypatch.setattr(ck, "save_checkpoint", save)


def _count_file_fsyncs(tmp_path, monkeypatch) -> int:
    n = [0]
    real = os.fsync
    armed = _Armed(monkeypatch)

    def counting(fd):
        if armed.on and os.path.isfile(f"/proc/self/fd/{fd}"):
            n[0] += 1
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    _fit(tmp_path / "count")
    monkeypatch.undo()
    return n[0]


FAULTS = ["safetensors", "torch.save", "fsync", "unwritable", "cleanup-fails"]


@pytest.mark.parametrize("fault", FAULTS)
def test_write_errors_fail_loudly_and_keep_the_last_checkpoint(
    fault, tmp_path, monkeypatch, reference_run
):
    from maxtoki.models import _io as stio

    if fault == "fsync":  # every file fsync of the step-4 checkpoint fails once, in turn
        points = range(1, _count_file_fsyncs(tmp_path, monkeypatch) + 1)
        assert len(points) >= 5  # weights, config, vocab, state, marker, `latest`
    else:
        points = [None]
    for k in points:
        out = tmp_path / f"run{k}"
        armed = _Armed(monkeypatch)
        if fault in ("safetensors", "cleanup-fails"):
            real = stio.save_file

            def save_file(tensors, filename, metadata=None, real=real, armed=armed):
                if not armed.on:
                    return real(tensors, filename, metadata=metadata)
                armed.fired += 1
                Path(filename).write_bytes(b"\x00" * 100)  # some bytes made it to disk
                raise _enospc(filename)

            monkeypatch.setattr(stio, "save_file", save_file)
            if fault == "cleanup-fails":  # … and removing the temporary folder fails too
                real_rmtree = ck.shutil.rmtree
                monkeypatch.setattr(
                    ck.shutil,
                    "rmtree",
                    lambda p, ignore_errors=False, armed=armed, real=real_rmtree: (
                        None if armed.on else real(p, ignore_errors=ignore_errors)
                    ),
                )
        elif fault == "torch.save":
            real = torch.save

            def save(obj, f, *args, real=real, armed=armed, **kw):
                if not armed.on:
                    return real(obj, f, *args, **kw)
                armed.fired += 1
                Path(f).write_bytes(b"PK\x03\x04partial")
                raise _enospc(f)

            monkeypatch.setattr(torch, "save", save)
        elif fault == "fsync":
            real = os.fsync
            count = [0]

            def fsync(fd, real=real, armed=armed, count=count, k=k):
                if armed.on and os.path.isfile(f"/proc/self/fd/{fd}"):
                    count[0] += 1
                    if count[0] == k:
                        armed.fired += 1
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(fd)

            monkeypatch.setattr(os, "fsync", fsync)
        elif fault == "unwritable":  # what mkdir reports in a folder we may not write to
            real = ck.tempfile.mkdtemp

            def mkdtemp(*args, real=real, armed=armed, **kw):
                if armed.on:
                    armed.fired += 1
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kw.get("dir"))
                return real(*args, **kw)

            monkeypatch.setattr(ck.tempfile, "mkdtemp", mkdtemp)

        with pytest.raises(OSError) as err:
            _fit(out)
        assert armed.fired == 1
        msg = str(err.value)
        assert str(out) in msg and "step_000004" in msg, msg
        if fault == "unwritable":
            assert isinstance(err.value, PermissionError), type(err.value)
            assert "cannot write checkpoint" in msg
        else:
            assert err.value.errno == errno.ENOSPC, err.value
            assert "previous checkpoint step_000002 is intact" in msg, msg
        monkeypatch.undo()

        names = set(os.listdir(out))
        litter = {n for n in names if n.startswith(".")}
        if fault == "cleanup-fails":
            assert litter and all(n.startswith(".tmp_step_000004_") for n in litter), names
        else:
            assert not litter, names
        # the last good checkpoint is the one resumed (a complete step 4 may exist when only
        # `latest` could not be updated: it is redone)
        assert names - litter <= {"latest", "metrics.jsonl", "step_000002", "step_000004"}
        assert ck.latest_checkpoint(out).name == "step_000002"
        _check_run_folder(out, 2)
        _fit(out)  # resume, no fault
        _assert_equals_reference(out, reference_run)
        assert not [n for n in os.listdir(out) if n.startswith(".")]  # litter cleaned up


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores folder permissions (the monkeypatched EACCES case covers it)",
)
def test_read_only_run_folder(tmp_path, monkeypatch, reference_run):
    out = tmp_path / "run"
    real = ck.save_checkpoint

    def save(out_dir, step, **kw):
        if step == 4:
            os.chmod(out_dir, 0o555)
        return real(out_dir, step, **kw)

    monkeypatch.setattr(ck, "save_checkpoint", save)
    try:
        with pytest.raises(PermissionError, match=str(out)):
            _fit(out)
    finally:
        os.chmod(out, 0o755)
    monkeypatch.undo()
    assert ck.latest_checkpoint(out).name == "step_000002"
    _fit(out)
    _assert_equals_reference(out, reference_run)


# --- 3. NaN / inf ---------------------------------------------------------------------------------
class _Poisoned:
    """Example ``bad`` carries ``<mask>`` (id 1), whose embedding row is NaN in these tests."""

    def __init__(self, dataset, bad: int):
        self.dataset, self.bad, self.vocab = dataset, bad, dataset.vocab

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        example = dict(self.dataset[i])
        if i == self.bad:
            ids = example["input_ids"].copy()
            ids[1] = 1
            example["input_ids"] = ids
        return example


def _nan_trainer(on_nan: str, bad: int, steps: int = 6):
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    with torch.no_grad():
        model.model.embed_tokens.weight[1] = float("nan")
    config = TrainConfig(
        steps=steps,
        global_batch_size=4,
        micro_batch_size=2,
        quiet=True,
        warmup_steps=1,
        eval_at_start=False,
        log_interval=1,
        on_nan=on_nan,
        device="cpu",
    )
    return model, Trainer(model, _Poisoned(data.dataset(16), bad), None, config)


def _micro_batches_with(bad: int, steps: int, n: int = 16, micro: int = 2, accum: int = 2):
    batches = ShardedBatches(n, micro, seed=0)
    return [j for j in range(steps * accum) if bad in batches.batch(j)]


def test_nan_names_the_step_and_the_example():
    bad = 11
    first = _micro_batches_with(bad, 6)[0]
    _, trainer = _nan_trainer("raise", bad)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    assert f"step {first // 2 + 1}, micro-batch {first % 2 + 1}/2" in msg, msg
    assert f"micro-batch #{first}," in msg and "nan" in msg
    listed = [int(v) for v in msg.split("dataset indices [")[1].split("]")[0].split(",")]
    assert bad in listed


def test_nan_skip_drops_only_the_bad_steps():
    bad = 11
    steps = 6
    bad_steps = sorted({j // 2 + 1 for j in _micro_batches_with(bad, steps)})
    assert 0 < len(bad_steps) < steps
    model, trainer = _nan_trainer("skip", bad, steps)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = trainer.fit()
    train = history[history["kind"] == "train"]
    assert train.loc[train["skipped_steps"] == 1, "step"].tolist() == bad_steps
    assert train.loc[train["skipped_steps"] == 0, "loss"].map(np.isfinite).all()
    after = model.state_dict()
    for k, v in after.items():
        finite = v[2:] if k == "model.embed_tokens.weight" else v  # row 1 is the poisoned one
        assert torch.isfinite(finite).all(), k
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])  # good steps applied


def test_infinite_gradient_norm_is_caught():
    model, trainer = _nan_trainer("raise", bad=-1, steps=2)
    model.lm_head.weight.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteLossError, match="non-finite gradient norm at step 1"):
        trainer.fit()
    model, trainer = _nan_trainer("skip", bad=-1, steps=2)
    model.lm_head.weight.register_hook(lambda g: g * float("inf"))
    before = model.lm_head.weight.detach().clone()
    history = trainer.fit()
    assert history["skipped_steps"].sum() == 2
    assert torch.equal(before, model.lm_head.weight)


def test_infinite_loss_is_caught():
    bad = 5
    first = _micro_batches_with(bad, 4)[0]
    _, trainer = _nan_trainer("raise", bad=-1, steps=4)
    real = trainer._losses

    def losses(model, batch, **kw):
        out = real(model, batch, **kw)
        if bad in batch.get("index", []):
            out["loss"] = out["loss"] * float("inf")
        return out

    trainer._losses = losses
    with pytest.raises(
        NonFiniteLossError, match=rf"non-finite loss \(inf\) at step {first // 2 + 1},"
    ):
        trainer.fit()


# --- 4. interrupted tokenize_corpus ---------------------------------------------------------------
def _gene(i: int) -> str:
    return f"ENSG{i:011d}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    vocab = GeneVocab.from_genes(
        {_gene(i): float(m) for i, m in enumerate(rng.uniform(0.5, 3, 60))}, time_range=None
    )
    vocab.save(root / "vocab")
    paths = []
    for k, n in enumerate((260, 150, 210)):
        X = rng.poisson(1.5, (n, 55)).astype(np.float32)
        X[rng.integers(0, n, 5)] = 0  # empty cells
        ids = [_gene(i) for i in rng.permutation(64)[:55]]
        a = ad.AnnData(
            sp.csr_matrix(X),
            var=pd.DataFrame({"ensembl_id": ids}, index=[f"g{i}" for i in range(55)]),
        )
        a.obs_names = [f"f{k}_c{i}" for i in range(n)]
        a.obs["donor"] = [f"d{i % 4}" for i in range(n)]
        paths.append(root / f"file{k}.h5ad")
        a.write_h5ad(paths[-1])
    kwargs = dict(vocab=vocab, chunk_size=10, obs_keys=["donor"], min_overlap=0)
    reference = mt.pp.tokenize_corpus(paths, root / "reference", **kwargs)
    cells = {
        (r.source_file, r.obs_name): reference[i] for i, r in enumerate(reference.obs.itertuples())
    }
    return paths, kwargs, reference, cells


def _check_store(out: Path, cells: dict) -> int:
    """A partial store holds whole shards only, each cell once and equal to the reference."""
    if not (out / "manifest.json").is_file():
        return 0
    store = TokenStore(out)
    keys = list(zip(store.obs["source_file"], store.obs["obs_name"], strict=True))
    assert len(keys) == len(set(keys)) == len(store)
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(store[i], cells[key])
    return len(store)


def _assert_same_store(out: Path, reference: TokenStore) -> None:
    store = TokenStore(out)
    assert store.complete and len(store) == len(reference) and store.n_shards == reference.n_shards
    pd.testing.assert_frame_equal(store.obs, reference.obs)
    for i in range(len(store)):
        np.testing.assert_array_equal(store[i], reference[i])
    names = [s["name"] for s in store.manifest["shards"]]
    assert len(names) == len(set(names))
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    assert sorted(os.listdir(out / "shards")) == sorted(names)


@pytest.mark.slow
def test_tokenize_corpus_sigkill_at_random_moments(tmp_path, corpus):
    paths, kwargs, reference, cells = corpus
    setup = textwrap.dedent(
        f"""
        import maxtoki as mt
        from maxtoki.pp import GeneVocab
        import maxtoki.pp._tokenize_corpus, anndata, numba  # warm imports
        mt.settings.verbosity = 0
        PATHS = {[str(p) for p in paths]!r}
        VOCAB = GeneVocab.load({str(paths[0].parent / "vocab")!r})

        def run(out):
            mt.pp.tokenize_corpus(PATHS, out, vocab=VOCAB, chunk_size={kwargs["chunk_size"]},
                                  obs_keys=["donor"], min_overlap=0)
        """
    )
    rng = random.Random(99)
    zygote = Zygote(setup, tmp_path / "zygote.log")
    try:
        t0 = time.monotonic()
        zygote.start(tmp_path / "once")
        assert zygote.wait() == 0, zygote.stderr()
        t_run = time.monotonic() - t0
        _assert_same_store(tmp_path / "once", reference)

        out = tmp_path / "killed"
        kills = mid_shard = 0
        n_cells = 0
        for attempt in range(80):
            litter = {n for n in _entries(out) if n.startswith(".tmp-")}
            pid = zygote.start(out)
            # kill until 16 kills and 3 of them mid-shard (a shard is written in ~10 ms, so
            # an aimed kill can land after its rename: once 2 of 16 did), at most 48 kills
            if (kills >= 16 and mid_shard >= 3) or kills >= 48:
                pass
            elif attempt % 2 == 0:
                time.sleep(rng.uniform(0.0, 0.25) * t_run)
                _kill(pid)
            else:  # while a shard is being written
                skip = rng.randint(0, 3)
                seen: set[str] = set()

                def writing(skip=skip, seen=seen):
                    seen.update(n for n in _entries(out) if n.startswith(".tmp-"))
                    return len(seen) > skip

                _kill_when(pid, writing, delay=rng.uniform(0, 0.003), timeout=2 * t_run)
            status = zygote.wait()
            assert status in (0, -signal.SIGKILL), zygote.stderr()
            if status != 0:
                kills += 1
                mid_shard += any(n.startswith(".tmp-") and n not in litter for n in _entries(out))
            n = _check_store(out, cells)
            assert n >= n_cells  # recorded shards are never lost
            n_cells = n
            if status == 0:
                break
        else:
            pytest.fail("tokenize_corpus never finished")
    finally:
        zygote.close()
    assert kills >= 12, kills
    assert mid_shard >= 3, mid_shard
    print(f"{kills} SIGKILLs, {mid_shard} of them inside a shard write")
    _assert_same_store(out, reference)


class _Injected(RuntimeError):
    pass


def test_tokenize_corpus_interrupted_before_its_first_manifest(tmp_path, corpus, monkeypatch):
    """A run stopped while creating the store (vocabulary half written) can be re-run."""
    paths, kwargs, reference, _ = corpus
    out = tmp_path / "store"
    real = GeneVocab.save

    def half_save(self, directory):  # killed between the vocabulary's two files
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token_dictionary.json").write_text(json.dumps(self.token_to_id))
        (directory / ".gene_median_dictionary.json.tmp").write_text('{"ENSG0')
        raise _Injected("killed while writing the vocabulary")

    monkeypatch.setattr(GeneVocab, "save", half_save)
    with pytest.raises(_Injected):
        mt.pp.tokenize_corpus(paths, out, **kwargs)
    monkeypatch.setattr(GeneVocab, "save", real)
    _assert_same_store(Path(mt.pp.tokenize_corpus(paths, out, **kwargs).path), reference)
    # … and killed after the vocabulary, before the manifest
    out = tmp_path / "store2"
    monkeypatch.setattr(tc, "write_manifest", lambda *a: (_ for _ in ()).throw(_Injected()))
    with pytest.raises(_Injected):
        mt.pp.tokenize_corpus(paths, out, **kwargs)
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == ["vocab"]
    _assert_same_store(Path(mt.pp.tokenize_corpus(paths, out, **kwargs).path), reference)
    # a folder that holds anything else, or another vocabulary, is still refused
    other = tmp_path / "other"
    (other / "vocab").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a token store"):
        mt.pp.tokenize_corpus(paths, other, **kwargs)
    (other / "notes.txt").unlink()
    GeneVocab.from_genes({_gene(i): 1.0 for i in range(5)}, time_range=None).save(other / "vocab")
    with pytest.raises(ValueError, match="not a token store"):
        mt.pp.tokenize_corpus(paths, other, **kwargs)


def test_tokenize_corpus_exceptions_injected_mid_shard(tmp_path, corpus, monkeypatch):
    paths, kwargs, reference, cells = corpus
    out = tmp_path / "store"
    rng = random.Random(5)

    def inject(obj, name, k):
        real = getattr(obj, name)
        calls = [0]

        def failing(*args, **kw):
            calls[0] += 1
            if calls[0] == k:
                raise _Injected(f"{name} call {k}")
            return real(*args, **kw)

        monkeypatch.setattr(obj, name, failing)

    def half_manifest(k):
        real = tc.write_manifest
        calls = [0]

        def failing(path, manifest):
            calls[0] += 1
            if calls[0] == k:  # a partial temporary manifest, then the crash
                (Path(path) / ".manifest.json.tmp").write_text(json.dumps(manifest)[:50])
                raise _Injected("write_manifest")
            return real(path, manifest)

        monkeypatch.setattr(tc, "write_manifest", failing)

    targets = [
        lambda k: inject(np, "save", k),
        lambda k: inject(os, "fsync", k),
        lambda k: inject(os, "rename", k),
        lambda k: inject(pd.DataFrame, "to_csv", k),
        lambda k: inject(tc, "encode_chunk", k),
        half_manifest,
    ]
    faults = 0
    n_cells = 0
    for trial in range(12):
        targets[trial % len(targets)](rng.randint(1, 3))
        try:
            mt.pp.tokenize_corpus(paths, out, **kwargs)
        except _Injected:
            faults += 1
        monkeypatch.undo()
        n = _check_store(out, cells)
        assert n >= n_cells
        n_cells = n
    assert faults >= 10, faults
    _assert_same_store(Path(mt.pp.tokenize_corpus(paths, out, **kwargs).path), reference)
