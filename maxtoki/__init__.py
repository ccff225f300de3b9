"""MaxToki, the temporal single-cell foundation model, for scverse.

``import maxtoki as mt`` is light: the subpackages (``mt.pp``, ``mt.tl``, ``mt.pl``, ``mt.get``,
``mt.models``, ``mt.train``, ``mt.datasets``) are imported on first use, and torch, numba and
matplotlib only when a function needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import logging
from ._settings import settings

__version__ = "0.1.0"

_SUBPACKAGES = ("pp", "tl", "pl", "get", "models", "train", "datasets")

__all__ = ["__version__", "logging", "settings", *_SUBPACKAGES]

if TYPE_CHECKING:
    from . import datasets, get, models, pl, pp, tl, train  # noqa: F401


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'maxtoki' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
