from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import group_labels, is_number, require_bool, resolve_modality
from .._docs import inject_docs

if TYPE_CHECKING:
    from anndata import AnnData

TASKS = ("TimeBetweenCells", "NextCell")
Task = Literal["TimeBetweenCells", "NextCell"]
QUERY_SAMPLING = ("time_points", "cells")
QuerySampling = Literal["time_points", "cells"]


class _Sampler(NamedTuple):
    """The sampler's options, checked."""

    sort_context: bool
    allow_same_time: bool
    query_sampling: str
    group_balance: float | None


@inject_docs
def trajectories(
    adata: AnnData,
    *,
    time_key: str = "age_months",
    groupby: str | Sequence[str] | None = ("cell_type", "sex"),
    n_context: int | tuple[int, int] = (2, 3),
    n_prompts: int | None = None,
    task: Task | Sequence[Task] = ("TimeBetweenCells", "NextCell"),
    task_mix: float = 0.5,
    holdout: Mapping[str, Any] | Sequence[bool] | np.ndarray | pd.Series | None = None,
    exclude_times: tuple[float, float] | None = None,
    sort_context: bool = False,
    allow_same_time: bool = True,
    query_sampling: QuerySampling = "time_points",
    group_balance: float | None = 0.1,
    random_state: int | np.random.Generator | None = 0,
    time_range: tuple[int, int] = (-1500, 1499),
    mod: str = "rna",
) -> pd.DataFrame:
    """Build a table of temporal prompts: context cells, timelapses (Δt) and a query cell.

    Each prompt is a trajectory of ``n_context`` cells of one group (e.g. one cell type and
    sex) followed by a query cell of the same group. MaxToki reads the prompt as
    ``<bos> cell1 <eos> Δt1 <bos> cell2 <eos> … <boq> …query… <eoq>``; the two tasks ask for
    the timelapse from the last context cell to the query (TimeBetweenCells) or for the query
    cell given that timelapse (NextCell).

    The defaults follow the official sampler: a training prompt draws its group (by size,
    ``group_balance``), the query's time point uniformly over the group's time points, then a
    cell at it, and context cells at distinct time points in random order (so Δt between them
    may be negative); the query may share a context cell's time point (Δt = 0). The options
    ``sort_context=True, allow_same_time=False, query_sampling="cells", group_balance=None``
    give maxtoki's earlier sampler. See ``docs/compatibility.md``.

    The table holds obs names and months, not tokens: inspect it, save it with
    ``DataFrame.to_csv`` (read it back with :func:`maxtoki.train.read_prompts`) and pass it to
    :func:`maxtoki.tl.train` or the ``maxtoki train`` command. Nothing is written into ``adata``.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) with a numeric time column in ``obs``.
    time_key
        ``obs`` column with each cell's time in months (e.g. donor age).
    groupby
        ``obs`` column(s) whose combination defines a trajectory's group; ``None`` puts every
        cell into one group. Every group needs cells at ≥ 2 distinct times.
    n_context
        Number of context cells, or an inclusive ``(min, max)`` range drawn uniformly per prompt.
        Context cells lie at distinct time points of the group; a time point repeats only when
        the group has fewer usable time points than the prompt has context cells.
    n_prompts
        Number of training prompts; by default as many as there are training cells.
    task
        ``"TimeBetweenCells"``, ``"NextCell"`` or both.
    task_mix
        Fraction of training prompts that are TimeBetweenCells when both tasks are requested.
    holdout
        Cells kept out of training, answered by the ``"eval"`` prompts: a boolean mask over the
        cells, or a mapping ``{obs column: value or list of values}`` (a cell is held out when it
        matches every entry), e.g. ``{"cell_type": ["B cell"]}``. Training prompts use no
        held-out cell; each held-out cell is the query of one eval prompt per task, with context
        from the other cells of its group.
    exclude_times
        Held-out ages: an inclusive ``(min, max)`` range of months. Cells whose time lies in it
        are never a context cell (of any prompt) nor a training query; like ``holdout`` cells,
        each is the query of one eval prompt per task, with context from its group's cells at
        other times. Combines with ``holdout`` (a cell is held out when either says so).
    sort_context
        ``False`` (official): context cells in random order, so ``dt0``, ``dt1`` can be negative.
        ``True``: context cells sorted by time, ascending.
    allow_same_time
        ``True`` (official): the query's time point is drawn independently of the context's and
        may equal a context cell's time (``dt_query = 0`` when it is the last one's); a context
        cell is never the query cell itself. ``False``: context cells come only from the group's
        other time points.
    query_sampling
        How a training prompt picks its query within its group: ``"time_points"`` (official)
        draws one of the group's distinct time points uniformly, then a cell at it, so every age
        is queried equally often whatever its number of cells; ``"cells"`` draws a cell
        uniformly.
    group_balance
        How training prompts are shared among groups (the official ``balance_timegroups``): a
        group of ``n`` training cells among ``G`` groups is drawn with probability proportional
        to ``(1 - group_balance) * n + group_balance / G``: ``0`` is proportional to size, ``1``
        uniform. As in the official formula the smoothing term is added to a cell count, so
        ``0.1`` stays practically proportional to size for groups of more than a few cells.
        ``None``: proportional to size, and with ``query_sampling="cells"`` no draw at all: the
        queries cycle through the shuffled training cells, each the query equally often (once
        when ``n_prompts`` is ``None``).
    {random_state}
    time_range
        Inclusive month range of the model's time tokens; timelapses outside it are clipped with
        a warning.
    {mod}

    Returns
    -------
    One row per prompt, with the options in ``df.attrs['maxtoki_trajectories']``; columns

    ``task``
        ``"TimeBetweenCells"`` or ``"NextCell"``.
    ``split``
        ``"train"`` or ``"eval"`` (query held out).
    ``group``
        The group's values joined by ``"|"``.
    ``n_context``
        Number of context cells.
    ``ctx0``, ``ctx1``, …
        Obs names of the context cells, in prompt order (missing when ``n_context`` is smaller).
    ``t_ctx0``, ``t_ctx1``, …
        Their times (months).
    ``dt0``, ``dt1``, …
        Timelapses between consecutive context cells (whole months): ``dt0 = t_ctx1 - t_ctx0``.
    ``query``, ``t_query``, ``dt_query``
        The query cell, its time, and the timelapse from the last context cell to it.
    """
    adata, _ = resolve_modality(adata, mod)
    start = logg.info("building temporal prompts")
    gen = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    tasks, (k_min, k_max), (lo, hi) = _check_args(
        task, task_mix, n_context, n_prompts, adata.obs, time_range
    )
    sampler = _check_sampler(sort_context, allow_same_time, query_sampling, group_balance)
    excluded_range = _check_exclude_times(exclude_times)
    df, n_groups = _build(
        adata, time_key, groupby, holdout, excluded_range, n_prompts, tasks, task_mix,
        (k_min, k_max), sampler, (lo, hi), gen,
    )  # fmt: skip
    df.attrs["maxtoki_trajectories"] = {
        "time_key": time_key,
        "groupby": None if groupby is None else list(_as_list(groupby)),
        "n_context": [k_min, k_max],
        "task": list(tasks),
        "task_mix": float(task_mix),
        "exclude_times": None if excluded_range is None else list(excluded_range),
        **sampler._asdict(),
        "time_range": [lo, hi],
    }
    logg.info(
        f"    {int((df['split'] == 'train').sum())} training and "
        f"{int((df['split'] == 'eval').sum())} eval prompts over {n_groups} groups",
        time=start,
    )
    return df


def _build(
    adata, time_key, groupby, holdout, excluded_range, n_prompts, tasks, task_mix, k_range,
    sampler, time_range, gen,
):  # fmt: skip
    """The prompt table and the number of groups: pools of cells, queries, then contexts."""
    obs = adata.obs
    times = _check_times(obs, time_key)
    groups = group_labels(obs, groupby, "AnnData")
    held = _holdout_mask(obs, holdout, adata.n_obs)
    valid = np.isfinite(times)
    if not valid.all():
        warnings.warn(
            f"{int((~valid).sum())} cells have no value in obs[{time_key!r}] and are left out of "
            "the prompts",
            UserWarning,
            stacklevel=3,
        )
    excluded = _excluded_mask(times, excluded_range, time_key)
    train_cells = np.flatnonzero(valid & ~held & ~excluded)
    eval_cells = np.flatnonzero(valid & (held | excluded))
    if len(train_cells) == 0 and len(eval_cells) == 0:
        raise ValueError("no cells with a time value to build prompts from")
    train_pools = _pools(train_cells, groups, times, what="training cells")
    eval_pools = (
        _eval_pools(np.flatnonzero(valid & ~excluded), eval_cells, groups, times, excluded_range)
        if len(eval_cells)
        else {}
    )
    n_train = len(train_cells) if n_prompts is None else int(n_prompts)
    if n_train and len(train_cells) == 0:
        raise ValueError(
            "every cell is held out (by `holdout` or `exclude_times`); there are no training "
            "cells to build prompts from"
        )
    train_q = _train_queries(train_cells, train_pools, n_train, sampler, gen)
    query, split, task_col = _queries(train_q, eval_cells, tasks, task_mix, gen)
    n = len(query)
    k_min, k_max = k_range
    ctx = np.full((n, k_max), -1, dtype=np.int64)
    n_ctx = gen.integers(k_min, k_max + 1, size=n)
    for i in range(n):
        pools = train_pools if split[i] == "train" else eval_pools
        ctx[i, : n_ctx[i]] = _draw_context(
            query[i], pools[groups[query[i]]], times, n_ctx[i], gen, sampler
        )
    df = _table(adata.obs_names, times, groups, query, split, task_col, ctx, n_ctx, time_range,
                time_key)  # fmt: skip
    return df, len(train_pools) or len(eval_pools)


def _queries(train_q, eval_cells, tasks, task_mix, gen):
    """Query cells, splits and tasks of the prompts.

    ``round(task_mix * n)`` training prompts are TimeBetweenCells, in shuffled order; each
    held-out cell is the query of one eval prompt per task.
    """
    n_train = len(train_q)
    if len(tasks) == 2:
        n_tbc = round(task_mix * n_train)
        train_tasks = np.array([TASKS[0]] * n_tbc + [TASKS[1]] * (n_train - n_tbc), dtype=object)
        gen.shuffle(train_tasks)
    else:
        train_tasks = np.array([tasks[0]] * n_train, dtype=object)
    rows_q, rows_task = [train_q], [train_tasks]
    rows_split = [np.array(["train"] * n_train, dtype=object)]
    if len(eval_cells):
        eq = np.repeat(eval_cells, len(tasks))
        rows_q.append(eq)
        rows_task.append(np.tile(np.array(tasks, dtype=object), len(eval_cells)))
        rows_split.append(np.array(["eval"] * len(eq), dtype=object))
    return (
        np.concatenate(rows_q).astype(np.int64),
        np.concatenate(rows_split),
        np.concatenate(rows_task),
    )


def _table(obs_names, times, groups, query, split, task_col, ctx, n_ctx, time_range, time_key):
    """The prompt table: obs names, times and whole-month timelapses (clipped, with a warning)."""
    lo, hi = time_range
    n, k_max = ctx.shape
    names = np.asarray(obs_names, dtype=object)
    t_ctx = np.where(ctx >= 0, times[np.maximum(ctx, 0)], np.nan)
    dt = np.rint(np.diff(t_ctx, axis=1))
    dt_q = np.rint(times[query] - t_ctx[np.arange(n), n_ctx - 1])
    n_clip = int(np.sum((dt < lo) | (dt > hi)) + np.sum((dt_q < lo) | (dt_q > hi)))
    if n_clip:
        warnings.warn(
            f"{n_clip} timelapses lie outside the time-token range [{lo}, {hi}] months and were "
            f"clipped to it; check the units of obs[{time_key!r}] (months expected)",
            UserWarning,
            stacklevel=4,
        )
        dt, dt_q = np.clip(dt, lo, hi), np.clip(dt_q, lo, hi)
    data: dict[str, Any] = {
        "task": task_col,
        "split": split,
        "group": np.asarray(groups, dtype=object)[query] if n else np.array([], dtype=object),
        "n_context": n_ctx.astype(np.int64),
    }
    for j in range(k_max):
        data[f"ctx{j}"] = np.where(ctx[:, j] >= 0, names[np.maximum(ctx[:, j], 0)], None)
    for j in range(k_max):
        data[f"t_ctx{j}"] = t_ctx[:, j]
    for j in range(k_max - 1):
        data[f"dt{j}"] = pd.array(dt[:, j], dtype="Int64")
    data["query"] = names[query] if n else np.array([], dtype=object)
    data["t_query"] = times[query]
    data["dt_query"] = dt_q.astype(np.int64)
    return pd.DataFrame(data)


# --- validation ---------------------------------------------------------------------------------
def _check_args(task, task_mix, n_context, n_prompts, obs, time_range):
    """The tasks, the ``(min, max)`` context cells and months, or a clear error."""
    tasks = _check_tasks(task)
    if not is_number(task_mix) or not 0.0 <= task_mix <= 1.0:
        raise ValueError(
            f"task_mix is the fraction of TimeBetweenCells prompts in [0, 1], got {task_mix!r}"
        )
    k_min, k_max = _check_n_context(n_context)
    if n_prompts is not None:
        if not isinstance(n_prompts, (int, np.integer)) or isinstance(n_prompts, bool):
            raise TypeError(f"n_prompts must be a non-negative integer or None, got {n_prompts!r}")
        if n_prompts < 0:
            raise ValueError(f"n_prompts must be a non-negative integer or None, got {n_prompts}")
    if not obs.index.is_unique:
        raise ValueError(
            "obs_names are not unique (e.g. "
            f"{obs.index[obs.index.duplicated()][0]!r}), so the prompts' cell names would be "
            "ambiguous; run `adata.obs_names_make_unique()` first"
        )
    lo, hi = (int(v) for v in time_range)
    if hi <= lo:
        raise ValueError(f"time_range must be (min, max) months with max > min, got {time_range}")
    return tasks, (k_min, k_max), (lo, hi)


def _check_sampler(sort_context, allow_same_time, query_sampling, group_balance) -> _Sampler:
    """The sampler's options, or a clear error."""
    require_bool(sort_context=sort_context, allow_same_time=allow_same_time)
    if not isinstance(query_sampling, str) or query_sampling not in QUERY_SAMPLING:
        raise ValueError(
            f"query_sampling must be 'time_points' (a time point of the group uniformly, then a "
            f"cell at it: the official sampler) or 'cells' (a cell uniformly), got "
            f"{query_sampling!r}"
        )
    if group_balance is not None:
        if not is_number(group_balance):
            raise TypeError(
                f"group_balance must be a number in [0, 1] (0: groups in proportion to their "
                f"size, 1: uniform over groups) or None, got {group_balance!r}"
            )
        if not 0.0 <= group_balance <= 1.0:
            raise ValueError(
                f"group_balance must lie in [0, 1] (0: groups in proportion to their size, 1: "
                f"uniform over groups), got {group_balance!r}"
            )
        group_balance = float(group_balance)
    return _Sampler(bool(sort_context), bool(allow_same_time), query_sampling, group_balance)


def _check_exclude_times(exclude_times) -> tuple[float, float] | None:
    """The inclusive ``(min, max)`` months of ``exclude_times``, or a clear error."""
    if exclude_times is None:
        return None
    if (
        not isinstance(exclude_times, Sequence)
        or isinstance(exclude_times, str)
        or len(exclude_times) != 2
        or not all(is_number(v) for v in exclude_times)
    ):
        raise TypeError(
            f"exclude_times must be an inclusive (min, max) pair of months or None, got "
            f"{exclude_times!r}; to hold out scattered ages, pass a mask to `holdout=` (e.g. "
            "`adata.obs['age_months'].isin([...])`)"
        )
    lo, hi = (float(v) for v in exclude_times)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise ValueError(
            f"exclude_times must be a finite (min, max) pair of months with min <= max, got "
            f"{exclude_times!r}"
        )
    return lo, hi


def _excluded_mask(times: np.ndarray, excluded_range, time_key: str) -> np.ndarray:
    if excluded_range is None:
        return np.zeros(len(times), dtype=bool)
    lo, hi = excluded_range
    with np.errstate(invalid="ignore"):
        mask = (times >= lo) & (times <= hi)
    if not mask.any():
        warnings.warn(
            f"exclude_times {excluded_range} matches no cell's obs[{time_key!r}]",
            UserWarning,
            stacklevel=4,
        )
    return mask


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _check_tasks(task) -> tuple[str, ...]:
    tasks = tuple(_as_list(task))
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise ValueError(f"task must be one or both of {TASKS}, got {task!r}")
    return tuple(t for t in TASKS if t in tasks)


def _check_n_context(n_context) -> tuple[int, int]:
    if isinstance(n_context, (int, np.integer)) and not isinstance(n_context, bool):
        k_min = k_max = int(n_context)
    elif (
        isinstance(n_context, Sequence)
        and not isinstance(n_context, str)
        and len(n_context) == 2
        and all(isinstance(v, (int, np.integer)) for v in n_context)
    ):
        k_min, k_max = (int(v) for v in n_context)
    else:
        raise TypeError(f"n_context must be an int or a (min, max) pair, got {n_context!r}")
    if not 1 <= k_min <= k_max:
        raise ValueError(f"n_context must satisfy 1 <= min <= max, got {n_context!r}")
    return k_min, k_max


def _check_times(obs: pd.DataFrame, time_key: str) -> np.ndarray:
    if time_key not in obs.columns:
        raise ValueError(
            f"obs has no time column {time_key!r}; pass `time_key=` naming the column with each "
            f"cell's time in months (obs columns: {list(obs.columns)})"
        )
    col = obs[time_key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(col.cat.categories.dtype)
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        raise ValueError(
            f"obs[{time_key!r}] must hold numeric times in months, got dtype {col.dtype} (e.g. "
            f"{col.iloc[:3].tolist()}); convert it, e.g. with `pd.to_numeric`"
        )
    times = col.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(times).any():
        raise ValueError(f"obs[{time_key!r}] has infinite values; times must be finite months")
    return times


def _holdout_mask(obs: pd.DataFrame, holdout, n_obs: int) -> np.ndarray:
    if holdout is None:
        return np.zeros(n_obs, dtype=bool)
    if isinstance(holdout, Mapping):
        mask = np.ones(n_obs, dtype=bool)
        for key, values in holdout.items():
            if key not in obs.columns:
                raise ValueError(
                    f"holdout names obs column {key!r}, which does not exist; pass existing obs "
                    "columns as its keys"
                )
            vals = [values] if isinstance(values, str) or np.ndim(values) == 0 else list(values)
            mask &= obs[key].isin(vals).to_numpy()
        if not mask.any():
            warnings.warn(f"holdout {dict(holdout)!r} matches no cell", UserWarning, stacklevel=4)
        return mask
    if isinstance(holdout, pd.Series):
        if not holdout.index.equals(obs.index):
            holdout = holdout.reindex(obs.index)
            if holdout.isna().any():
                raise ValueError("the holdout Series is missing some obs names")
        holdout = holdout.to_numpy()
    mask = np.asarray(holdout)
    if mask.dtype != bool or mask.shape != (n_obs,):
        raise TypeError(
            f"holdout must be a mapping {{obs column: values}} or a boolean mask of length "
            f"{n_obs}, got {type(holdout).__name__} with dtype {mask.dtype} and shape {mask.shape}"
        )
    return mask


# --- sampling -----------------------------------------------------------------------------------
class _Pool:
    """The cells of one group, by time point."""

    __slots__ = ("cells", "counts", "flat", "index", "starts", "times")

    def __init__(self, cells: np.ndarray, times: np.ndarray):
        t = times[cells]
        self.times, inverse = np.unique(t, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(self.times) + 1))
        self.flat = cells[order]
        self.starts, self.counts = bounds[:-1], np.diff(bounds)
        self.cells = [self.flat[bounds[j] : bounds[j + 1]] for j in range(len(self.times))]
        self.index = {float(v): j for j, v in enumerate(self.times)}

    def sample(self, m: int, how: str, gen: np.random.Generator) -> np.ndarray:
        """``m`` cells: a time point uniformly, then a cell at it (or, ``"cells"``, a cell)."""
        if how == "cells":
            return self.flat[gen.integers(0, len(self.flat), size=m)]
        tp = gen.integers(0, len(self.times), size=m)
        return self.flat[self.starts[tp] + gen.integers(0, self.counts[tp])]


def _pools(
    cells: np.ndarray, groups: np.ndarray, times: np.ndarray, *, what: str
) -> dict[str, _Pool]:
    pools: dict[str, _Pool] = {}
    if len(cells) == 0:
        return pools
    g = groups[cells]
    for label in pd.unique(g):
        pools[label] = _Pool(cells[g == label], times)
    single = sorted(label for label, p in pools.items() if len(p.times) < 2)
    if single:
        shown = ", ".join(repr(s) for s in single[:10]) + (" …" if len(single) > 10 else "")
        raise ValueError(
            f"{len(single)} group(s) of {what} have a single time point, but a trajectory needs "
            f"cells at ≥ 2 distinct times: {shown}. Drop these groups, use a coarser `groupby`, "
            "or hold out fewer cells"
        )
    return pools


def _eval_pools(context_cells, eval_cells, groups, times, excluded_range) -> dict[str, _Pool]:
    """Pools of the eval prompts' contexts: every cell with a time outside ``exclude_times``."""
    pools = _pools(context_cells, groups, times, what="cells")
    missing = sorted(set(groups[eval_cells]) - set(pools))
    if missing:
        shown = ", ".join(repr(s) for s in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} group(s) have no cell outside exclude_times={excluded_range} to "
            f"serve as context for their held-out cells: {shown}. Narrow `exclude_times` or drop "
            "these groups"
        )
    return pools


def _group_probs(sizes: np.ndarray, group_balance: float | None) -> np.ndarray:
    """The official ``get_weighted_probs``: ``(1 - b) * n + b / G``, normalised."""
    b = 0.0 if group_balance is None else group_balance
    w = (1.0 - b) * sizes + b / len(sizes)
    return w / w.sum()


def _train_queries(cells, pools: dict[str, _Pool], n: int, sampler: _Sampler, gen) -> np.ndarray:
    """The training prompts' query cells: a group, then a time point and a cell (or a cell)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if sampler.query_sampling == "cells" and sampler.group_balance is None:
        return _cycle(cells, n, gen)
    labels = list(pools)
    sizes = np.array([len(pools[label].flat) for label in labels], dtype=np.float64)
    which = gen.choice(len(labels), size=n, p=_group_probs(sizes, sampler.group_balance))
    out = np.empty(n, dtype=np.int64)
    for g, label in enumerate(labels):
        rows = np.flatnonzero(which == g)
        if len(rows):
            out[rows] = pools[label].sample(len(rows), sampler.query_sampling, gen)
    return out


def _cycle(cells: np.ndarray, n: int, gen: np.random.Generator) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    reps = -(-n // len(cells))
    return np.concatenate([gen.permutation(cells) for _ in range(reps)])[:n]


def _draw_context(
    q: int, pool: _Pool, times: np.ndarray, k: int, gen: np.random.Generator, sampler: _Sampler
) -> np.ndarray:
    """``k`` context cells of ``pool`` for the query ``q``, never ``q`` itself.

    Time points are drawn without replacement (with replacement only when there are too few),
    then one cell at each.
    """
    j = pool.index.get(float(times[q]))
    others = np.arange(len(pool.times))
    if j is not None and (not sampler.allow_same_time or np.all(pool.cells[j] == q)):
        others = others[others != j]
    picked = gen.choice(others, size=k, replace=len(others) < k)
    if sampler.sort_context:
        picked = np.sort(picked)
    out = np.empty(k, dtype=np.int64)
    for tp in np.unique(picked):
        pos = np.flatnonzero(picked == tp)
        cells = pool.cells[tp]
        if tp == j:
            cells = cells[cells != q]
        out[pos] = gen.choice(cells, size=len(pos), replace=len(pos) > len(cells))
    return out
