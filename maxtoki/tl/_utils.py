"""AnnData ↔ arrays for the :mod:`maxtoki.tl` tools (private).

The tools convert AnnData into arrays here (the input object, obs columns, tokens, genes),
hand the arrays to the inference layer (:class:`maxtoki.pp.PromptEncoder`,
:class:`maxtoki.models.BatchRunner`) and write the results back into slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._anndata import mirror_obs, require_cells, resolve_modality
from .._keys import TokenSlots, read_tokens

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab


# --- the input object ----------------------------------------------------------------------------
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


def as_generator(random_state: Any) -> np.random.Generator:
    """A NumPy generator from a seed, ``None`` or a generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is not None and (
        isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer))
    ):
        raise TypeError(
            f"random_state must be an int seed, a numpy Generator or None, got {random_state!r}"
        )
    return np.random.default_rng(random_state)


def bh_adjust(pvals: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (SciPy's ``false_discovery_control``); NaN kept."""
    from scipy.stats import false_discovery_control

    p = np.asarray(pvals, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def t_interval(a: np.ndarray, b: np.ndarray | None, ci: float) -> tuple[float, float]:
    """Student-t interval of ``mean(a)``, or Welch's of ``mean(a) - mean(b)``.

    Donors are few (often 2–8 per group), where a percentile bootstrap of their means covers
    far less than it claims (~50% at 2 donors, ~80% at 4 vs 3 for a nominal 95%); the t interval
    holds its level for normally distributed donor means. NaN with fewer than 2 values a side.
    """
    parts = [a] if b is None else [a, b]
    estimate = float(a.mean() - (0.0 if b is None else b.mean())) if len(a) else np.nan
    if any(len(p) < 2 for p in parts):
        return np.nan, np.nan
    variances = [float(np.var(p, ddof=1)) / len(p) for p in parts]
    return satterthwaite_interval(estimate, variances, [len(p) for p in parts], ci)


def satterthwaite_interval(
    estimate: float, variances: list[float], sizes: list[int], ci: float
) -> tuple[float, float]:
    """Student-t interval around ``estimate`` with variance ``sum(variances)``.

    Each variance is estimated from ``sizes[i]`` units; the degrees of freedom are
    Satterthwaite's (zero variances left out).
    """
    from scipy.stats import t

    se = np.sqrt(sum(variances))
    if se == 0:
        return estimate, estimate
    df = sum(variances) ** 2 / sum(
        v**2 / (n - 1) for v, n in zip(variances, sizes, strict=True) if v > 0
    )
    half = float(t.ppf(0.5 + ci / 2.0, df)) * se
    return estimate - half, estimate + half


# --- tokens and genes ----------------------------------------------------------------------------
def cut_cell(cell: np.ndarray, max_genes: int | None) -> np.ndarray:
    """``<bos>``, the top ``max_genes`` genes and ``<eos>`` of a ``<bos> genes… <eos>`` array."""
    if max_genes is None or len(cell) - 2 <= max_genes:
        return cell
    return np.concatenate([cell[: max_genes + 1], cell[-1:]])


class VocabColumns:
    """Token id → column of ``var`` for the vocabulary genes of an AnnData."""

    def __init__(self, var_rows: np.ndarray, token_ids: np.ndarray, n_vocab: int):
        self.var_rows = var_rows
        self.token_ids = token_ids
        self.column_of = np.full(n_vocab, -1, dtype=np.int64)
        self.column_of[token_ids] = np.arange(len(token_ids))


def vocab_columns(adata: AnnData, vocab: GeneVocab, tokens_key: str) -> VocabColumns:
    """The genes of ``adata`` that are in ``vocab`` (first occurrence per token)."""
    slots = TokenSlots.for_tokens_key(tokens_key, adata.uns.get(tokens_key))
    if slots.token_id in adata.var.columns:
        ids = pd.to_numeric(adata.var[slots.token_id], errors="coerce").fillna(-1)
        ids = ids.to_numpy(np.int64)
    else:
        key = "ensembl_id" if "ensembl_id" in adata.var.columns else None
        names = adata.var[key].astype(str) if key else adata.var_names.astype(str)
        ids = np.array([vocab.token_to_id.get(g, -1) for g in names], dtype=np.int64)
    is_gene = vocab.is_gene_token
    ok = (ids >= 0) & (ids < len(vocab))
    ok[ok] = is_gene[ids[ok]]
    rows = np.flatnonzero(ok)
    _, first = np.unique(ids[rows], return_index=True)
    rows = np.sort(rows[first])
    if len(rows) == 0:
        raise ValueError("no gene of the data is in the vocabulary; run `mt.pp.tokenize` first")
    return VocabColumns(rows, ids[rows], len(vocab))


def raw_counts(adata: AnnData, tokens_key: str):
    """The raw counts that :func:`maxtoki.pp.tokenize` read (``X`` or the recorded layer)."""
    params = adata.uns.get(tokens_key, {}).get("params", {})
    layer = params.get("layer") if hasattr(params, "get") else None
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise ValueError(f"the tokens were made from layers[{layer!r}], which is gone")
    return adata.layers[layer]


def tokenize_like(counts, adata: AnnData, vocab: GeneVocab, tokens_key: str) -> np.ndarray:
    """Tokens of new count rows over ``adata.var``, tokenized as ``adata`` was."""
    from anndata import AnnData as _AnnData

    from .._settings import settings
    from ..pp import tokenize

    record = adata.uns.get(tokens_key, {})
    new = _AnnData(X=counts, var=adata.var.copy())
    new.obs_names = [f"cell-{i}" for i in range(new.n_obs)]
    with settings.override(verbosity=min(settings.verbosity, 1)):  # a scratch object: no logs
        tokenize(new, vocab=vocab, gene_id_key=record.get("gene_id_key"))
    return read_tokens(new, TokenSlots.for_key_added().tokens, vocab).matrix


def query_cells(
    adata: AnnData, vocab: GeneVocab, tokens_key: str, max_genes: int | None = None
) -> list[np.ndarray]:
    """``<bos> genes… <eos>`` of every cell of ``adata``, checked and cut to ``max_genes``."""
    cells = read_tokens(adata, tokens_key, vocab).cells()
    return [cut_cell(c, max_genes) for c in cells]
