"""Prompt table + token source → training examples (numpy only; no AnnData, no torch).

One example is a dict of numpy values:

``input_ids``
    ``int64 (L,)``: the prompt (and, for NextCell and stage 1, the answer, teacher-forced).
``labels``
    ``int64 (L,)``, aligned with ``input_ids`` (the usual causal-LM convention: the token at
    position ``i`` is predicted from position ``i - 1``); ``-100`` everywhere except the
    NextCell answer ``<bos> genes… <eos>`` and, in stage 1, the cell's genes and ``<eos>``.
``task``
    ``0`` TimeBetweenCells, ``1`` NextCell, ``2`` stage-1 next-gene prediction.
``eoq_pos``
    Position of ``<eoq>``, where the timelapse is read (``-1`` in stage 1).
``time_target``
    TimeBetweenCells: the timelapse in months from the last context cell to the query; else NaN.
    It is the answer time token, read as a regression target at ``eoq_pos`` (not a CE label).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from .. import logging as logg
from ..pp import PromptEncoder

if TYPE_CHECKING:
    from ._config import TrainConfig

TASKS = ("TimeBetweenCells", "NextCell")
TASK_IDS = {"TimeBetweenCells": 0, "NextCell": 1, "stage1": 2}
IGNORE_INDEX = -100
_NAME_COLUMNS = ("query", "group", "task", "split")


class TokenSource(Protocol):
    """Anything that returns one cell's tokens (``<bos> genes… <eos>``) by integer index."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...


class ArrayTokens:
    """A token source over a padded token matrix, e.g. ``obsm['maxtoki_tokens']``.

    Parameters
    ----------
    tokens
        ``(n_cells, L)`` integer matrix; row ``i`` is ``<bos> genes… <eos>`` then padding.
    lengths
        Number of tokens of each row, ``<bos>`` and ``<eos>`` included.
    names
        Cell names (e.g. obs names) in row order, used to look up prompt cells.
    """

    def __init__(self, tokens: np.ndarray, lengths: Sequence[int] | np.ndarray, *, names=None):
        tokens = np.asarray(tokens)
        lengths = np.asarray(lengths)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(
                f"tokens must be a 2-D integer matrix, got {tokens.dtype} {tokens.shape}"
            )
        if lengths.shape != (tokens.shape[0],):
            raise ValueError(
                f"lengths must have one entry per row ({tokens.shape[0]}), got {lengths.shape}"
            )
        if lengths.size and (lengths.min() < 2 or lengths.max() > tokens.shape[1]):
            raise ValueError(
                f"lengths must lie in [2, {tokens.shape[1]}] (<bos> and <eos> included)"
            )
        self.tokens = tokens
        self.lengths = lengths.astype(np.int64)
        self.names = None if names is None else pd.Index(np.asarray(names).astype(str))

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[i, : self.lengths[i]]


def read_prompts(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prompt table written by ``mt.pp.trajectories(...).to_csv(path)``.

    Cell names are read as strings (so names like ``"007"`` survive), timelapses as integers.
    Files written with or without the index column both work.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"prompt table {str(path)!r} not found; write one with "
            "`mt.pp.trajectories(...).to_csv(path)`"
        )
    columns = list(pd.read_csv(path, nrows=0).columns)
    if not columns:
        raise ValueError(f"{path} is empty; write the table of mt.pp.trajectories with to_csv")
    index_col = 0 if columns[0] == "" or columns[0].startswith("Unnamed") else None
    if index_col == 0:
        columns = columns[1:]
    names = [c for c in columns if c.startswith("ctx") or c in _NAME_COLUMNS]
    df = pd.read_csv(
        path,
        index_col=index_col,
        dtype=dict.fromkeys(names, str),
        keep_default_na=False,
        na_values={c: [""] for c in columns},
    )
    for c in df.columns:
        if c.startswith("dt"):
            df[c] = df[c].astype("Int64")
    return df


# --- shared helpers -----------------------------------------------------------------------------
class _Cells:
    """Fetches cells from a token source, checks ``<bos>``/``<eos>`` and cuts genes."""

    def __init__(self, tokens: TokenSource, *, bos: int, eos: int, max_genes: int | None):
        _check_max_genes(max_genes)
        self.tokens, self.bos, self.eos, self.max_genes = tokens, bos, eos, max_genes

    def __call__(self, i: int) -> np.ndarray:
        cell = np.asarray(self.tokens[int(i)], dtype=np.int64)
        if len(cell) < 2 or cell[0] != self.bos or cell[-1] != self.eos:
            raise ValueError(
                f"cell {i} of the token source is not `<bos> genes… <eos>` (starts {cell[:3]}, "
                f"ends "
                f"{cell[-2:]}); pass tokens from `mt.pp.tokenize` or `mt.pp.TokenStore`"
            )
        if self.max_genes is not None and len(cell) - 2 > self.max_genes:
            cell = np.concatenate([cell[: self.max_genes + 1], cell[-1:]])
        return cell


def _check_max_genes(max_genes) -> None:
    if max_genes is not None and (not isinstance(max_genes, (int, np.integer)) or max_genes < 1):
        raise ValueError(f"max_genes_per_cell must be a positive int or None, got {max_genes!r}")


def _check_max_length(max_length) -> int | None:
    if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < 3):
        raise ValueError(f"max_length must be an int >= 3 or None, got {max_length!r}")
    return None if max_length is None else int(max_length)


def _name_index(tokens, names) -> pd.Index:
    if names is None:
        names = getattr(tokens, "names", None)
        obs = getattr(tokens, "obs", None) if names is None else None
        if obs is not None:  # a TokenStore keeps the obs names in a column
            names = obs["obs_name"] if "obs_name" in obs.columns else obs.index
    if names is None:
        raise ValueError(
            "cannot map the prompts' cell names to the token source; pass `obs_names=` (the "
            "name of each token row) or a token source with `.names` or `.obs`"
        )
    index = pd.Index(np.asarray(names).astype(str))
    if len(index) != len(tokens):
        raise ValueError(f"obs_names has {len(index)} names for {len(tokens)} token rows")
    if not index.is_unique:
        raise ValueError(
            "the cell names of the token source are not unique (e.g. the same obs name in two "
            "files); make obs names unique before tokenizing, or pass unique `obs_names=`"
        )
    return index


# --- stage 2 ------------------------------------------------------------------------------------
class PromptDataset:
    """Temporal prompts (stage 2) built from a prompt table and a token source.

    The layout follows the official release: the context
    ``<bos> cell1 <eos> Δt1 <bos> cell2 <eos> [Δt2 <bos> cell3 <eos>]`` followed by
    ``<boq> <bos> query <eos> <eoq>`` (TimeBetweenCells; the answer is the Δt from the last
    context cell to the query, read at ``<eoq>``) or by ``<boq> Δt <eoq> <bos> query <eos>``
    (NextCell; the answer ``<bos> query <eos>`` carries the labels).

    Parameters
    ----------
    prompts
        Table from :func:`maxtoki.pp.trajectories` (or :func:`read_prompts`).
    tokens
        Token source: ``tokens[i]`` is cell ``i``'s ``<bos> genes… <eos>``
        (:class:`maxtoki.pp.TokenStore` or :class:`ArrayTokens`).
    vocab
        The :class:`~maxtoki.pp.GeneVocab` of the tokens (``tokens.vocab`` when omitted).
    obs_names
        Names of the token rows; by default ``tokens.names`` or the ``obs_name`` column of
        ``tokens.obs`` (a :class:`~maxtoki.pp.TokenStore`).
    max_length
        Context length; longer prompts have their first context cell truncated (its
        lowest-ranked genes dropped) or, with ``truncate=False``, raise a ``ValueError``.
    max_genes_per_cell
        Keep at most this many top-ranked genes of every cell (``None`` keeps all).
    truncate
        Truncate the first context cell when a prompt exceeds ``max_length``.
    task_mix
        ``None`` uses the table's ``task`` column; a number in [0, 1] re-assigns tasks so that this
        fraction is TimeBetweenCells (deterministic in ``seed``).
    seed
        Seed of the task re-assignment.
    """

    def __init__(
        self,
        prompts: pd.DataFrame,
        tokens: TokenSource,
        *,
        vocab=None,
        obs_names: Sequence[str] | None = None,
        max_length: int | None = None,
        max_genes_per_cell: int | None = None,
        truncate: bool = True,
        task_mix: float | None = None,
        seed: int = 0,
    ):
        vocab = vocab if vocab is not None else getattr(tokens, "vocab", None)
        if vocab is None or not getattr(vocab, "has_time_tokens", False):
            raise ValueError(
                "temporal prompts need a vocabulary with time tokens, <boq> and <eoq>; pass "
                "`vocab=` (e.g. `GeneVocab.from_genes(medians)` or `vocab.with_time_tokens()`)"
            )
        if not isinstance(prompts, pd.DataFrame):
            raise TypeError(
                f"prompts must be a DataFrame from mt.pp.trajectories, got {type(prompts).__name__}"
            )
        required = ["task", "n_context", "ctx0", "query", "dt_query"]
        missing = [c for c in required if c not in prompts.columns]
        if missing:
            raise ValueError(
                f"the prompt table lacks columns {missing}; build it with `mt.pp.trajectories` "
                "(or read it with `mt.train.read_prompts`)"
            )
        self.vocab = vocab
        self.max_length = _check_max_length(max_length)
        self.tokens = tokens
        self._prompts = prompts  # for the columns to_hf_dataset copies
        _check_max_genes(max_genes_per_cell)
        self.encoder = PromptEncoder(
            vocab, max_length=self.max_length, max_genes=max_genes_per_cell, truncate=truncate
        )
        index = _name_index(tokens, obs_names)

        n = len(prompts)
        n_ctx = prompts["n_context"].to_numpy(dtype=np.int64)
        k_max = int(n_ctx.max()) if n else 1
        if n and n_ctx.min() < 1:
            raise ValueError("every prompt needs at least one context cell (n_context >= 1)")
        ctx_cols = [f"ctx{j}" for j in range(k_max)]
        dt_cols = [f"dt{j}" for j in range(k_max - 1)]
        missing = [c for c in ctx_cols + dt_cols if c not in prompts.columns]
        if missing:
            raise ValueError(f"the prompt table lacks columns {missing} for its n_context values")
        self.ctx = np.full((n, k_max), -1, dtype=np.int64)
        for j, c in enumerate(ctx_cols):
            used = n_ctx > j
            self.ctx[used, j] = self._lookup(index, prompts[c].to_numpy()[used], c)
        self.query = self._lookup(index, prompts["query"].to_numpy(), "query")
        self.n_ctx = n_ctx
        dts = np.zeros((n, max(k_max - 1, 0)), dtype=np.int64)
        for j, c in enumerate(dt_cols):
            used = n_ctx > j + 1
            col = pd.to_numeric(prompts[c], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            if np.isnan(col[used]).any():
                raise ValueError(
                    f"column {c!r} has missing timelapses in prompts with > {j + 1} context cells"
                )
            dts[used, j] = col[used].astype(np.int64)
        self._check_times(dts, n_ctx[:, None] > np.arange(1, k_max)[None, :], "dt")
        self.dts = dts
        dt_q = pd.to_numeric(prompts["dt_query"], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(dt_q).any():
            raise ValueError("column 'dt_query' has missing values")
        self.dt_query = dt_q.astype(np.int64)
        self._check_times(self.dt_query, np.ones(n, bool), "dt_query")

        task = prompts["task"].to_numpy()
        bad = sorted({str(t) for t in task} - set(TASKS))
        if bad:
            raise ValueError(f"unknown tasks {bad} in the prompt table; tasks are {TASKS}")
        self.task = np.where(task == TASKS[0], 0, 1).astype(np.int64)
        if task_mix is not None:
            if not 0.0 <= float(task_mix) <= 1.0:
                raise ValueError(f"task_mix must lie in [0, 1] or be None, got {task_mix}")
            u = np.random.default_rng(seed).random(n)
            self.task = np.where(u < float(task_mix), 0, 1).astype(np.int64)

    # -- construction helpers
    @staticmethod
    def _lookup(index: pd.Index, names: np.ndarray, column: str) -> np.ndarray:
        pos = index.get_indexer(np.asarray(names).astype(str))
        if (pos < 0).any():
            examples = list(np.asarray(names)[pos < 0][:3])
            raise ValueError(
                f"{int((pos < 0).sum())} cells in column {column!r} are not in the token source "
                f"(e.g. {examples}); tokenize the same cells the prompts were built from"
            )
        return pos.astype(np.int64)

    def _check_times(self, months: np.ndarray, used: np.ndarray, column: str) -> None:
        lo, hi = self.vocab.time_range
        m = months[used]
        if m.size and (m.min() < lo or m.max() > hi):
            raise ValueError(
                f"timelapses in {column!r} span [{m.min()}, {m.max()}] months, outside the time "
                f"tokens [{lo}, {hi}]; rebuild the prompts with `time_range={(lo, hi)}`"
            )

    # -- access
    def __len__(self) -> int:
        return len(self.query)

    @property
    def tasks(self) -> np.ndarray:
        """Task id of every prompt (0 TimeBetweenCells, 1 NextCell)."""
        return self.task

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        k = int(self.n_ctx[i])
        try:
            return self.encoder.encode(
                [self.tokens[int(c)] for c in self.ctx[i, :k]],
                self.dts[i, : k - 1],
                task=TASKS[int(self.task[i])],
                query=self.tokens[int(self.query[i])],
                dt_query=int(self.dt_query[i]),
            )
        except ValueError as e:
            raise ValueError(f"prompt {i}: {e}") from None

    # -- export
    def to_hf_dataset(self, *, keys: Sequence[str] = (), **kwargs: Any):
        """Export the prompts in the official MaxToki layout, as a Hugging Face dataset.

        One row per prompt with the columns of the official cell paragraph assembler
        (``data_prep/cell_paragraph_assembler.py``, ``is_train=True``), whose ``input_ids`` the
        official training and prediction code reads (``train.py``, ``predict.py``): save it
        with ``ds.save_to_disk(path)`` and pass the folder as their dataset, with the token
        dictionary of the same vocabulary (``vocab.save(folder)`` writes
        ``token_dictionary.json``). Streams prompt by prompt through
        :meth:`datasets.Dataset.from_generator` (memory stays bounded; ``datasets`` writes Arrow
        files to its cache).

        Parameters
        ----------
        keys
            Columns of the prompt table to copy (e.g. ``["query", "group", "split"]``).
        **kwargs
            Passed to :meth:`datasets.Dataset.from_generator` (e.g. ``cache_dir``).

        Returns
        -------
        A :class:`datasets.Dataset` with

        ``input_ids``
            The prompt and its answer (int32), as the official assembler joins them:
            ``… <boq> <bos> query <eos> <eoq> Δt`` (TimeBetweenCells: the answer is the time
            token of ``dt_query``) or ``… <boq> Δt <eoq> <bos> query <eos>`` (NextCell). The
            official collator tells the tasks apart by the token after ``<eoq>`` and puts the
            loss on the answer. The prompt is :class:`~maxtoki.pp.PromptEncoder`'s
            (``self[i]['input_ids']``); with ``max_length``, a TimeBetweenCells prompt is fitted
            to ``max_length - 1`` tokens so that prompt and answer fit ``max_length`` (as the
            official assembler fits them).
        ``response_len``
            Number of answer tokens (1 for TimeBetweenCells).
        ``timesteps``, ``cell_indices``
            As in the official blueprint: the timelapses in months (``dt0``, … then
            ``dt_query``) and the token-source rows of the context cells then the query.
        ``task``
            ``"TimeBetweenCells"`` or ``"NextCell"`` (the official code does not read it).

        and the ``keys`` columns.
        """
        try:
            import datasets
        except ImportError:
            raise ImportError(
                "PromptDataset.to_hf_dataset needs the optional `datasets` package: "
                "pip install datasets"
            ) from None
        keys = [keys] if isinstance(keys, str) else [str(k) for k in keys]
        own = ("input_ids", "response_len", "timesteps", "cell_indices", "task")
        missing = [k for k in keys if k not in self._prompts.columns or k in own]
        if missing:
            raise ValueError(
                f"keys {missing} are not columns of the prompt table (or name an exported "
                f"column {list(own)}); pass some of {list(self._prompts.columns)}"
            )
        feats = {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "response_len": datasets.Value("int32"),
            "timesteps": datasets.Sequence(datasets.Value("int64")),
            "cell_indices": datasets.Sequence(datasets.Value("int64")),
            "task": datasets.Value("string"),
        }
        extra = {}
        for k in keys:
            feats[k], extra[k] = _hf_column(self._prompts[k], datasets)
        enc = self.encoder
        fit = None if enc.max_length is None else max(enc.max_length - 1, 3)
        tbc = PromptEncoder(self.vocab, max_length=fit, max_genes=enc.max_genes,
                            truncate=enc.truncate)  # fmt: skip

        def gen():
            for i in range(len(self)):
                yield {**self._official_row(i, tbc), **{k: v[i] for k, v in extra.items()}}

        try:
            return datasets.Dataset.from_generator(
                gen, features=datasets.Features(feats), **kwargs
            )
        except Exception as e:  # datasets wraps the generator's errors: re-raise a clear one
            if isinstance(e.__cause__, ValueError):
                raise e.__cause__ from None
            raise

    def _official_row(self, i: int, tbc: PromptEncoder) -> dict[str, Any]:
        """Prompt ``i`` in the official layout (prompt then answer; see :meth:`to_hf_dataset`)."""
        k = int(self.n_ctx[i])
        task = TASKS[int(self.task[i])]
        rows = [int(c) for c in self.ctx[i, :k]] + [int(self.query[i])]
        dts, dt_query = self.dts[i, : k - 1], int(self.dt_query[i])
        cells = [self.tokens[r] for r in rows]
        try:
            if task == "TimeBetweenCells":
                ex = tbc.encode(cells[:-1], dts, task=task, query=cells[-1], dt_query=dt_query)
                ids = np.append(ex["input_ids"], tbc.time_token(dt_query))
            else:
                ex = self.encoder.encode(cells[:-1], dts, task=task, query=cells[-1],
                                         dt_query=dt_query)  # fmt: skip
                ids = ex["input_ids"]
        except ValueError as e:
            raise ValueError(f"prompt {i}: {e}") from None
        return {
            "input_ids": ids.astype(np.int32),
            "response_len": len(ids) - int(ex["eoq_pos"]) - 1,
            "timesteps": [*(int(d) for d in dts), dt_query],
            "cell_indices": rows,
            "task": task,
        }


def _hf_column(col: pd.Series, datasets) -> tuple[Any, list]:
    """A table column as a ``datasets`` feature and its values (missing values as ``None``)."""
    values = col.astype(object).where(col.notna(), None).tolist()
    if pd.api.types.is_bool_dtype(col.dtype):
        return datasets.Value("bool"), values
    if pd.api.types.is_integer_dtype(col.dtype):
        return datasets.Value("int64"), [None if v is None else int(v) for v in values]
    if pd.api.types.is_float_dtype(col.dtype):
        return datasets.Value("float64"), [None if v is None else float(v) for v in values]
    return datasets.Value("string"), [None if v is None else str(v) for v in values]


# --- stage 1 ------------------------------------------------------------------------------------
class CellDataset:
    """Single cells for stage-1 next-gene pretraining: ``<bos> genes… <eos>``, labels on all genes.

    Parameters
    ----------
    tokens
        Token source (:class:`maxtoki.pp.TokenStore` or :class:`ArrayTokens`).
    indices
        Rows of the token source to use (default: all).
    max_length
        Context length: cells keep their ``max_length - 2`` top-ranked genes.
    max_genes_per_cell
        Keep at most this many top-ranked genes of every cell.
    bos_id, eos_id
        Special token ids (2 and 3 in the official vocabulary).
    """

    def __init__(
        self,
        tokens: TokenSource,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        max_length: int | None = None,
        max_genes_per_cell: int | None = None,
        bos_id: int = 2,
        eos_id: int = 3,
    ):
        self.max_length = _check_max_length(max_length)
        cap = None if self.max_length is None else self.max_length - 2
        if max_genes_per_cell is not None:
            cap = max_genes_per_cell if cap is None else min(cap, max_genes_per_cell)
        self._cells = _Cells(tokens, bos=bos_id, eos=eos_id, max_genes=cap)
        self.indices = (
            np.arange(len(tokens)) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        self.vocab = getattr(tokens, "vocab", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        cell = self._cells(self.indices[int(i)])
        labels = cell.copy()
        labels[0] = IGNORE_INDEX  # nothing predicts <bos>; also keeps packed documents apart
        return {
            "input_ids": cell,
            "labels": labels,
            "task": TASK_IDS["stage1"],
            "eoq_pos": -1,
            "time_target": float("nan"),
        }


def split_prompts(
    prompts: pd.DataFrame, *, val_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation rows of a prompt table.

    ``split == "eval"`` rows validate; without any, a random ``val_fraction`` of the rows does
    (prompts of the same cells may then appear on both sides).
    """
    if "split" in prompts.columns:
        is_eval = (prompts["split"].astype(str) == "eval").to_numpy(copy=True)  # written below
    else:
        is_eval = np.zeros(len(prompts), dtype=bool)
    if not is_eval.any() and val_fraction > 0:
        n_val = round(val_fraction * len(prompts))
        is_eval[np.random.default_rng(seed).permutation(len(prompts))[:n_val]] = True
        logg.info(f"    no eval prompts in the table: {n_val} random ones validate (val_fraction)")
    return prompts[~is_eval].reset_index(drop=True), prompts[is_eval].reset_index(drop=True)


def build_datasets(
    config: TrainConfig,
    tokens: TokenSource,
    vocab,
    *,
    max_length: int,
    prompts: pd.DataFrame | None = None,
):
    """Training and validation datasets for ``config.stage``.

    Stage 1: single cells, ``config.val_fraction`` of them (at least one) for validation.
    Stage 2: the prompt table (``prompts``, else read from ``config.prompts``), split by
    :func:`split_prompts`.
    """
    if config.stage == 1:
        n = len(tokens)
        order = np.random.default_rng(config.seed).permutation(n)
        n_val = max(round(config.val_fraction * n), 1) if n > 1 and config.val_fraction > 0 else 0
        kw = {
            "max_length": max_length,
            "max_genes_per_cell": config.max_genes_per_cell,
            "bos_id": vocab.bos_id,
            "eos_id": vocab.eos_id,
        }
        val = CellDataset(tokens, indices=np.sort(order[:n_val]), **kw) if n_val else None
        return CellDataset(tokens, indices=np.sort(order[n_val:]), **kw), val
    if prompts is None:
        if config.prompts is None:
            raise ValueError(
                "stage 2 needs a prompt table (`prompts:`, a CSV from mt.pp.trajectories); "
                "or set `stage: 1`"
            )
        prompts = read_prompts(config.prompts)
    train_rows, val_rows = split_prompts(
        prompts, val_fraction=config.val_fraction, seed=config.seed
    )
    kw = {
        "vocab": vocab,
        "max_length": max_length,
        "max_genes_per_cell": config.max_genes_per_cell,
        "truncate": config.truncate,
    }
    _warn_if_prompts_repeat(len(train_rows), config)
    train = PromptDataset(train_rows, tokens, task_mix=config.task_mix, seed=config.seed, **kw)
    val = PromptDataset(val_rows, tokens, **kw) if len(val_rows) else None
    return train, val


#: Stage 2 warns when its steps would read each training prompt more often than this.
MAX_PROMPT_READS = 4


def _warn_if_prompts_repeat(n_prompts: int, config: TrainConfig) -> None:
    """Warn when the steps read each prompt many times: a small model learns them by heart."""
    examples = config.n_examples
    if n_prompts and examples > MAX_PROMPT_READS * n_prompts:
        logg.warning(
            f"stage 2 reads each of its {n_prompts:,} training prompts ~{examples / n_prompts:.0f} "
            f"times in {config.steps} steps, and a small model learns them by heart "
            f"(docs/benchmarks.md): draw fresh ones, {examples:,} of them "
            f"(`n_prompts={examples}` in mt.tl.train or mt.pp.trajectories, "
            f"`--n-prompts {examples}` in `maxtoki prompts`)"
        )
