from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .._anndata import resolve_modality

if TYPE_CHECKING:
    from anndata import AnnData


def age_acceleration(
    adata: AnnData, *, key: str = "maxtoki_age_acceleration", mod: str = "rna"
) -> pd.DataFrame:
    """The table written by :func:`maxtoki.tl.age_acceleration` as a DataFrame.

    Parameters
    ----------
    adata
        AnnData (or MuData) after :func:`maxtoki.tl.age_acceleration`.
    key
        The ``key_added`` used there.
    mod
        Modality of a MuData.

    Returns
    -------
    One row per stratum and group: cell and donor counts, raw mean accelerations, the adjusted
    effect in months and years with its bootstrap interval, and the two p-values.
    """
    return uns_table(adata, key, "mt.tl.age_acceleration", mod)


def uns_table(
    adata: AnnData, key: str, tool: str, mod: str = "rna", field: str = "table"
) -> pd.DataFrame:
    """``uns[key][field]`` (a dict of columns) as a DataFrame; a clear error when missing."""
    adata, _ = resolve_modality(adata, mod)
    entry = adata.uns.get(key)
    if not hasattr(entry, "get") or entry.get(field) is None:
        raise ValueError(
            f"uns has no {key!r} table: run `{tool}` first (or pass its `key_added` as `key`)"
        )
    table = entry[field]
    if not hasattr(table, "get"):
        raise ValueError(
            f"uns[{key!r}][{field!r}] is damaged (a {type(table).__name__}, not a table of "
            f"columns); re-run `{tool}`"
        )
    columns = [str(c) for c in table.get("_columns", [c for c in table if c != "_columns"])]
    return pd.DataFrame({c: _values(table[c]) for c in columns})


def _values(v):
    import numpy as np

    arr = np.asarray(v)
    if arr.dtype.kind in "SO":
        return arr.astype(str)
    return arr
