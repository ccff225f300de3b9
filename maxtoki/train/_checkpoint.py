"""Atomic, resumable training checkpoints.

A checkpoint is a folder ``step_000123/`` holding the model as a ``save_pretrained`` folder
(``config.json`` + ``model.safetensors``, plus the vocabulary) and ``trainer_state.pt`` with the
optimizer, scheduler, RNG states and data position. ``trainer_state.pt`` contains only tensors and
plain Python values and is read with ``torch.load(..., weights_only=True)``.

Writing goes to a hidden temporary folder that is flushed to disk and then renamed into place;
the ``latest`` file is replaced last. Old checkpoints are renamed to a hidden name before they are
deleted. A crash at any point leaves the previous checkpoint and the ``latest`` pointer intact, a
half-written or half-deleted folder is never picked up, and the hidden leftovers of a crash are
removed by the next successful save.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"
STATE_FILE = "trainer_state.pt"
COMPLETE_FILE = "checkpoint.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    """``step_000123``."""
    return f"step_{step:06d}"


# --- RNG states as tensors ------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain values (``weights_only``-safe)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --- writing --------------------------------------------------------------------------------------
def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(
    out_dir: str | os.PathLike,
    step: int,
    *,
    write_model: Callable[[Path], None],
    trainer_state: dict[str, Any],
    keep_last: int | None = 3,
) -> Path:
    """Write ``out_dir/step_XXXXXX`` atomically and point ``out_dir/latest`` at it.

    Parameters
    ----------
    out_dir
        Run folder.
    step
        Optimizer steps done.
    write_model
        Writes the model (``save_pretrained``-style) into the folder it is given.
    trainer_state
        Optimizer/scheduler/RNG/data state: tensors and plain values only.
    keep_last
        Delete all but the newest this many checkpoints (``None`` keeps all).

    Returns
    -------
    The checkpoint folder.
    """
    out = Path(out_dir)
    name = step_dir_name(step)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".tmp_{name}_"))
    except OSError as e:
        raise _same_kind(e, f"cannot write checkpoint {name} into {out}: {e}") from e
    try:
        write_model(tmp)
        torch.save(trainer_state, tmp / STATE_FILE)
        (tmp / COMPLETE_FILE).write_text(json.dumps({"step": int(step), "format": 1}) + "\n")
        _fsync_tree(tmp)
        final = out / name
        if final.exists():  # re-saving a step (e.g. after a resume): swap the old one out first
            old = out / f".old_{name}_{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(out)
        _write_text_atomic(out / LATEST, name + "\n")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            prev = latest_checkpoint(out)
            kept = (
                f"the previous checkpoint {prev.name} is intact"
                if prev
                else "no earlier checkpoint exists"
            )
            raise _same_kind(e, f"writing checkpoint {name} into {out} failed ({e}); {kept}") from e
        raise
    if keep_last is not None:
        _prune(out, keep=keep_last, protect=final)
    return final


def _same_kind(error: OSError, message: str) -> OSError:
    """``message`` as an error of the class and errno of ``error`` (e.g. ``PermissionError``)."""
    try:
        new = type(error)(message)
    except Exception:  # an OSError subclass with another constructor
        new = OSError(message)
    new.errno = error.errno
    return new


def _prune(out: Path, *, keep: int, protect: Path) -> None:
    done = sorted(list_checkpoints(out), key=lambda p: _step_of(p))
    for path in done[: max(len(done) - keep, 0)]:
        if path != protect:
            # hide it first (atomic): a crash half-way through the deletion must not leave a
            # folder that still looks complete but lacks its weights
            hidden = out / f".del_{path.name}_{os.getpid()}"
            try:
                os.replace(path, hidden)
            except OSError:
                (path / COMPLETE_FILE).unlink(missing_ok=True)
                hidden = path
            shutil.rmtree(hidden, ignore_errors=True)
    # left behind by a killed run: temporary, swapped-out and half-deleted folders, pointers
    for pattern in (".tmp_step_*", ".old_step_*", ".del_step_*", f".{LATEST}.*.tmp"):
        for stale in out.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


# --- reading --------------------------------------------------------------------------------------
def _step_of(path: Path) -> int:
    m = _STEP_RE.match(path.name)
    return int(m.group(1)) if m else -1


def is_complete(path: Path) -> bool:
    """Whether ``path`` is a fully written checkpoint folder."""
    return (
        _STEP_RE.match(path.name) is not None
        and (path / COMPLETE_FILE).is_file()
        and (path / STATE_FILE).is_file()
    )


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders in ``out_dir`` (temporary folders never count)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return [p for p in out.iterdir() if p.is_dir() and is_complete(p)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``out_dir/latest`` names, else the newest complete one, else ``None``."""
    out = Path(out_dir)
    pointer = out / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        candidate = out / name
        if _STEP_RE.match(name) and candidate.is_dir() and is_complete(candidate):
            return candidate
    done = list_checkpoints(out)
    return max(done, key=_step_of) if done else None


def resolve_resume(
    resume: bool | str | os.PathLike, out_dir: str | os.PathLike | None
) -> Path | None:
    """The checkpoint a ``resume`` setting points to (``None``: start fresh).

    ``True`` means ``out_dir``'s latest checkpoint when there is one; a path is a checkpoint folder
    or a run folder (its latest checkpoint).
    """
    if resume is False or resume is None:
        return None
    if resume is True:
        if out_dir is None:
            raise ValueError("resume=True needs `out_dir` (where the checkpoints are)")
        return latest_checkpoint(out_dir)
    path = Path(resume)
    if path.is_dir() and is_complete(path):
        return path
    found = latest_checkpoint(path) if path.is_dir() else None
    if found is None:
        raise ValueError(
            f"resume={str(resume)!r} is neither a complete checkpoint nor a folder with one"
        )
    return found


def load_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``trainer_state.pt`` of a checkpoint (``weights_only=True``: no code is unpickled).

    Raises
    ------
    ValueError
        The file is not a trainer state of tensors and plain values (a damaged file, or a pickle
        that would run code: it is refused, never executed).
    """
    file = Path(path) / STATE_FILE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(
            f"{file} is not a maxtoki trainer state: it is damaged or holds objects other than "
            f"tensors and plain values, which are never unpickled ({type(e).__name__})"
        ) from None
