"""Optional dependencies: import them where needed, with the install line when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

#: Distribution name of an import name, where the two differ (for the ``pip install`` hint).
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "pyyaml", "flash_attn": "flash-attn"}


def import_optional(name: str, *, extra: str, purpose: str) -> ModuleType:
    """Import the optional package ``name``, or raise an ImportError saying how to install it.

    Parameters
    ----------
    name
        Import name, e.g. ``'ipywidgets'``.
    extra
        The ``maxtoki`` extra that installs it (``pip install 'maxtoki[{extra}]'``).
    purpose
        What needs it, e.g. ``'mt.pl.explore'``; starts the message.

    Returns
    -------
    The module.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        dist = _DISTRIBUTIONS.get(name, name)
        raise ImportError(
            f"{purpose} needs the optional package `{dist}`: pip install 'maxtoki[{extra}]' "
            f"(or pip install {dist})"
        ) from err
