"""Helpers shared by the ``maxtoki`` verbs (private): inputs, vocabularies, progress, writing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData

    from ._vocab import GeneVocab

STORE_HINT = "a token store folder (`maxtoki tokenize`) or an .h5ad file"


def read_vocab(spec: str) -> GeneVocab:
    """A vocabulary from ``'official'``, ``'official-temporal'``, or a vocabulary/model folder."""
    from ._vocab import TOKEN_DICTIONARY_FILE, GeneVocab

    if spec in ("official", "official-temporal"):
        return GeneVocab.official(temporal=spec == "official-temporal")
    folder = Path(spec)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--vocab {spec!r} is not a folder; pass a vocabulary folder, a model folder "
            "(save_pretrained output), 'official' or 'official-temporal'"
        )
    if not (folder / TOKEN_DICTIONARY_FILE).is_file():
        raise FileNotFoundError(
            f"--vocab {spec!r} has no {TOKEN_DICTIONARY_FILE}; pass a vocabulary folder "
            "(GeneVocab.save), a model folder that carries its vocabulary, 'official' or "
            "'official-temporal'"
        )
    return GeneVocab.load(folder)


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a token store folder (it has a ``manifest.json``)."""
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def check_input(path: str | os.PathLike) -> str:
    """``'store'`` or ``'h5ad'``; a clear error for anything else."""
    p = Path(path)
    if is_store(p):
        return "store"
    if p.is_file() and p.suffix == ".h5ad":
        return "h5ad"
    if not p.exists():
        raise FileNotFoundError(f"{str(p)!r} does not exist; pass {STORE_HINT}")
    raise ValueError(f"{str(p)!r} is neither {STORE_HINT}")


def read_obs(path: str | os.PathLike) -> pd.DataFrame:
    """The cell annotations of a store (indexed by ``obs_name``) or of an .h5ad file."""
    if check_input(path) == "store":
        from .pp import TokenStore

        obs = TokenStore(path).obs
        index = pd.Index(obs["obs_name"].astype(str), name=None)
        return obs.drop(columns="obs_name").set_axis(index, axis=0)
    import anndata as ad

    a = ad.read_h5ad(path, backed="r")
    try:
        return a.obs.copy()
    finally:
        a.file.close()


def store_adata(store, rows: np.ndarray, *, max_genes: int | None, key_added: str) -> AnnData:
    """An AnnData of store ``rows``: tokens (cut to ``max_genes``) in ``obsm`` and the obs."""
    from anndata import AnnData

    from ._keys import token_dtype, write_tokens

    vocab = store.vocab
    cells = store.get(rows)
    if max_genes is not None:
        cells = [c if len(c) - 2 <= max_genes else np.r_[c[: max_genes + 1], c[-1:]] for c in cells]
    lengths = np.array([len(c) for c in cells], dtype=np.int64)
    tokens = np.zeros((len(cells), int(lengths.max(initial=2))), dtype=token_dtype(vocab))
    for i, c in enumerate(cells):
        tokens[i, : len(c)] = c
    obs = store.obs.iloc[rows]
    obs = obs.set_axis(pd.Index(obs["obs_name"].astype(str).to_numpy()), axis=0)
    adata = AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(vocab.gene_ids.astype(str))))
    record = {"params": {"key_added": key_added}, "source": str(store.path)}
    write_tokens(adata, tokens, lengths, key_added=key_added, vocab=vocab,
                 token_id=vocab.gene_token_ids, record=record)  # fmt: skip
    return adata


def progress(total: int, desc: str, unit: str):
    """A tqdm bar that follows ``mt.settings.progress`` and the verbosity."""
    from tqdm.auto import tqdm

    from ._settings import settings

    return tqdm(total=total, desc=desc, unit=unit, disable=not settings.show_progress)


def replace_atomically(tmp: Path, final: Path) -> None:
    """Move a finished temporary file into place (a crash never leaves a partial ``final``)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def parse_holdout(items: list[str] | None, obs: pd.DataFrame) -> np.ndarray | None:
    """A boolean mask from ``['column=value,value', …]`` (a cell must match every item)."""
    if not items:
        return None
    mask = np.ones(len(obs), dtype=bool)
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--holdout {item!r} must look like COLUMN=VALUE[,VALUE…]")
        if key not in obs.columns:
            raise ValueError(
                f"--holdout names obs column {key!r}, which the input does not have (it has "
                f"{sorted(map(str, obs.columns))})"
            )
        mask &= obs[key].astype(str).isin(values.split(",")).to_numpy()
    return mask


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists and paths as strings (for a JSON manifest)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def connect(address: str):
    """A :class:`distributed.Client` of the scheduler at ``address`` (``--scheduler``)."""
    from ._optional import import_optional

    distributed = import_optional("distributed", extra="dask", purpose="--scheduler")
    try:
        return distributed.Client(address)
    except OSError as e:
        raise OSError(
            f"--scheduler: no dask scheduler answers at {address!r} ({e}); start one "
            "(`dask scheduler`, or a dask-jobqueue cluster) and pass its address"
        ) from None
