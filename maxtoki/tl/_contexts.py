"""Reference cells and the contexts drawn from them for TimeBetweenCells queries (private).

Used by ``predict_time``, ``perturb``, ``evaluate`` and ``generate``: the reference (cells with
known ages, their tokens, groups and donors) as arrays with integer rows, the context sampler,
and the ages read through :class:`~maxtoki.pp.PromptEncoder` and
:class:`~maxtoki.models.BatchRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import group_labels, numeric_obs, resolve_modality
from .._keys import read_tokens

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab


@dataclass
class Reference:
    """Reference cells with known ages: tokens, ages, group labels and donors, row by row."""

    cells: list[np.ndarray]
    times: np.ndarray
    groups: np.ndarray
    donors: np.ndarray | None
    rows: np.ndarray  # rows of the AnnData they come from
    adata: Any  # that AnnData (the query object itself when ``context=None``)

    def position_of(self, adata: AnnData, rows: np.ndarray) -> np.ndarray:
        """Each row of ``adata``'s position in the reference (-1: not a reference cell)."""
        if adata is not self.adata:
            return np.full(len(rows), -1, dtype=np.int64)
        pos = np.full(adata.n_obs, -1, dtype=np.int64)
        pos[self.rows] = np.arange(len(self.rows))
        return pos[rows]


def reference_set(
    adata: AnnData,
    *,
    context: Any,
    reference_key: str | None,
    reference: Any,
    time_key: str,
    groupby: Any,
    donor_key: str | None,
    vocab: GeneVocab,
    tokens_key: str,
    mod: str,
) -> Reference:
    """The reference: ``context``'s cells, or ``adata``'s cells whose ``reference_key`` matches."""
    if context is None:
        ref, rows = adata, _reference_rows(adata, reference_key, reference, time_key)
    else:
        ref, _ = resolve_modality(context, mod)
        rows = np.arange(ref.n_obs)
    times = numeric_obs(ref, time_key, "reference", "pass `time_key=` naming ages in months")
    rows = rows[np.isfinite(times[rows])]
    if len(rows) == 0:
        raise ValueError(
            f"no reference cell has a known obs[{time_key!r}]; pass a `context` with ages"
        )
    cells = read_tokens(ref, tokens_key, vocab).cells(rows)
    use_donor = donor_key is not None and donor_key in adata.obs and donor_key in ref.obs
    donors = ref.obs[donor_key].astype(str).to_numpy()[rows] if use_donor else None
    groups = group_labels(ref.obs, groupby, "context")[rows]
    return Reference(cells, times[rows], groups, donors, rows, ref)


def _reference_rows(adata: AnnData, key: str | None, reference: Any, time_key: str) -> np.ndarray:
    if key is None or key not in adata.obs.columns:
        if key is not None:
            logg.warning(
                f"obs has no {key!r} column; every cell with a known obs[{time_key!r}] serves as "
                "reference"
            )
        return np.arange(adata.n_obs)
    values = [reference] if isinstance(reference, str) else list(reference)
    mask = adata.obs[key].astype(str).isin([str(v) for v in values]).to_numpy()
    if not mask.any():
        raise ValueError(
            f"no reference cells: obs[{key!r}] has no value in {values}; pass `reference=` (the "
            "healthy/reference group), `reference_key=None`, or a `context` AnnData"
        )
    return np.flatnonzero(mask)


def draw_contexts(
    ref: Reference,
    query_groups: np.ndarray,
    query_donors: np.ndarray | None,
    query_self: np.ndarray,
    *,
    n_contexts: int,
    n_cells: int,
    gen: np.random.Generator,
    groupby: Any,
) -> np.ndarray:
    """``(n_queries, n_contexts, n_cells)`` reference positions: trajectories for each query.

    Context cells come from the query's group, never the query itself (``query_self``: its
    position in the reference, or -1) nor, when donors are known, the query's donor; they are
    drawn at distinct times when possible and sorted by time.
    """
    out = np.empty((len(query_groups), n_contexts, n_cells), dtype=np.int64)
    index = pd.Series(np.arange(len(ref.groups))).groupby(ref.groups.astype(str)).indices
    missing = sorted({str(g) for g in pd.unique(query_groups)} - set(index))
    if missing:
        shown = ", ".join(repr(g) for g in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ValueError(
            f"no reference cells for the group(s) {shown} (groupby={groupby!r}); pass a "
            "`context` with cells of these groups and known ages, or drop these query cells"
        )
    keys = pd.DataFrame(
        {"g": query_groups.astype(str), "d": "" if query_donors is None else query_donors}
    )
    for (g, d), rows in keys.groupby(["g", "d"], sort=False).indices.items():
        pool = index[g]
        if ref.donors is not None and query_donors is not None:
            pool = pool[ref.donors[pool] != d]
        if len(pool) == 0:
            raise ValueError(
                f"group {g!r} has no reference cells outside donor {d!r}; context cells never come "
                "from the query's own donor: add reference donors or pass `donor_key=None`"
            )
        for r in rows:
            cand = pool if query_self[r] < 0 else pool[pool != query_self[r]]
            if len(cand) == 0:
                raise ValueError(f"group {g!r} has no reference cell besides the query itself")
            times = ref.times[cand]
            for c in range(n_contexts):
                out[r, c] = _draw(cand, times, n_cells, gen)
    return out


def _draw(cand: np.ndarray, times: np.ndarray, k: int, gen: np.random.Generator) -> np.ndarray:
    """``k`` cells of ``cand`` at distinct times when possible, sorted by time."""
    picked: list[int] = []
    seen: set[float] = set()
    for j in gen.integers(len(cand), size=8 * k):
        if times[j] not in seen:
            seen.add(float(times[j]))
            picked.append(int(j))
            if len(picked) == k:
                break
    if len(picked) < k:  # few distinct times: fill (with repeats if needed)
        picked += list(gen.choice(len(cand), size=k - len(picked), replace=len(cand) < k))
    picked_arr = np.asarray(picked)
    picked_arr = picked_arr[np.argsort(times[picked_arr], kind="stable")]
    return cand[picked_arr]


def time_prompts(
    encoder,
    ref_cells: list[np.ndarray],
    ref_times: np.ndarray,
    queries: list[np.ndarray] | list[list[np.ndarray]],
    contexts: np.ndarray,
) -> list[np.ndarray]:
    """TimeBetweenCells prompts (up to ``<eoq>``) of every query × context, query-major.

    A query given as a list of views (:func:`~maxtoki.tl._views.query_views`) shows its views to
    its contexts in turn.
    """
    prompts = []
    for i, query in enumerate(queries):
        views = query if isinstance(query, list) else [query]
        for c, rows in enumerate(contexts[i]):
            dts = np.rint(np.diff(ref_times[rows]))
            ex = encoder.encode(
                [ref_cells[r] for r in rows], dts, task="TimeBetweenCells",
                query=views[c % len(views)],
            )  # fmt: skip
            prompts.append(ex["input_ids"])
    return prompts


def predict_ages(
    runner,
    encoder,
    ref_cells: list[np.ndarray],
    ref_times: np.ndarray,
    queries: list[np.ndarray] | list[list[np.ndarray]],
    contexts: np.ndarray,
    *,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted age and timelapse per query and context (both ``(n_queries, n_contexts)``)."""
    n_q, k, _ = contexts.shape
    prompts = time_prompts(encoder, ref_cells, ref_times, queries, contexts)
    dts = runner.timelapses(prompts, desc=desc).reshape(n_q, k)
    return ref_times[contexts[:, :, -1]] + dts, dts
