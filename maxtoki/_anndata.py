"""Small internal helpers shared by the AnnData-facing functions (pp, tl)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData


def resolve_modality(data: Any, mod: str = "rna") -> tuple[AnnData, Any]:
    """Return ``(adata, mdata)``: the AnnData to work on and the MuData it came from (or ``None``).

    Accepts an :class:`~anndata.AnnData` or a :class:`~mudata.MuData` (whose modality ``mod`` is
    used); anything else is a :class:`TypeError`.
    """
    from anndata import AnnData

    if isinstance(data, AnnData):
        return data, None
    mods = getattr(data, "mod", None)
    if type(data).__name__ == "MuData" and isinstance(mods, Mapping):
        if mod not in mods:
            raise ValueError(
                f"the MuData has no modality {mod!r} (it has {sorted(mods)}); pass `mod=` naming "
                "the modality with raw RNA counts"
            )
        return mods[mod], data
    raise TypeError(f"expected an AnnData or MuData, got {type(data).__name__}")


def mirror_obs(mdata: Any, mod: str, keys: Iterable[str]) -> None:
    """Copy ``mdata.mod[mod].obs[key]`` to ``mdata.obs[f"{mod}:{key}"]`` (muon's convention)."""
    if mdata is None:
        return
    adata = mdata.mod[mod]
    for key in keys:
        col = adata.obs[key].reindex(mdata.obs_names)
        mdata.obs[f"{mod}:{key}"] = col.to_numpy() if col.dtype != "category" else col


def h5ad_safe(value: Any) -> Any:
    """Turn ``value`` into something ``write_h5ad`` stores (no ``None``, paths or tuples)."""
    if value is None:
        return "None"
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [h5ad_safe(v) for v in value]
        if all(isinstance(v, (int, float, np.number, bool)) for v in items):
            return np.asarray(items)
        return np.asarray([str(v) for v in items], dtype=object)
    if isinstance(value, (str, bool, int, float, np.number, np.ndarray)):
        return value
    return str(value)
