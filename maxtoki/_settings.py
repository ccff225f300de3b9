from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

_VERBOSITY = {"error": 0, "warning": 1, "info": 2, "hint": 3, "debug": 4}
# verbosity → level of the ``maxtoki`` logger (15 is maxtoki.logging.HINT, as in scanpy)
_LOG_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, 15, logging.DEBUG)


@dataclass
class MaxTokiSettings:
    """Global settings of :mod:`maxtoki`, in the spirit of ``scanpy.settings``.

    Attributes
    ----------
    verbosity
        0 errors, 1 warnings, 2 info (default), 3 hints, 4 debug; or one of those names.
        Sets the level of the ``maxtoki`` logger (see :mod:`maxtoki.logging`), and reads it
        back, so ``logging.getLogger("maxtoki").setLevel(logging.DEBUG)`` means verbosity 4.
    n_jobs
        CPU threads for Numba kernels and data loading; ``-1`` uses every core.
    device
        ``"auto"`` picks CUDA when available, else CPU; or any torch device string.
    dtype
        Precision of inference in :mod:`maxtoki.tl`: ``"auto"`` runs bfloat16 autocast on CUDA
        (float16 on GPUs without bfloat16) and the weights' own dtype on the CPU; or
        ``"bfloat16"``, ``"float16"``, ``"float32"``, ``"float64"`` (e.g. ``"float32"`` for full
        precision on a GPU; ``"bfloat16"`` reads ~1.3× faster on a CPU with AMX, ages within a
        few months, as ``maxtoki demo`` does there).
    batch_size
        Default number of prompts per forward pass in :mod:`maxtoki.tl`.
    figdir
        Folder where :mod:`maxtoki.pl` writes figures when asked to.
    progress
        Show progress bars (at info verbosity and above). ``False`` keeps the log lines but drops
        the bars, e.g. in notebooks whose outputs are saved.
    """

    _verbosity: int = 2
    n_jobs: int = -1
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    figdir: Path = field(default_factory=lambda: Path("figures"))
    progress: bool = True

    def __post_init__(self) -> None:
        self.verbosity = self._verbosity

    @property
    def verbosity(self) -> int:
        level = logging.getLogger("maxtoki").getEffectiveLevel()
        return max(sum(level <= threshold for threshold in _LOG_LEVELS) - 1, 0)

    @verbosity.setter
    def verbosity(self, value: int | Literal["error", "warning", "info", "hint", "debug"]) -> None:
        if isinstance(value, str):
            if value not in _VERBOSITY:
                raise ValueError(
                    f"verbosity must be one of {sorted(_VERBOSITY)} or 0–4, got {value!r}"
                )
            value = _VERBOSITY[value]
        if not isinstance(value, int) or not 0 <= value <= 4:
            raise ValueError(f"verbosity must be an integer 0–4, got {value!r}")
        self._verbosity = value
        logging.getLogger("maxtoki").setLevel(_LOG_LEVELS[value])

    @property
    def show_progress(self) -> bool:
        """Whether progress bars are shown (:attr:`progress` and info verbosity or above)."""
        return bool(self.progress) and self.verbosity >= 2

    @property
    def n_threads(self) -> int:
        """The number of threads that ``n_jobs`` stands for."""
        return os.cpu_count() or 1 if self.n_jobs < 1 else self.n_jobs

    def resolve_device(self, device: str | None = None) -> str:
        """Turn ``device`` (or :attr:`device`) into a torch device string; ``"auto"`` → cuda/cpu."""
        device = self.device if device is None else device
        if device != "auto":
            return str(device)
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @contextlib.contextmanager
    def override(self, **values) -> Iterator[MaxTokiSettings]:
        """Set some settings inside a ``with`` block, e.g. ``settings.override(verbosity=1)``."""
        names = {f.name.lstrip("_") for f in fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown settings {unknown}; see `help(mt.settings)`")
        before = {name: getattr(self, name) for name in values}
        try:
            for name, value in values.items():
                setattr(self, name, value)
            yield self
        finally:
            for name, value in before.items():
                setattr(self, name, value)

    def __repr__(self) -> str:
        return (
            f"MaxTokiSettings(verbosity={self.verbosity}, n_jobs={self.n_jobs}, "
            f"device={self.device!r}, dtype={self.dtype!r}, batch_size={self.batch_size}, "
            f"figdir={str(self.figdir)!r}, "
            f"progress={self.progress})"
        )


settings = MaxTokiSettings()
