from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import group_labels, is_number, resolve_modality
from .._docs import inject_docs

if TYPE_CHECKING:
    from anndata import AnnData

TASKS = ("TimeBetweenCells", "NextCell")
Task = Literal["TimeBetweenCells", "NextCell"]


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
    random_state: int | np.random.Generator | None = 0,
    time_range: tuple[int, int] = (-1500, 1499),
    mod: str = "rna",
) -> pd.DataFrame:
    """Build a table of temporal prompts: context cells, timelapses (Δt) and a query cell.

    Each prompt is a trajectory of ``n_context`` cells of one group (e.g. one cell type and
    sex), sorted by time ascending, followed by a query cell of the same group at a time that
    differs from every context cell's time. MaxToki reads the prompt as
    ``<bos> cell1 <eos> Δt1 <bos> cell2 <eos> … <boq> …query… <eoq>``; the two tasks ask for
    the timelapse from the last context cell to the query (TimeBetweenCells) or for the query
    cell given that timelapse (NextCell). Context times are drawn as distinct time points when the
    group has enough of them, then one cell per time point.

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
    n_prompts
        Number of training prompts; by default one per training cell, each cell being the query
        once. Larger numbers cycle through shuffled cells so every cell is queried equally often.
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
    {random_state}
    time_range
        Inclusive month range of the model's time tokens; timelapses outside it are clipped with
        a warning.
    {mod}

    Returns
    -------
    One row per prompt with columns

    ``task``
        ``"TimeBetweenCells"`` or ``"NextCell"``.
    ``split``
        ``"train"`` or ``"eval"`` (query held out).
    ``group``
        The group's values joined by ``"|"``.
    ``n_context``
        Number of context cells.
    ``ctx0``, ``ctx1``, …
        Obs names of the context cells, time ascending (missing when ``n_context`` is smaller).
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
    obs = adata.obs
    n_obs = adata.n_obs

    checked = _check_args(task, task_mix, n_context, n_prompts, obs, time_range)
    tasks, (k_min, k_max), (lo, hi) = checked

    times = _check_times(obs, time_key)
    groups = group_labels(obs, groupby, "AnnData")
    held = _holdout_mask(obs, holdout, n_obs)

    valid = np.isfinite(times)
    if not valid.all():
        warnings.warn(
            f"{int((~valid).sum())} cells have no value in obs[{time_key!r}] and are left out of "
            "the prompts",
            UserWarning,
            stacklevel=2,
        )
    train_cells = np.flatnonzero(valid & ~held)
    eval_cells = np.flatnonzero(valid & held)
    if len(train_cells) == 0 and len(eval_cells) == 0:
        raise ValueError("no cells with a time value to build prompts from")
    train_pools = _pools(train_cells, groups, times, what="training cells")
    eval_pools = (
        _pools(np.flatnonzero(valid), groups, times, what="cells") if len(eval_cells) else {}
    )
    n_train = len(train_cells) if n_prompts is None else int(n_prompts)
    if n_train and len(train_cells) == 0:
        raise ValueError(
            "every cell is held out; there are no training cells to build prompts from"
        )
    query, split, task_col = _queries(train_cells, eval_cells, n_train, tasks, task_mix, gen)
    n = len(query)
    ctx = np.full((n, k_max), -1, dtype=np.int64)
    n_ctx = gen.integers(k_min, k_max + 1, size=n)
    for i in range(n):
        pools = train_pools if split[i] == "train" else eval_pools
        ctx[i, : n_ctx[i]] = _draw_context(query[i], pools[groups[query[i]]], times, n_ctx[i], gen)
    df = _table(
        adata.obs_names, times, groups, query, split, task_col, ctx, n_ctx, (lo, hi), time_key
    )
    df.attrs["maxtoki_trajectories"] = {
        "time_key": time_key,
        "groupby": None if groupby is None else list(_as_list(groupby)),
        "n_context": [k_min, k_max],
        "task": list(tasks),
        "task_mix": float(task_mix),
        "time_range": [lo, hi],
    }
    logg.info(
        f"    {int((split == 'train').sum())} training and {int((split == 'eval').sum())} eval "
        f"prompts over {len(train_pools) or len(eval_pools)} groups",
        time=start,
    )
    return df


def _queries(train_cells, eval_cells, n_train, tasks, task_mix, gen):
    """Query cells, splits and tasks of the prompts.

    Training queries cycle through shuffled training cells; each held-out cell is the query of
    one eval prompt per task.
    """
    queries = _cycle(train_cells, n_train, gen)
    if len(tasks) == 2:
        n_tbc = round(task_mix * n_train)
        train_tasks = np.array([TASKS[0]] * n_tbc + [TASKS[1]] * (n_train - n_tbc), dtype=object)
        gen.shuffle(train_tasks)
    else:
        train_tasks = np.array([tasks[0]] * n_train, dtype=object)
    rows_q, rows_task = [queries], [train_tasks]
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
            stacklevel=3,
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
            warnings.warn(f"holdout {dict(holdout)!r} matches no cell", UserWarning, stacklevel=3)
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

    __slots__ = ("cells", "index", "times")

    def __init__(self, cells: np.ndarray, times: np.ndarray):
        t = times[cells]
        self.times, inverse = np.unique(t, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(self.times) + 1))
        self.cells = [cells[order[bounds[j] : bounds[j + 1]]] for j in range(len(self.times))]
        self.index = {float(v): j for j, v in enumerate(self.times)}


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


def _cycle(cells: np.ndarray, n: int, gen: np.random.Generator) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    reps = -(-n // len(cells))
    return np.concatenate([gen.permutation(cells) for _ in range(reps)])[:n]


def _draw_context(
    q: int, pool: _Pool, times: np.ndarray, k: int, gen: np.random.Generator
) -> np.ndarray:
    j = pool.index.get(float(times[q]))
    others = np.arange(len(pool.times))
    if j is not None:
        others = others[others != j]
    if len(others) >= k:
        picked = np.sort(gen.choice(others, size=k, replace=False))
    else:
        picked = np.sort(gen.choice(others, size=k, replace=True))
    out = np.empty(k, dtype=np.int64)
    pos = 0
    for tp in np.unique(picked):
        m = int(np.sum(picked == tp))
        cells = pool.cells[tp]
        out[pos : pos + m] = gen.choice(cells, size=m, replace=m > len(cells))
        pos += m
    return out
