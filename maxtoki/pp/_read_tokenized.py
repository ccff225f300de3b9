"""Official tokenized datasets (Hugging Face ``datasets``) → tokens (``mt.pp.read_tokenized``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import check_vocab, positive_int
from .._docs import inject_docs
from .._keys import check_key, h5ad_safe, token_dtype, write_tokens
from .._vocab import GeneVocab
from ._chunks import chunk_bounds
from ._token_store import (
    SHARDS_DIR,
    STORE_FORMAT,
    STORE_VERSION,
    VOCAB_DIR,
    TokenStore,
    interrupted_start,
    read_manifest,
    shard_name,
    write_manifest,
    write_shard,
)

if TYPE_CHECKING:
    from anndata import AnnData

DEFAULT_READ_CHUNK_SIZE = 10_000
IN_MEMORY = "<in-memory datasets.Dataset>"
NAMES_KEY = "unique_cell_id"  # the official tokenizer's cell ID column
_NOT_OBS = ("input_ids", "length")  # the tokens and their count: written as the token slots
_RESERVED = ("source_file", "obs_name")  # the columns a store adds to its obs.csv
_TIME_EXTENSION = 3002  # tokens the official temporal vocabulary adds: 3,000 months, <boq>, <eoq>


@inject_docs
def read_tokenized(
    data: Any,
    *,
    vocab: GeneVocab | None = None,
    out_dir: str | os.PathLike | None = None,
    obs_keys: Sequence[str] | None = None,
    obs_names_key: str | None = NAMES_KEY,
    chunk_size: int = DEFAULT_READ_CHUNK_SIZE,
    key_added: str = "maxtoki",
) -> AnnData | TokenStore:
    """Read an official tokenized dataset (Hugging Face ``datasets``) without re-tokenizing.

    The official MaxToki ``TranscriptomeTokenizer`` saves its output with
    ``Dataset.save_to_disk`` (a ``<prefix>.dataset`` folder): one row per cell with
    ``input_ids`` (``<bos> genes… <eos>``, genes by descending normalised expression, at most
    ``model_input_size - 2``), ``length`` (the number of ids) and the cell's metadata columns
    (``time``, ``unique_cell_id``, ``time_group`` and the custom attributes). Those tokens are
    read as they are, in chunks of ``chunk_size`` cells, and every cell is checked: ids within
    the vocabulary, ``<bos>`` first, ``<eos>`` last, only gene tokens between them, no gene twice.

    Parameters
    ----------
    data
        The dataset folder (read with ``datasets.load_from_disk``) or a
        :class:`datasets.Dataset`. Needs the optional ``datasets`` package.
    vocab
        The vocabulary the cells were tokenized with; ``None`` (default) uses the official one,
        :meth:`GeneVocab.official() <maxtoki.pp.GeneVocab.official>` (the official tokenizer's
        v1 dictionary). A dataset with ids beyond it is refused.
    out_dir
        ``None``: return an AnnData. A folder: write a token store there, as
        :func:`maxtoki.pp.tokenize_corpus` writes one (shards written atomically, the manifest
        last, memory bounded by ``chunk_size``; re-running the same call resumes), and return
        it opened. Every cell is checked before the first shard is written.
    obs_keys
        Dataset columns to keep as ``obs`` columns (the store's ``obs.csv``); ``None`` keeps every
        scalar column except ``input_ids`` and ``length`` (list columns such as the official
        ``counts`` are never read).
    obs_names_key
        Column with the cell names (``obs_names``; the store's ``obs_name``), by default the
        official ``unique_cell_id`` when the dataset has it. ``None`` (or the default column
        missing): the row positions ``"0"``, ``"1"``, …
    chunk_size
        Cells read at a time (and cells per shard of a store).
    {key_added}

    Returns
    -------
    With ``out_dir``: the :class:`~maxtoki.pp.TokenStore` opened on it. Without: a new AnnData
    with one row per cell (in dataset order), ``obs`` = the ``obs_keys`` columns, ``var`` = the
    vocabulary's genes (Ensembl IDs as ``var_names``) and no ``X`` (the dataset holds ranks,
    not counts), and the slots of :func:`maxtoki.pp.tokenize`, which every token consumer reads:

    ``obsm[f'{key_added}_tokens']``
        Token ids per cell, padded with ``<pad>`` (0); ``uint16`` when the vocabulary fits.
    ``obs[f'{key_added}_n_tokens']``, ``obs[f'{key_added}_empty']``
        Number of tokens (``<bos>``/``<eos>`` included); cells without genes.
    ``var[f'{key_added}_token_id']``
        Token id of each gene.
    ``uns[f'{key_added}_tokens']``
        ``params``, ``source`` (the folder read), ``n_cells``, ``n_empty``, the vocabulary's
        hashes and ``slots``.

    Raises
    ------
    ValueError
        A path that is not a saved dataset, no ``input_ids`` column, ids outside the vocabulary
        (a dataset tokenized with another dictionary, or assembled prompts instead of cells),
        cells that are not ``<bos> genes… <eos>``, unknown ``obs_keys``, or an ``out_dir`` that
        holds something else.
    ImportError
        Without the ``datasets`` package (``pip install datasets``).

    Examples
    --------
    >>> adata = mt.pp.read_tokenized("pbmc.dataset")  # doctest: +SKIP
    >>> store = mt.pp.read_tokenized("corpus.dataset", out_dir="corpus_tokens")  # doctest: +SKIP
    """
    if vocab is None:
        vocab = GeneVocab.official()
    check_vocab(vocab)
    chunk_size = positive_int("chunk_size", chunk_size)
    check_key("key_added", key_added)
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            f"out_dir must be a folder (a str or Path) or None, got {type(out_dir).__name__}"
        )
    ds, source = _open(data)
    if len(ds) == 0:
        raise ValueError(f"the dataset {source!r} has no cells; pass one with at least one cell")
    keys, names_key = _columns(ds, obs_keys, obs_names_key, store=out_dir is not None)
    start = logg.info(
        f"reading {len(ds):,} tokenized cells from {source!r} (vocabulary {vocab.hash})"
    )
    if out_dir is not None:
        store = _to_store(ds, source, Path(out_dir), vocab, keys, names_key, chunk_size)
        logg.info(f"    finished: {store!r}", time=start)
        return store
    adata = _to_adata(ds, source, vocab, keys, names_key, chunk_size, key_added)
    logg.info("    finished", time=start)
    return adata


# --- input ---------------------------------------------------------------------------------------
def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "mt.pp.read_tokenized needs the optional `datasets` package: pip install datasets"
        ) from None
    return datasets


def _open(data: Any) -> tuple[Any, str]:
    """The :class:`datasets.Dataset` and a description of where it came from."""
    datasets = _import_datasets()
    if isinstance(data, datasets.Dataset):
        return data, IN_MEMORY
    if isinstance(data, datasets.DatasetDict):
        raise ValueError(
            f"data is a DatasetDict with splits {list(data)}; pass one split, e.g. "
            f"`data[{next(iter(data), 'train')!r}]`"
        )
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(
            f"data must be the folder of a saved Hugging Face dataset (a str or Path) or a "
            f"datasets.Dataset, got {type(data).__name__}"
        )
    path = Path(data)
    hint = (
        "pass the folder the official tokenizer wrote (`<output_prefix>.dataset`, saved with "
        "`Dataset.save_to_disk`)"
    )
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist; {hint}")
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ValueError(
            f"{str(path)!r} is not a saved Hugging Face dataset ({e}); {hint}"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        raise ValueError(
            f"{str(path)!r} holds a DatasetDict with splits {list(ds)}; pass one split, e.g. "
            f"`datasets.load_from_disk({str(path)!r})[{next(iter(ds), 'train')!r}]`"
        )
    return ds, str(path.resolve())


def _scalar(arrow_type) -> bool:
    import pyarrow as pa

    return not (pa.types.is_nested(arrow_type) or pa.types.is_binary(arrow_type)
                or pa.types.is_large_binary(arrow_type))  # fmt: skip


def _columns(ds, obs_keys, obs_names_key, *, store: bool) -> tuple[list[str], str | None]:
    """The obs columns to read and the name column (``None``: row positions), checked."""
    import pyarrow as pa

    schema = ds.data.schema
    names = list(schema.names)
    if "input_ids" not in names:
        raise ValueError(
            f"the dataset has no 'input_ids' column (its columns: {names}); read a dataset "
            "written by the official tokenizer (`TranscriptomeTokenizer.tokenize_data`)"
        )
    t = schema.field("input_ids").type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_integer(
        t.value_type
    ):
        raise ValueError(
            f"column 'input_ids' must hold lists of integer token ids, it holds {t}; read a "
            "dataset written by the official tokenizer"
        )
    scalar = [c for c in names if c not in _NOT_OBS and _scalar(schema.field(c).type)]
    if obs_keys is None:
        keys = scalar
    else:
        keys = [obs_keys] if isinstance(obs_keys, str) else [str(k) for k in obs_keys]
        missing = [k for k in keys if k not in names]
        if missing:
            raise ValueError(
                f"obs_keys {missing} are not columns of the dataset; pass some of {scalar}"
            )
        nested = [k for k in keys if k not in scalar]
        if nested:
            raise ValueError(
                f"obs_keys {nested} are not one value per cell (e.g. lists); pass some of {scalar}"
            )
    if store:
        clash = [k for k in keys if k in _RESERVED]
        if clash:
            raise ValueError(
                f"the dataset columns {clash} clash with the token store's own obs columns "
                f"{list(_RESERVED)}; leave them out with `obs_keys=`"
            )
    if obs_names_key is not None:
        check_key("obs_names_key", obs_names_key)
        if obs_names_key not in names:
            if obs_names_key != NAMES_KEY:
                raise ValueError(
                    f"obs_names_key {obs_names_key!r} is not a column of the dataset; pass one of "
                    f"{scalar} or None (cells named by row position)"
                )
            obs_names_key = None
        elif obs_names_key not in scalar:
            raise ValueError(f"obs_names_key {obs_names_key!r} must name a column of scalars")
    return keys, obs_names_key


def _chunks(ds, chunk_size: int, columns: list[str], bounds=None) -> Iterator[tuple]:
    """``(start, end, flat ids int64, lengths int64, columns as a DataFrame)`` per chunk."""
    import datasets

    labels = {k: f for k, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
    table_ds = ds.select_columns(["input_ids", *columns]).with_format("arrow")
    for s, e in bounds if bounds is not None else chunk_bounds(len(ds), chunk_size):
        table = table_ds[s:e]
        arr = table.column("input_ids").combine_chunks()
        if arr.null_count:
            i = s + int(np.flatnonzero(np.asarray(arr.is_null()))[0])
            raise ValueError(f"cell {i} has no input_ids (null); drop it or re-tokenize it")
        values = arr.flatten()
        if values.null_count:
            raise ValueError(f"input_ids of cells {s}–{e - 1} hold null ids; re-tokenize them")
        flat = values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        meta = pd.DataFrame(index=pd.RangeIndex(s, e))
        for k in columns:
            col = table.column(k).to_pandas()
            if k in labels:  # a ClassLabel: its names, not the integer codes
                col = pd.Categorical.from_codes(col.to_numpy(), categories=labels[k].names)
            meta[k] = np.asarray(col) if not isinstance(col, pd.Categorical) else col
        yield s, e, flat, lengths, meta


# --- checks --------------------------------------------------------------------------------------
def _check_cells(flat: np.ndarray, lengths: np.ndarray, vocab: GeneVocab, row0: int,
                 is_gene: np.ndarray) -> None:  # fmt: skip
    """Raise a ``ValueError`` unless every cell is ``<bos> distinct genes… <eos>`` of ``vocab``."""
    short = np.flatnonzero(lengths < 2)
    if len(short):
        i = int(short[0])
        raise ValueError(
            f"cell {row0 + i} has {int(lengths[i])} token(s); a tokenized cell is "
            "`<bos> genes… <eos>` (at least <bos> and <eos>)"
        )
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0 or hi >= len(vocab):
        pos = int(np.argmax(flat) if hi >= len(vocab) else np.argmin(flat))
        cell = row0 + int(np.searchsorted(np.cumsum(lengths), pos, side="right"))
        raise ValueError(_range_message(lo, hi, cell, vocab))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    for where, want, name in ((offsets[:-1], vocab.bos_id, "start with <bos>"),
                              (offsets[1:] - 1, vocab.eos_id, "end with <eos>")):  # fmt: skip
        bad = np.flatnonzero(flat[where] != want)
        if len(bad):
            i = int(bad[0])
            if flat[where[i]] == vocab.pad_id:
                raise ValueError(
                    f"cell {row0 + i} does not {name} (id {want}) but with <pad>: the cells are "
                    "padded; strip the <pad> (0) ids from input_ids"
                )
            raise ValueError(
                f"cell {row0 + i} does not {name} (id {want}): it has "
                f"{vocab.tokens[flat[where[i]]]!r}; the official MaxToki tokenizer writes "
                "`<bos> genes… <eos>` per cell, so these cells come from another tokenizer (e.g. "
                "Geneformer's, without <bos>/<eos>) or were edited after tokenization"
            )
    inner = np.ones(len(flat), dtype=bool)
    inner[offsets[:-1]] = False
    inner[offsets[1:] - 1] = False
    bad = np.flatnonzero(inner & ~is_gene[flat])
    if len(bad):
        pos = int(bad[0])
        cell = row0 + int(np.searchsorted(offsets, pos, side="right")) - 1
        raise ValueError(_special_message(vocab, int(flat[pos]), cell))
    cell_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)[inner]
    key = cell_of * len(vocab) + flat[inner]
    key.sort()
    dup = np.flatnonzero(np.diff(key) == 0)
    if len(dup):
        cell, token = divmod(int(key[dup[0]]), len(vocab))
        raise ValueError(
            f"cell {row0 + cell} lists gene {vocab.tokens[token]!r} twice; a rank value encoding "
            "lists every gene once (re-tokenize the cells)"
        )


def _range_message(lo: int, hi: int, cell: int, vocab: GeneVocab) -> str:
    n = len(vocab)
    head = (
        f"cell {cell} holds token id {lo if lo < 0 else hi}, outside the vocabulary (ids 0–{n - 1})"
    )
    if lo < 0:
        return f"{head}: token ids are never negative; the input_ids column is damaged"
    if not vocab.has_time_tokens and hi < n + _TIME_EXTENSION:
        return (
            f"{head}: ids just past the gene tokens are the temporal vocabulary's time and "
            "question tokens, so this looks like an assembled prompt (cell paragraph) dataset, "
            "not tokenized cells; read the tokenized cells the prompts were assembled from"
        )
    return (
        f"{head}: the cells were tokenized with another token dictionary (another model's, e.g. "
        "Geneformer's, or a larger gene vocabulary); pass the dictionary they were made with: "
        "`vocab=GeneVocab.from_files(token_dictionary, gene_medians)`"
    )


def _special_message(vocab: GeneVocab, token: int, cell: int) -> str:
    name = vocab.tokens[token]
    head = f"cell {cell} holds {name!r} (id {token}) between <bos> and <eos>, where only genes go"
    if token == vocab.pad_id:
        return f"{head}: the cells are padded; strip the <pad> (0) ids from input_ids"
    if token in (vocab.bos_id, vocab.eos_id):
        return f"{head}: a row holds several cells (a prompt or packed sequence?), not one cell"
    if token == vocab.mask_id:
        return f"{head}: masked tokens (a masked-LM batch?); read the unmasked cells"
    return (
        f"{head}: time and question tokens belong to prompts, so this looks like an assembled "
        "prompt (cell paragraph) dataset, not tokenized cells; read the tokenized cells the "
        "prompts were assembled from"
    )


def _names(meta: pd.DataFrame, names_key: str | None) -> np.ndarray:
    if names_key is None:
        return meta.index.astype(str).to_numpy()
    return meta[names_key].astype(str).to_numpy()


# --- output --------------------------------------------------------------------------------------
def _to_adata(ds, source, vocab, keys, names_key, chunk_size, key_added) -> AnnData:
    """Read every chunk, check it, and build the AnnData (nothing is written before the end)."""
    from anndata import AnnData

    is_gene = vocab.is_gene_token
    dtype = token_dtype(vocab)
    columns = list(dict.fromkeys([*keys, *([names_key] if names_key else [])]))
    flats, metas = [], []
    lengths = np.empty(len(ds), dtype=np.int64)
    for s, e, flat, lens, meta in _chunks(ds, chunk_size, columns):
        _check_cells(flat, lens, vocab, s, is_gene)
        flats.append(flat.astype(dtype))
        lengths[s:e] = lens
        metas.append(meta)
    meta = pd.concat(metas)
    names = _names(meta, names_key)
    if names_key is not None and not pd.Index(names).is_unique:
        raise ValueError(
            f"column {names_key!r} (the cell names) has duplicates; pass another "
            "`obs_names_key`, or None to name the cells by row position"
        )
    obs = meta[keys].copy()
    obs.index = pd.Index(names)
    tokens = np.zeros((len(ds), int(lengths.max())), dtype=dtype)
    cols = np.arange(tokens.shape[1])
    s = 0
    for i, flat in enumerate(flats):
        e = s + len(metas[i])
        tokens[s:e][cols[None, :] < lengths[s:e, None]] = flat
        flats[i] = None
        s = e
    adata = AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(vocab.gene_ids.astype(str))))
    n_empty = int((lengths == 2).sum())
    record = {
        "params": h5ad_safe({"obs_keys": keys, "obs_names_key": names_key,
                             "chunk_size": chunk_size, "key_added": key_added}),
        "source": source,
        "n_cells": len(ds),
        "n_empty": n_empty,
    }  # fmt: skip
    slots = write_tokens(adata, tokens, lengths, key_added=key_added, vocab=vocab,
                         token_id=vocab.gene_token_ids, record=record)  # fmt: skip
    logg.info(
        f"    {len(ds):,} cells ({n_empty:,} without genes), up to {tokens.shape[1] - 2:,} genes; "
        f"added obsm[{slots.tokens!r}], obs[{slots.n_tokens!r}], obs[{slots.empty!r}], "
        f"var[{slots.token_id!r}], uns[{slots.tokens!r}]"
    )
    return adata


def _to_store(ds, source, out: Path, vocab, keys, names_key, chunk_size) -> TokenStore:
    """Check every cell, then write (or resume) the store shard by shard."""
    is_gene = vocab.is_gene_token
    for s, _, flat, lens, _ in _chunks(ds, chunk_size, []):
        _check_cells(flat, lens, vocab, s, is_gene)
    params = {"source": "hf_dataset", "chunk_size": chunk_size, "obs_keys": keys,
              "obs_names_key": names_key}  # fmt: skip
    info = {"path": source, "n_obs": len(ds), "fingerprint": str(getattr(ds, "_fingerprint", ""))}
    manifest = read_manifest(out) if out.exists() else None
    if manifest is None:
        if (
            out.exists()
            and (not out.is_dir() or any(out.iterdir()))
            and not (out.is_dir() and interrupted_start(out, vocab))
        ):
            raise ValueError(f"{str(out)!r} exists and is not a token store; use a new out_dir")
        out.mkdir(parents=True, exist_ok=True)
        vocab.save(out / VOCAB_DIR)
        manifest = {
            "format": STORE_FORMAT, "version": STORE_VERSION, "vocab_hash": vocab.hash,
            "vocab_size": len(vocab), "dtype": np.dtype(token_dtype(vocab)).name,
            "params": params, "files": [info], "shards": [], "complete": False,
        }  # fmt: skip
        write_manifest(out, manifest)
    elif (manifest["vocab_hash"], manifest["params"], manifest["files"]) != (
        vocab.hash,
        params,
        [info],
    ):
        raise ValueError(
            f"{str(out)!r} holds a token store written from another dataset, vocabulary or "
            "parameters; resume with the same call or use a new out_dir"
        )
    shards_dir = out / SHARDS_DIR
    shards_dir.mkdir(exist_ok=True)
    done = {s["name"] for s in manifest["shards"]}
    for d in [d for d in shards_dir.iterdir() if d.name not in done] + list(out.glob(".tmp-*")):
        shutil.rmtree(d) if d.is_dir() else d.unlink()  # leftovers of an interrupted run
    todo = [(s, e) for s, e in chunk_bounds(len(ds), chunk_size) if shard_name(0, s) not in done]
    if done:
        logg.info(f"    resuming: {len(done)} shard(s) already written")
    dtype = token_dtype(vocab)
    columns = list(dict.fromkeys([*keys, *([names_key] if names_key else [])]))
    for s, e, flat, lens, meta in _chunks(ds, chunk_size, columns, bounds=todo):
        obs = pd.DataFrame({"source_file": source, "obs_name": _names(meta, names_key)})
        for k in keys:
            obs[k] = meta[k].to_numpy()
        name = shard_name(0, s)
        write_shard(out, name, flat.astype(dtype), lens, obs)
        manifest["shards"].append({
            "name": name, "file": 0, "start": s, "end": e, "n_cells": e - s,
            "n_tokens": len(flat), "n_empty": int((lens == 2).sum()),
        })  # fmt: skip
        write_manifest(out, manifest)
    manifest["complete"] = True
    write_manifest(out, manifest)
    return TokenStore(out)
