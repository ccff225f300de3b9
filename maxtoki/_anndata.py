"""Small internal helpers shared by the AnnData-facing functions (pp, tl)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

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
    raise TypeError(
        f"expected an AnnData or MuData, got {type(data).__name__}; wrap a cells × genes matrix "
        "or DataFrame with `anndata.AnnData(...)`, or read a file with `anndata.read_h5ad`"
    )


def require_cells(adata: AnnData, what: str = "the AnnData") -> None:
    """Raise a ``ValueError`` when ``adata`` has no cells (usually a filter that matched none)."""
    if adata.n_obs == 0:
        raise ValueError(
            f"{what} has no cells; pass one with at least one cell (check the subset or filter "
            "that made it)"
        )


def positive_int(name: str, value: Any, *, optional: bool = False) -> int | None:
    """``value`` as an ``int`` after checking that it is a positive integer.

    With ``optional``, ``None`` is passed through. Anything else (a bool, a float, a string,
    zero or a negative number) is a :class:`ValueError` naming the parameter.
    """
    if optional and value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        allowed = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def require_bool(**flags: Any) -> None:
    """A :class:`TypeError` naming the first of ``flags`` that is not ``True`` or ``False``."""
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (an int or a float, not a bool or a string)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_vocab(vocab: Any) -> None:
    """Raise a ``TypeError`` unless ``vocab`` is a :class:`~maxtoki.pp.GeneVocab`."""
    from .pp import GeneVocab

    if not isinstance(vocab, GeneVocab):
        raise TypeError(
            "vocab must be a maxtoki.pp.GeneVocab (the model's vocabulary), "
            f"got {type(vocab).__name__}; load one with `GeneVocab.load(dir)` or "
            "`GeneVocab.from_files(...)`"
        )


def mirror_obs(mdata: Any, mod: str, keys: Iterable[str]) -> None:
    """Copy ``mdata.mod[mod].obs[key]`` to ``mdata.obs[f"{mod}:{key}"]`` (muon's convention)."""
    if mdata is None:
        return
    adata = mdata.mod[mod]
    for key in keys:
        col = adata.obs[key].reindex(mdata.obs_names)
        mdata.obs[f"{mod}:{key}"] = col.to_numpy() if col.dtype != "category" else col


# --- obs -----------------------------------------------------------------------------------------
def require_obs(adata: AnnData, key: str, fix: str) -> None:
    """Raise a ``ValueError`` naming ``fix`` when ``obs[key]`` is missing."""
    if key not in adata.obs.columns:
        raise ValueError(f"obs has no column {key!r}: {fix}")


def numeric_obs(adata: AnnData, key: str, what: str, fix: str) -> np.ndarray:
    """``obs[key]`` as float64 (``nan`` for missing); a clear error if absent or not numeric."""
    require_obs(adata, key, fix)
    col = adata.obs[key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(col.cat.categories.dtype)
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        raise ValueError(
            f"obs[{key!r}] of the {what} must be numeric months, got {col.dtype}; {fix} (convert "
            "it with `pd.to_numeric`)"
        )
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def group_labels(obs: pd.DataFrame, groupby: str | Sequence[str] | None, what: str) -> np.ndarray:
    """One label per cell: the values of the ``groupby`` columns joined by ``'|'``."""
    if groupby is None:
        return np.full(len(obs), "all", dtype=object)
    cols = [groupby] if isinstance(groupby, str) else list(groupby)
    missing = [c for c in cols if c not in obs.columns]
    if missing:
        raise ValueError(
            f"groupby columns {missing} are not in the obs of the {what}; pass existing columns "
            "or `groupby=None`"
        )
    out = obs[cols[0]].astype(str).to_numpy(dtype=object)
    for c in cols[1:]:
        out = out + "|" + obs[c].astype(str).to_numpy(dtype=object)
    return out
