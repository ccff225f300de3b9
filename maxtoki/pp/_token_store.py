"""Memory-mapped token store written by :func:`maxtoki.pp.tokenize_corpus` (``TokenStore``)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._vocab import GENE_MEDIANS_FILE, TOKEN_DICTIONARY_FILE, GeneVocab

MANIFEST = "manifest.json"
STORE_FORMAT = "maxtoki-token-store"
STORE_VERSION = 1
SHARDS_DIR = "shards"
VOCAB_DIR = "vocab"
_SHARD_RE = re.compile(r"^f\d{5,}-r\d{12,}$")


class TokenStore:
    """Read a token store: random access to each cell's tokens without loading the corpus.

    A store (written by :func:`maxtoki.pp.tokenize_corpus`) is a folder with ``manifest.json``,
    the vocabulary (``vocab/``) and one subfolder per completed shard under ``shards/``, each with
    ``tokens.npy`` (all cells' tokens, flat, ``<bos>``/``<eos>`` included), ``offsets.npy``
    (int64, ``n_cells + 1``) and ``obs.csv`` (source file, obs name, requested obs columns).
    Token arrays are opened with ``np.load(mmap_mode="r")`` (never unpickled): only the cells you
    index are read, and a pickled store (e.g. sent to DataLoader workers) carries its path, not
    the opened arrays. Cells are ordered by input file, then by row, whatever order the shards
    were written in.

    Parameters
    ----------
    path
        The store folder.

    Examples
    --------
    >>> store = mt.pp.TokenStore("corpus_tokens")  # doctest: +SKIP
    >>> len(store), store[0][:5], store.lengths.max()  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"path must be the folder of a token store (a str or Path), got "
                f"{type(path).__name__}; write one with mt.pp.tokenize_corpus"
            )
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise ValueError(
                f"{str(self.path)!r} is not a token store (no {MANIFEST}); write one with "
                "mt.pp.tokenize_corpus"
            )
        self.manifest = manifest
        self.vocab = GeneVocab.load(self.path / VOCAB_DIR)
        if self.vocab.hash != manifest["vocab_hash"]:
            raise ValueError(
                f"the store's vocabulary ({self.vocab.hash}) does not match its manifest "
                f"({manifest['vocab_hash']}); the store is damaged"
            )
        shards = sorted(manifest["shards"], key=lambda s: (s["file"], s["start"]))
        bad = [s["name"] for s in shards if not _SHARD_RE.match(str(s["name"]))]
        if bad:  # a name like "../x" would read files outside the store
            raise ValueError(
                f"{str(self.path / MANIFEST)!r} lists shards with invalid names {bad[:3]}; "
                "the store is damaged"
            )
        self._shards = shards
        sizes = np.array([s["n_cells"] for s in shards], dtype=np.int64)
        self._starts = np.zeros(len(shards) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self._starts[1:])
        self._tokens: list[np.ndarray | None] = [None] * len(shards)
        self._offsets: list[np.ndarray | None] = [None] * len(shards)

    def __getstate__(self) -> dict[str, Any]:
        # pickled (e.g. into DataLoader workers) without the opened memory maps, which would be
        # copied in full, and without the cached columns: the copy re-opens what it reads
        state = self.__dict__.copy()
        state["_tokens"] = [None] * len(self._shards)
        state["_offsets"] = [None] * len(self._shards)
        state.pop("lengths", None)
        state.pop("obs", None)
        return state

    # --- size and access ----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def complete(self) -> bool:
        """Whether every shard of every input file has been written."""
        return bool(self.manifest.get("complete", False))

    @property
    def n_shards(self) -> int:
        """Number of completed shards."""
        return len(self._shards)

    @property
    def dtype(self) -> np.dtype:
        """Integer type of the stored token ids."""
        return np.dtype(self.manifest["dtype"])

    @property
    def n_tokens(self) -> int:
        """Total number of stored tokens."""
        return int(sum(s["n_tokens"] for s in self._shards))

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._tokens[k] is None:
            d = self.path / SHARDS_DIR / self._shards[k]["name"]
            tokens = _load_array(d / "tokens.npy", self.dtype)
            self._offsets[k] = _load_array(d / "offsets.npy", np.dtype(np.int64))
            self._tokens[k] = tokens
        return self._tokens[k], self._offsets[k]

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index a TokenStore with an integer, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"cell {i} out of range for a store of {n:,} cells")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return k, int(i - self._starts[k])

    def __getitem__(self, i: int) -> np.ndarray:
        """Tokens of cell ``i`` (1-D array, ``<bos>`` … ``<eos>``)."""
        k, j = self._locate(i)
        tokens, offsets = self._shard(k)
        return np.array(tokens[offsets[j] : offsets[j + 1]])

    def get(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """Tokens of several cells (a list of 1-D arrays)."""
        return [self[int(i)] for i in indices]

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(len(self._shards)):
            tokens, offsets = self._shard(k)
            for j in range(len(offsets) - 1):
                yield np.array(tokens[offsets[j] : offsets[j + 1]])

    @cached_property
    def lengths(self) -> np.ndarray:
        """Number of tokens of every cell (int32, ``<bos>``/``<eos>`` included)."""
        out = np.empty(len(self), dtype=np.int32)
        for k in range(len(self._shards)):
            _, offsets = self._shard(k)
            out[self._starts[k] : self._starts[k + 1]] = np.diff(offsets)
        return out

    @cached_property
    def obs(self) -> pd.DataFrame:
        """Cell annotations: ``source_file``, ``obs_name`` and the requested obs columns."""
        frames = [
            pd.read_csv(self.path / SHARDS_DIR / s["name"] / "obs.csv", dtype={"obs_name": str},
                        keep_default_na=False, na_values=[""])
            for s in self._shards
        ]
        if not frames:
            return pd.DataFrame(columns=["source_file", "obs_name"])
        return pd.concat(frames, ignore_index=True)

    # --- export -------------------------------------------------------------------------------
    def to_hf_dataset(self, *, obs_keys: Sequence[str] | None = None, **kwargs: Any):
        """Export to the official Hugging Face ``datasets`` layout (``input_ids``, ``length``).

        Streams cell by cell through :meth:`datasets.Dataset.from_generator` (memory stays
        bounded; ``datasets`` writes Arrow files to its cache). Save with
        ``ds.save_to_disk(path)`` for the official MaxToki/Geneformer training scripts.

        Parameters
        ----------
        obs_keys
            Obs columns to add as dataset columns; ``None`` adds every stored column.
        **kwargs
            Passed to :meth:`datasets.Dataset.from_generator` (e.g. ``cache_dir``).

        Returns
        -------
        A :class:`datasets.Dataset` with ``input_ids`` (list of int32), ``length`` (int32) and
        the obs columns.
        """
        try:
            import datasets
        except ImportError:
            raise ImportError(
                "TokenStore.to_hf_dataset needs the optional `datasets` package: "
                "pip install datasets"
            ) from None
        obs = self.obs
        keys = list(obs.columns) if obs_keys is None else list(obs_keys)
        missing = [k for k in keys if k not in obs.columns]
        if missing:
            raise ValueError(f"obs columns {missing} are not in the store ({list(obs.columns)})")
        path = str(self.path)

        def gen():
            store = TokenStore(path)
            meta = store.obs[keys]
            for i, toks in enumerate(store):
                row = {"input_ids": toks.astype(np.int32), "length": len(toks)}
                for k in keys:
                    row[k] = meta[k].iat[i]
                yield row

        feats = {"input_ids": datasets.Sequence(datasets.Value("int32")),
                 "length": datasets.Value("int32")}
        for k in keys:
            dt = obs[k].dtype
            if pd.api.types.is_integer_dtype(dt):
                feats[k] = datasets.Value("int64")
            elif pd.api.types.is_float_dtype(dt):
                feats[k] = datasets.Value("float64")
            elif pd.api.types.is_bool_dtype(dt):
                feats[k] = datasets.Value("bool")
            else:
                feats[k] = datasets.Value("string")
        return datasets.Dataset.from_generator(gen, features=datasets.Features(feats), **kwargs)

    def __repr__(self) -> str:
        state = "" if self.complete else ", incomplete"
        return (
            f"TokenStore({str(self.path)!r}: {len(self):,} cells, {self.n_tokens:,} tokens in "
            f"{self.n_shards} shards, vocabulary {self.vocab.hash}{state})"
        )


def _load_array(file: Path, dtype: np.dtype) -> np.ndarray:
    """Memory-map one array of a shard (never unpickled), checking its type."""
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # e.g. an object array: it would need unpickling
        raise ValueError(
            f"{str(file)!r} is not a plain {dtype} array ({e}); the store is damaged"
        ) from None
    if arr.dtype != dtype or arr.ndim != 1:
        raise ValueError(
            f"{str(file)!r} holds a {arr.dtype} array of shape {arr.shape}, expected 1-D {dtype}; "
            "the store is damaged"
        )
    return arr


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The store's manifest, or ``None`` when ``path`` holds none."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    try:
        with f.open() as fh:
            m = json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(f)!r} is not valid JSON ({e}); the store is damaged") from None
    if m.get("format") != STORE_FORMAT:
        raise ValueError(f"{str(f)!r} is not a maxtoki token store manifest")
    if m.get("version") != STORE_VERSION:
        raise ValueError(
            f"token store version {m.get('version')} is not supported (this maxtoki reads "
            f"version {STORE_VERSION})"
        )
    return m


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    f = Path(path) / MANIFEST
    tmp = f.with_name(f".{MANIFEST}.tmp")
    with tmp.open("w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, f)


# --- writing a store (shared by mt.pp.tokenize_corpus and mt.pp.read_tokenized) -----------------
def shard_name(file_index: int, start: int) -> str:
    """The folder name of the shard of input ``file_index`` starting at row ``start``."""
    return f"f{file_index:05d}-r{start:012d}"


def interrupted_start(out: Path, vocab: GeneVocab) -> bool:
    """Whether ``out`` (no manifest) holds only what a first run stopped before its manifest writes.

    That is the vocabulary folder (complete with this vocabulary, or partly written) and
    temporary files; such a folder is started afresh, anything else is refused.
    """
    vocab_files = {TOKEN_DICTIONARY_FILE, GENE_MEDIANS_FILE}
    for entry in out.iterdir():
        if entry.name.startswith(".tmp-") or entry.name == f".{MANIFEST}.tmp":
            continue
        if entry.name != VOCAB_DIR or not entry.is_dir():
            return False
        names = {p.name for p in entry.iterdir()}
        if not names <= vocab_files | {f".{n}.tmp" for n in vocab_files}:
            return False
        if vocab_files <= names:
            try:
                same = GeneVocab.load(entry).hash == vocab.hash
            except (OSError, ValueError, TypeError, KeyError):
                same = True  # a half-written file of our own
            if not same:
                return False
    return True


def write_shard(out: Path, name: str, tokens: np.ndarray, lengths: np.ndarray,
                meta: pd.DataFrame) -> None:
    """Write one shard under a temporary name (fsynced), then rename it into ``shards/``."""
    tmp = out / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    for fname, arr in (("tokens.npy", tokens), ("offsets.npy", offsets)):
        with (tmp / fname).open("wb") as fh:
            np.save(fh, arr)
            fh.flush()
            os.fsync(fh.fileno())
    meta.to_csv(tmp / "obs.csv", index=False)
    final = out / SHARDS_DIR / name
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
