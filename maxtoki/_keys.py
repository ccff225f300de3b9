"""The slot contract: every AnnData slot maxtoki writes or reads, tokens, and ``uns`` records.

One rule for writers: ``key_added`` (default ``"maxtoki"``) is the prefix of every slot a call
writes, ``f"{key_added}_{name}"`` with a fixed ``name`` per slot; embeddings follow scanpy's
rule, ``obsm[f"X_{key_added}"]`` with the record in ``uns[key_added]``. Readers name the slot they
read: ``tokens_key`` (``obsm``), ``predicted_key`` (``obs``), ``key`` (``uns``). The table of
every slot is :data:`SLOTS` (rendered in ``docs/slots.md``).

Tokens: :func:`write_tokens` is the only writer (``mt.pp.tokenize``, ``mt.tl.generate``) and
:func:`read_tokens` the only reader, which checks the tokens against a vocabulary once, by the
provenance hashes recorded next to them.

Records: ``uns`` entries hold only h5ad-safe values (:func:`h5ad_safe`); parameters that are
``None`` are left out and read back as ``None``; tables are dicts of columns
(:func:`table_to_uns`, :func:`read_uns_table`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData

    from ._vocab import GeneVocab

DEFAULT_KEY = "maxtoki"
TOKENS_KEY = f"{DEFAULT_KEY}_tokens"
PREDICTED_KEY = f"{DEFAULT_KEY}_age"

#: Every slot written, by call: ``(slot, name pattern)``; ``{k}`` is ``key_added``.
SLOTS: dict[str, tuple[tuple[str, str], ...]] = {
    "mt.pp.tokenize": (
        ("obsm", "{k}_tokens"),
        ("obs", "{k}_n_tokens"),
        ("obs", "{k}_empty"),
        ("var", "{k}_token_id"),
        ("uns", "{k}_tokens"),
    ),
    "mt.pp.read_tokenized (a new AnnData)": (
        ("obsm", "{k}_tokens"),
        ("obs", "{k}_n_tokens"),
        ("obs", "{k}_empty"),
        ("var", "{k}_token_id"),
        ("uns", "{k}_tokens"),
    ),
    "mt.tl.embed": (("obsm", "X_{k}"), ("uns", "{k}")),
    "mt.tl.predict_time": (
        ("obs", "{k}_age"),
        ("obs", "{k}_timelapse"),
        ("obs", "{k}_age_std"),
        ("uns", "{k}_predict_time"),
    ),
    "mt.tl.age_acceleration": (("obs", "{k}_age_acceleration"), ("uns", "{k}_age_acceleration")),
    "mt.tl.attention": (("varm", "{k}_attention"), ("uns", "{k}_attention")),
    "mt.tl.perturb": (("uns", "{k}_perturb"),),
    "mt.tl.evaluate": (("uns", "{k}_evaluate"),),
    "mt.tl.generate (a new AnnData)": (
        ("obsm", "{k}_tokens"),
        ("obs", "{k}_n_tokens"),
        ("obs", "{k}_empty"),
        ("var", "{k}_token_id"),
        ("uns", "{k}_tokens"),
        ("uns", "{k}_generate"),
    ),
}


def slot(key_added: str, name: str) -> str:
    """The slot ``name`` of a call with ``key_added``: ``f"{key_added}_{name}"``."""
    return f"{key_added}_{name}"


def check_key(name: str, value: Any) -> str:
    """``value`` as a slot key: a non-empty string without ``/`` (h5ad paths use it)."""
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(
            f"{name} must be a non-empty string without '/' (an AnnData key), got {value!r}"
        )
    return value


# --- tokens --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenSlots:
    """Where one tokenization lives: ``obsm``/``uns`` key, ``obs`` and ``var`` columns."""

    tokens: str
    n_tokens: str
    empty: str
    token_id: str

    @classmethod
    def for_key_added(cls, key_added: str = DEFAULT_KEY) -> TokenSlots:
        """The slots :func:`write_tokens` uses for ``key_added``."""
        names = ("tokens", "n_tokens", "empty", "token_id")
        return cls(*(slot(key_added, n) for n in names))

    @classmethod
    def for_tokens_key(cls, tokens_key: str, record: Mapping | None = None) -> TokenSlots:
        """The slots of the tokens at ``obsm[tokens_key]`` (as recorded, else by the rule)."""
        recorded = record.get("slots") if isinstance(record, Mapping) else None
        if isinstance(recorded, Mapping) and all(k in recorded for k in cls.__annotations__):
            return cls(**{k: str(recorded[k]) for k in cls.__annotations__})
        prefix = tokens_key.removesuffix("_tokens") or tokens_key
        return cls.for_key_added(prefix)

    def as_dict(self) -> dict[str, str]:
        """The slot names by role."""
        return {k: getattr(self, k) for k in type(self).__annotations__}


@dataclass
class Tokens:
    """Tokens of an AnnData, checked against a vocabulary (see :func:`read_tokens`)."""

    matrix: np.ndarray
    lengths: np.ndarray
    slots: TokenSlots
    record: Mapping

    def cells(self, rows: np.ndarray | None = None) -> list[np.ndarray]:
        """``<bos> genes… <eos>`` of each row (all rows, or ``rows``) as int64 arrays."""
        rows = np.arange(len(self.lengths)) if rows is None else np.asarray(rows)
        return [self.matrix[r, : self.lengths[r]].astype(np.int64) for r in rows]


def token_dtype(vocab: GeneVocab) -> type:
    """Smallest integer type for the vocabulary's ids: uint16 up to 65,536 tokens, else int32."""
    return np.uint16 if len(vocab) <= np.iinfo(np.uint16).max + 1 else np.int32


def made_with(record: Mapping, vocab: GeneVocab) -> bool:
    """Whether tokens with this ``uns`` record encode cells as ``vocab`` does.

    The same vocabulary, or one with the same genes, token ids and medians (a stage-1 vocabulary
    and its temporal extension).
    """
    if str(record.get("vocab_hash")) == vocab.hash:
        return True
    return str(record.get("encoding_hash")) == vocab.encoding_hash


def token_keys(adata: AnnData) -> list[str]:
    """The ``obsm`` keys that hold maxtoki tokens (those with a token record in ``uns``)."""
    return [
        k
        for k in adata.obsm
        if isinstance(adata.uns.get(k), Mapping) and "encoding_hash" in adata.uns[k]
    ]


def read_tokens(adata: AnnData, tokens_key: str, vocab: GeneVocab) -> Tokens:
    """The tokens at ``obsm[tokens_key]``, checked once against ``vocab``.

    Raises a :class:`ValueError` naming the missing step (``mt.pp.tokenize``), another token key
    that exists, or the vocabulary mismatch.
    """
    check_key("tokens_key", tokens_key)
    fix = "run `mt.pp.tokenize(adata)` first"
    if tokens_key not in adata.obsm:
        others = token_keys(adata)
        hint = f" (tokens found under {others}: pass one as `tokens_key`)" if others else ""
        raise ValueError(f"obsm[{tokens_key!r}] not found; {fix}{hint}")
    record = adata.uns.get(tokens_key)
    if not isinstance(record, Mapping) or "vocab_hash" not in record:
        raise ValueError(
            f"uns[{tokens_key!r}] (the tokens' vocabulary record) not found; re-run "
            "`mt.pp.tokenize` with the model's vocabulary"
        )
    if not made_with(record, vocab):
        raise ValueError(
            f"the tokens in obsm[{tokens_key!r}] were made with vocabulary "
            f"{record['vocab_hash']}, the model's is {vocab.hash}; re-run `mt.pp.tokenize` with "
            "the model's vocabulary"
        )
    matrix = np.asarray(adata.obsm[tokens_key])
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.integer):
        raise ValueError(f"obsm[{tokens_key!r}] must be an integer matrix of token ids; {fix}")
    if matrix.size and (matrix.min() < 0 or matrix.max() >= len(vocab)):
        raise ValueError(
            f"obsm[{tokens_key!r}] holds ids outside the vocabulary (0–{len(vocab) - 1}); {fix} "
            "with the model's vocabulary"
        )
    slots = TokenSlots.for_tokens_key(tokens_key, record)
    if slots.n_tokens in adata.obs.columns:
        lengths = adata.obs[slots.n_tokens].to_numpy(dtype=np.int64)
    else:
        lengths = (matrix != vocab.pad_id).sum(axis=1).astype(np.int64)
    if len(lengths) and (lengths.min() < 2 or lengths.max() > matrix.shape[1]):
        raise ValueError(
            f"obs[{slots.n_tokens!r}] does not fit obsm[{tokens_key!r}] (a cell has fewer than 2 "
            f"or more than {matrix.shape[1]} tokens); {fix}"
        )
    return Tokens(matrix, lengths, slots, record)


def write_tokens(
    adata: AnnData,
    tokens: np.ndarray,
    lengths: np.ndarray,
    *,
    key_added: str,
    vocab: GeneVocab,
    token_id: np.ndarray,
    record: Mapping[str, Any],
) -> TokenSlots:
    """Write tokens and their record (the one writer of ``mt.pp.tokenize`` and ``mt.tl.generate``).

    ``tokens`` is cast to :func:`token_dtype`; ``token_id`` is the token of each ``var`` row
    (``-1`` outside the vocabulary). The record gets the vocabulary's hashes and the slots.
    """
    slots = TokenSlots.for_key_added(key_added)
    lengths = np.asarray(lengths, dtype=np.int64)
    adata.obsm[slots.tokens] = np.asarray(tokens).astype(token_dtype(vocab), copy=False)
    adata.obs[slots.n_tokens] = lengths
    adata.obs[slots.empty] = lengths <= 2
    adata.var[slots.token_id] = np.asarray(token_id, dtype=np.int64)
    adata.uns[slots.tokens] = h5ad_safe(
        {
            **record,
            "vocab_hash": vocab.hash,
            "encoding_hash": vocab.encoding_hash,
            "vocab_size": len(vocab),
            "dtype": np.dtype(token_dtype(vocab)).name,
            "slots": slots.as_dict(),
        }
    )
    return slots


# --- uns records ---------------------------------------------------------------------------------
def h5ad_safe(value: Any) -> Any:
    """``value`` as something ``write_h5ad`` stores: ``None`` entries of dicts are left out."""
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
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


def random_state_param(random_state: Any) -> Any:
    """The h5ad-safe record of a ``random_state`` argument (a seed, or the generator's type)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return None if random_state is None else type(random_state).__name__


def read_params(adata: AnnData, key: str) -> dict[str, Any]:
    """``uns[key]['params']`` as a plain dict (0-d arrays as scalars; absent entries are None)."""
    entry = adata.uns.get(key, {})
    params = entry.get("params", {}) if isinstance(entry, Mapping) else {}
    return {
        str(k): v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
        for k, v in dict(params).items()
    }


def table_to_uns(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """A DataFrame as an h5ad-safe dict of columns, the column order under ``'_columns'``."""
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


def read_uns_table(adata: AnnData, key: str, tool: str, field: str = "table") -> pd.DataFrame:
    """``uns[key][field]`` (written by :func:`table_to_uns`) as a DataFrame; clear when missing."""
    entry = adata.uns.get(key)
    if not isinstance(entry, Mapping) or entry.get(field) is None:
        raise ValueError(
            f"uns has no {key!r} table: run `{tool}` first (or pass the key it wrote as `key`)"
        )
    table = entry[field]
    if not isinstance(table, Mapping):
        raise ValueError(
            f"uns[{key!r}][{field!r}] is damaged (a {type(table).__name__}, not a table of "
            f"columns); re-run `{tool}`"
        )
    columns = [str(c) for c in table.get("_columns", [c for c in table if c != "_columns"])]
    out = {}
    for c in columns:
        arr = np.asarray(table[c])
        out[c] = arr.astype(str) if arr.dtype.kind in "SO" else arr
    return pd.DataFrame(out)
