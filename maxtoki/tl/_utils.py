"""Private glue shared by the :mod:`maxtoki.tl` tools.

AnnData/MuData handling (copy semantics, obs mirroring), token access and validation, context
sampling, batching with progress bars, and model/device handling. Nothing here is public.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._anndata import check_vocab, mirror_obs, positive_int, require_cells, resolve_modality
from .._settings import settings

if TYPE_CHECKING:
    from anndata import AnnData

    from ..pp import GeneVocab

TOKENS_KEY = "maxtoki_tokens"
_RUN_TOKENIZE = "run `mt.pp.tokenize(adata, vocab=vocab)` first"


# --- AnnData / MuData ---------------------------------------------------------------------------
def prepare(data: Any, mod: str, copy: bool) -> tuple[Any, AnnData, Any]:
    """``(data, adata, mdata)``: the object to return (a copy with ``copy=True``) and its parts."""
    adata, mdata = resolve_modality(data, mod)
    require_cells(adata)
    if copy:  # after the type, modality and emptiness checks
        data = data.copy()
        adata, mdata = resolve_modality(data, mod)
    return data, adata, mdata


def finish(data: Any, mdata: Any, mod: str, obs_keys: Sequence[str], copy: bool) -> Any:
    """Mirror written obs columns to a MuData and return ``data`` with ``copy=True``."""
    mirror_obs(mdata, mod, obs_keys)
    return data if copy else None


def require_obs(adata: AnnData, key: str, fix: str) -> None:
    """Raise a ``ValueError`` naming ``fix`` when ``obs[key]`` is missing."""
    if key not in adata.obs.columns:
        raise ValueError(f"obs has no column {key!r}: {fix}")


def table_to_uns(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """A DataFrame as an h5ad-safe dict of columns, with the column order under ``'_columns'``."""
    out: dict[str, np.ndarray] = {}
    for c in table.columns:
        col = table[c]
        if col.dtype == object or isinstance(col.dtype, (pd.CategoricalDtype, pd.StringDtype)):
            out[str(c)] = col.astype(str).to_numpy(dtype=object)
        elif pd.api.types.is_bool_dtype(col):
            out[str(c)] = col.to_numpy(dtype=bool)
        else:
            out[str(c)] = col.to_numpy(dtype=np.float64 if col.dtype.kind == "f" else None)
    out["_columns"] = np.asarray([str(c) for c in table.columns], dtype=object)
    return out


def as_generator(rng: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy generator from a seed, ``None`` or a generator."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def rng_param(rng: Any) -> Any:
    """The h5ad-safe record of an ``rng`` argument."""
    return int(rng) if isinstance(rng, (int, np.integer)) else str(rng)


def group_labels(obs: pd.DataFrame, group_by: str | Sequence[str] | None, what: str) -> np.ndarray:
    """One string label per cell: the values of the ``group_by`` columns joined by ``'|'``."""
    if group_by is None:
        return np.full(len(obs), "all", dtype=object)
    cols = [group_by] if isinstance(group_by, str) else list(group_by)
    missing = [c for c in cols if c not in obs.columns]
    if missing:
        raise ValueError(
            f"group_by columns {missing} are not in the obs of the {what}; pass existing columns "
            "or `group_by=None`"
        )
    out = obs[cols[0]].astype(str).to_numpy(dtype=object)
    for c in cols[1:]:
        out = out + "|" + obs[c].astype(str).to_numpy(dtype=object)
    return out


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


# --- tokens -------------------------------------------------------------------------------------
def token_matrix(adata: AnnData, vocab: GeneVocab, key: str = TOKENS_KEY) -> np.ndarray:
    """The padded token matrix of ``adata`` after checking it was made with ``vocab``."""
    from ..pp._tokenize import check_tokens

    check_vocab(vocab)
    tokens = np.asarray(check_tokens(adata, vocab, key))
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"obsm[{key!r}] must be an integer matrix of token ids; {_RUN_TOKENIZE}")
    if tokens.size and tokens.max() >= len(vocab):
        raise ValueError(
            f"obsm[{key!r}] holds ids outside the vocabulary (0–{len(vocab) - 1}); "
            f"{_RUN_TOKENIZE} with the model's vocabulary"
        )
    return tokens


# --- batching -----------------------------------------------------------------------------------
def batch_size_of(batch_size: int | None) -> int:
    """``batch_size`` or :attr:`maxtoki.settings.batch_size`, validated."""
    return positive_int("batch_size", settings.batch_size if batch_size is None else batch_size)


def max_genes_of(model: Any, max_genes: Any) -> int | None:
    """``max_genes`` validated, or (``None``) the ``max_genes_per_cell`` the model recorded."""
    if max_genes is None:
        return model.config.max_genes_per_cell
    return positive_int("max_genes", max_genes)


def progress(n: int, desc: str, unit: str = "prompt"):
    """A :mod:`tqdm.auto` progress bar over ``n`` items (see ``mt.settings.progress``)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=n, desc=desc, unit=unit, disable=not settings.show_progress or n == 0, leave=False
    )


def batches(n: int, size: int, desc: str, unit: str = "cell") -> Iterator[slice]:
    """Slices over ``range(n)`` with a progress bar."""
    with progress(n, desc, unit) as bar:
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            yield slice(lo, hi)
            bar.update(hi - lo)


def raw_counts(adata: AnnData, key: str = TOKENS_KEY):
    """The raw counts that :func:`maxtoki.pp.tokenize` read (``X`` or the recorded layer)."""
    info = adata.uns.get(key, {})
    layer = info.get("params", {}).get("layer") if hasattr(info, "get") else None
    if layer in (None, "None"):
        return adata.X
    if layer not in adata.layers:
        raise ValueError(f"the tokens were made from layers[{layer!r}], which is gone")
    return adata.layers[layer]


def tokenize_like(counts, adata: AnnData, vocab: GeneVocab, key: str = TOKENS_KEY) -> np.ndarray:
    """Tokens of new count rows over ``adata.var``, tokenized as ``adata`` was."""
    from anndata import AnnData as _AnnData

    from ..pp import tokenize

    info = adata.uns.get(key, {})
    gene_id_key = info.get("gene_id_key") if hasattr(info, "get") else None
    gene_id_key = None if gene_id_key in (None, "None") else gene_id_key
    new = _AnnData(X=counts, var=adata.var.copy())
    new.obs_names = [f"cell-{i}" for i in range(new.n_obs)]
    with settings.override(verbosity=min(settings.verbosity, 1)):  # a scratch object: no logs
        tokenize(new, vocab=vocab, gene_id_key=gene_id_key)
    return np.asarray(new.obsm[TOKENS_KEY])


def cell_tokens(tokens: np.ndarray) -> list[np.ndarray]:
    """Rows of a padded token matrix as ``<bos> genes… <eos>`` arrays (padding removed)."""
    lengths = (tokens != 0).sum(axis=1)
    return [row[:n].astype(np.int64) for row, n in zip(tokens, lengths, strict=True)]


class VocabColumns:
    """Token id → column of ``var`` for the vocabulary genes of an AnnData."""

    def __init__(self, var_rows: np.ndarray, token_ids: np.ndarray, n_vocab: int):
        self.var_rows = var_rows
        self.token_ids = token_ids
        self.column_of = np.full(n_vocab, -1, dtype=np.int64)
        self.column_of[token_ids] = np.arange(len(token_ids))


def vocab_columns(adata: AnnData, vocab: GeneVocab) -> VocabColumns:
    """The genes of ``adata`` that are in ``vocab`` (first occurrence per token)."""
    if "maxtoki_token_id" in adata.var.columns:
        ids = (
            pd.to_numeric(adata.var["maxtoki_token_id"], errors="coerce")
            .fillna(-1)
            .to_numpy(np.int64)
        )
    else:
        key = "ensembl_id" if "ensembl_id" in adata.var.columns else None
        names = adata.var[key].astype(str) if key else adata.var_names.astype(str)
        ids = np.array([vocab.token_to_id.get(g, -1) for g in names], dtype=np.int64)
    is_gene = np.zeros(len(vocab), dtype=bool)
    is_gene[vocab.gene_token_ids] = True
    ok = (ids >= 0) & (ids < len(vocab))
    ok[ok] = is_gene[ids[ok]]
    rows = np.flatnonzero(ok)
    _, first = np.unique(ids[rows], return_index=True)
    rows = np.sort(rows[first])
    if len(rows) == 0:
        raise ValueError(f"no gene of the data is in the vocabulary; {_RUN_TOKENIZE}")
    return VocabColumns(rows, ids[rows], len(vocab))


def cut_cell(cell: np.ndarray, max_genes: int | None) -> np.ndarray:
    """``<bos>``, the top ``max_genes`` genes and ``<eos>`` of a ``<bos> genes… <eos>`` array."""
    if max_genes is None or len(cell) - 2 <= max_genes:
        return cell
    return np.concatenate([cell[: max_genes + 1], cell[-1:]])


def pad_cells(cells: Sequence[np.ndarray]):
    """Right-padded ``(input_ids, attention_mask)`` torch tensors of token arrays."""
    import torch

    width = max(len(c) for c in cells)
    ids = torch.zeros(len(cells), width, dtype=torch.long)
    mask = torch.zeros(len(cells), width, dtype=torch.bool)
    for i, c in enumerate(cells):
        ids[i, : len(c)] = torch.as_tensor(c)
        mask[i, : len(c)] = True
    return ids, mask


class ListTokens:
    """A named list of ``<bos> genes… <eos>`` arrays: a token source for the trainer's prompts.

    Used with :class:`~maxtoki.train._prompts.PromptDataset`.
    """

    def __init__(self, cells: Sequence[np.ndarray], names: Sequence[str]):
        self.cells = list(cells)
        self.names = pd.Index(np.asarray(names).astype(str))

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.cells[int(i)]


# --- model --------------------------------------------------------------------------------------
def check_model(
    model: Any, vocab: GeneVocab, *, need_time: bool = False, what: str = "this tool"
) -> None:
    """Check ``model`` is a MaxToki model of ``vocab`` (and temporal, with ``need_time``)."""
    check_vocab(vocab)
    config = getattr(model, "config", None)
    if config is None or not callable(model):
        raise TypeError(
            f"model must be a maxtoki.models.MaxToki, got {type(model).__name__}; load one with "
            "`mt.models.MaxToki.from_pretrained(dir)` or train one with `mt.tl.train`"
        )
    fields = vocab.model_config_fields()
    checked = (
        "vocab_size",
        "time_token_start_id",
        "n_time_tokens",
        "time_min_months",
        "boq_token_id",
        "eoq_token_id",
    )
    if need_time:
        has_time = getattr(config, "time_token_start_id", None) is not None
        if not has_time or not vocab.has_time_tokens:
            side = "the model" if not has_time else "`vocab`"
            raise ValueError(
                f"{side} has no time tokens, so {what} cannot predict timelapses: pass a temporal "
                "(stage 2) model trained with `mt.tl.train` (or loaded with "
                "`mt.models.MaxToki.from_pretrained`) and its temporal vocabulary; a stage-1 "
                "model gets time tokens with `model.resize_token_embeddings(23277)` and then "
                "needs stage-2 training (`mt.tl.train(adata, vocab=temporal_vocab, model=model)`)"
            )
    else:
        checked = ("vocab_size",)
    bad = {
        k: (getattr(config, k, None), fields[k])
        for k in checked
        if getattr(config, k, None) != fields[k]
    }
    if bad:
        detail = ", ".join(f"{k}: model {m!r} vs vocab {v!r}" for k, (m, v) in bad.items())
        raise ValueError(
            f"the model and `vocab` disagree ({detail}); pass the vocabulary the model was "
            "trained with (and tokenize with it)"
        )


def model_on_device(model: Any, device: str | None) -> str:
    """Move ``model`` to ``device`` (``'auto'``: CUDA when available) in eval mode; the device."""
    dev = settings.resolve_device(device)
    model.to(dev)
    model.eval()
    return dev


# --- prompts ------------------------------------------------------------------------------------
def sample_contexts(
    query_groups: np.ndarray,
    query_donors: np.ndarray | None,
    query_self: np.ndarray,
    ref_groups: np.ndarray,
    ref_donors: np.ndarray | None,
    ref_times: np.ndarray,
    *,
    n_contexts: int,
    n_cells: int,
    gen: np.random.Generator,
    group_by: Any,
) -> np.ndarray:
    """Draw ``n_contexts`` trajectories of ``n_cells`` reference cells for every query.

    Context cells come from the query's group, never the query itself (``query_self``: its
    row in the reference, or -1) nor, when donors are given, the query's donor; they are drawn
    at distinct times when possible and sorted by time, like :func:`maxtoki.pp.trajectories`.

    Returns
    -------
    ``(n_queries, n_contexts, n_cells)`` reference row indices.
    """
    n_q = len(query_groups)
    out = np.empty((n_q, n_contexts, n_cells), dtype=np.int64)
    ref_index = pd.Series(np.arange(len(ref_groups))).groupby(ref_groups.astype(str)).indices
    missing = sorted({str(g) for g in pd.unique(query_groups)} - set(ref_index))
    if missing:
        shown = ", ".join(repr(g) for g in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ValueError(
            f"no reference cells for the group(s) {shown} (group_by={group_by!r}); pass a "
            "`context` with cells of these groups and known ages, or drop these query cells"
        )
    keys = pd.DataFrame(
        {
            "g": query_groups.astype(str),
            "d": "" if query_donors is None else query_donors.astype(str),
        }
    )
    for (g, d), rows in keys.groupby(["g", "d"], sort=False).indices.items():
        pool = ref_index[g]
        if ref_donors is not None and query_donors is not None:
            pool = pool[ref_donors[pool].astype(str) != d]
        if len(pool) == 0:
            raise ValueError(
                f"group {g!r} has no reference cells outside donor {d!r}; context cells never come "
                "from the query's own donor: add reference donors or pass `donor_key=None`"
            )
        times = ref_times[pool]
        for r in rows:
            cand = pool if query_self[r] < 0 else pool[pool != query_self[r]]
            ctimes = times if query_self[r] < 0 else times[pool != query_self[r]]
            if len(cand) == 0:
                raise ValueError(f"group {g!r} has no reference cell besides the query itself")
            for c in range(n_contexts):
                out[r, c] = _draw(cand, ctimes, n_cells, gen)
    return out


def _draw(cand: np.ndarray, times: np.ndarray, k: int, gen: np.random.Generator) -> np.ndarray:
    """``k`` cells of ``cand`` at distinct times when possible, sorted by time."""
    picked: list[int] = []
    seen: set[float] = set()
    tries = gen.integers(len(cand), size=8 * k)
    for j in tries:
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


def time_prompt_table(
    contexts: np.ndarray,
    ref_times: np.ndarray,
    query_rows: np.ndarray,
    *,
    task: str = "TimeBetweenCells",
) -> pd.DataFrame:
    """A prompt table in the layout of :func:`maxtoki.pp.trajectories` over a :class:`ListTokens`.

    ``contexts`` is ``(n, n_cells)`` reference rows (time-sorted) and ``query_rows`` the token
    rows of the queries; reference row ``i`` is named ``r{i}`` and query row ``j`` ``q{j}``.
    ``dt_query`` is 0 (unknown: it is what TimeBetweenCells predicts).
    """
    n, m = contexts.shape
    data: dict[str, Any] = {"task": np.full(n, task, dtype=object), "n_context": np.full(n, m)}
    for j in range(m):
        data[f"ctx{j}"] = np.char.add("r", contexts[:, j].astype(str))
    t = ref_times[contexts]
    for j in range(m - 1):
        data[f"dt{j}"] = np.rint(t[:, j + 1] - t[:, j]).astype(np.int64)
    data["query"] = np.char.add("q", np.asarray(query_rows).astype(str))
    data["dt_query"] = np.zeros(n, dtype=np.int64)
    return pd.DataFrame(data)


def prompt_dataset(
    table: pd.DataFrame, ref_cells, query_cells, vocab: GeneVocab, model: Any, max_genes
):
    """The trainer's :class:`~maxtoki.train._prompts.PromptDataset` over reference + query cells.

    Raises a :class:`ValueError` when a timelapse of the table lies outside the vocabulary's
    time tokens (ages in days or years instead of months, usually).
    """
    from ..train._prompts import PromptDataset

    dts = table[[c for c in table.columns if c.startswith("dt")]].to_numpy(dtype=np.float64)
    lo, hi = vocab.time_range
    if dts.size and (dts.min() < lo or dts.max() > hi):
        raise ValueError(
            f"timelapses between the cells reach {dts.min():g} to {dts.max():g} months, outside "
            f"the model's time tokens [{lo}, {hi}]; ages must be in months (not days) and within "
            "the range the model was trained on"
        )

    names = [f"r{i}" for i in range(len(ref_cells))] + [f"q{j}" for j in range(len(query_cells))]
    source = ListTokens([*ref_cells, *query_cells], names)
    return PromptDataset(
        table,
        source,
        vocab=vocab,
        max_length=int(model.config.max_position_embeddings),
        max_genes_per_cell=max_genes,
        truncate=True,
    )


def predict_timelapses(
    model: Any, dataset: Any, *, batch_size: int, device: str, desc: str
) -> np.ndarray:
    """Expected timelapse (months) of every TimeBetweenCells prompt of ``dataset``."""
    import torch

    from ..train._collate import Collator
    from ._model_ops import timelapse_at_eoq

    collate = Collator(pad_id=0)
    n = len(dataset)
    out = np.empty(n, dtype=np.float64)
    block = max(batch_size * 32, 1024)  # prompts sorted by length inside a block: less padding
    with torch.inference_mode(), progress(n, desc) as bar:
        for lo in range(0, n, block):
            idx = np.arange(lo, min(n, lo + block))
            examples = [dataset[int(i)] for i in idx]
            order = np.argsort([len(e["input_ids"]) for e in examples], kind="stable")
            for s in range(0, len(order), batch_size):
                sel = order[s : s + batch_size]
                batch = collate([examples[i] for i in sel])
                expected, _, _ = timelapse_at_eoq(
                    model,
                    batch["input_ids"].to(device),
                    batch["attention_mask"].to(device),
                    batch["eoq_index"][:, 1].to(device),
                )
                out[idx[sel]] = expected.double().cpu().numpy()
                bar.update(len(sel))
    return out
