from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

_VERBOSITY = {"error": 0, "warning": 1, "info": 2, "hint": 3, "debug": 4}


@dataclass
class MaxTokiSettings:
    """Global settings of :mod:`maxtoki`, in the spirit of ``scanpy.settings``.

    Attributes
    ----------
    verbosity
        0 errors, 1 warnings, 2 info (default), 3 hints, 4 debug; or one of those names.
    n_jobs
        CPU threads for Numba kernels and data loading; ``-1`` uses every core.
    device
        ``"auto"`` picks CUDA when available, else CPU; or any torch device string.
    batch_size
        Default number of prompts per forward pass in :mod:`maxtoki.tl`.
    figdir
        Folder where :mod:`maxtoki.pl` writes figures when asked to.
    """

    _verbosity: int = 2
    n_jobs: int = -1
    device: str = "auto"
    batch_size: int = 32
    figdir: Path = field(default_factory=lambda: Path("figures"))

    @property
    def verbosity(self) -> int:
        return self._verbosity

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

    def __repr__(self) -> str:
        return (
            f"MaxTokiSettings(verbosity={self.verbosity}, n_jobs={self.n_jobs}, "
            f"device={self.device!r}, batch_size={self.batch_size}, figdir={str(self.figdir)!r})"
        )


settings = MaxTokiSettings()
