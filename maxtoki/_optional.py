"""Optional dependencies: import them where needed, with the install line when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

#: The optional packages (import name → distribution name, for the ``pip install`` hint): only
#: these are imported by name, never a name computed from input.
_OPTIONAL = {
    "distributed": "distributed",
    "flash_attn": "flash-attn",
    "huggingface_hub": "huggingface-hub",
    "ipywidgets": "ipywidgets",
    "scanpy": "scanpy",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
}


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
    if name not in _OPTIONAL:
        raise ValueError(f"{name!r} is not one of maxtoki's optional packages {sorted(_OPTIONAL)}")
    try:
        return importlib.import_module(name)
    except ImportError as err:
        dist = _OPTIONAL[name]
        raise ImportError(
            f"{purpose} needs the optional package `{dist}`: pip install 'maxtoki[{extra}]' "
            f"(or pip install {dist})"
        ) from err
