"""Corpus-scale tokenisation into a memory-mapped token store (``mt.pp.tokenize_corpus``)."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import logging as logg
from .._dask import map_shards, resolve_client
from .._keys import token_dtype
from .._vocab import GeneVocab
from ._chunks import (
    check_overlap,
    chunk_bounds,
    encode_chunk,
    iter_chunks,
    numba_threads,
    obs_n_counts,
    prepare,
    validate_params,
)
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
)
from ._token_store import write_shard as _write_shard  # a module attribute: tests patch it

DEFAULT_CORPUS_CHUNK_SIZE = 10_000


def tokenize_corpus(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    vocab: GeneVocab,
    max_len: int = 4096,
    obs_keys: Sequence[str] = (),
    chunk_size: int = DEFAULT_CORPUS_CHUNK_SIZE,
    gene_id_key: str | None = None,
    layer: str | None = None,
    n_counts_key: str | None = "n_counts",
    min_overlap: float = 0.5,
    client: Any = None,
) -> TokenStore:
    """Tokenise many ``.h5ad`` files into a memory-mapped token store, resumably.

    Each file is read backed, chunk by chunk (the next chunk is read while one is ranked), with
    the same rank value encoding as :func:`maxtoki.pp.tokenize`; memory stays bounded by the
    chunk size whatever the corpus size. Each (file × chunk) becomes one shard folder under
    ``out_dir/shards/`` with ``tokens.npy`` (flat token ids, ``<bos>``/``<eos>`` included,
    ``uint16`` when the vocabulary fits, else ``int32``), ``offsets.npy`` (int64, ``n + 1``) and
    ``obs.csv``. A shard is written under a temporary name and renamed when complete, then
    recorded in ``manifest.json`` (replaced atomically), so a crash never leaves a partial shard
    visible; re-running the same call skips the recorded shards and the result holds every cell
    exactly once (also after a crash before the first shard, while the store was being set up).
    Read it with :class:`maxtoki.pp.TokenStore`.

    With ``client``, each pending shard is a task on a dask.distributed cluster: a worker reads
    its rows, tokenises them and writes the shard folder (temporary name, then rename); the
    driver records each shard in the manifest as its task finishes. A worker killed mid-task
    loses nothing (dask runs the task again; a half-written temporary folder is never part of
    the store), and the store equals the one written without a cluster. See
    :doc:`/scaling`.

    Parameters
    ----------
    files
        An ``.h5ad`` path or a list of them (raw counts; see :func:`maxtoki.pp.tokenize` for what
        the files must hold). Every file is validated (gene IDs, layer, obs columns) before any
        shard is written.
    out_dir
        The store folder (created). Re-running with the same files and parameters resumes.
    vocab
        The model's vocabulary (saved to ``out_dir/vocab``).
    max_len
        Model input size: at most ``max_len - 2`` genes per cell plus ``<bos>``/``<eos>``.
    obs_keys
        Obs columns to keep in each shard's ``obs.csv`` (beside ``source_file`` and
        ``obs_name``).
    chunk_size
        Cells per shard.
    gene_id_key
        Column of ``var`` with Ensembl IDs (see :func:`maxtoki.pp.tokenize`).
    layer
        Layer with raw counts; ``None`` uses ``X``.
    n_counts_key
        Column of ``obs`` with total counts; computed when absent.
    min_overlap
        Refuse a file when less than this fraction of the counts in its first chunk falls on
        vocabulary genes (checked before its first shard is written).
    client
        ``None`` runs here; a :class:`distributed.Client` (``pip install 'maxtoki[dask]'``)
        runs one task per shard on its cluster; ``'active'`` takes the client of the current
        context (:func:`distributed.get_client`). The files and ``out_dir`` must be on storage
        that every worker sees under the same paths.

    Returns
    -------
    The :class:`~maxtoki.pp.TokenStore` opened on ``out_dir``.
    """
    params = validate_params(vocab, max_len, chunk_size, min_overlap, "tokens")
    client = resolve_client(client, purpose="mt.pp.tokenize_corpus(client=…)")
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if not paths:
        raise ValueError("no files given")
    if isinstance(obs_keys, str):
        obs_keys = [obs_keys]
    obs_keys = [str(k) for k in obs_keys]
    for k in obs_keys:
        if k in ("source_file", "obs_name"):
            raise ValueError(f"obs_keys may not contain the reserved column name {k!r}")
    abs_paths = [str(Path(p).resolve()) for p in paths]
    if len(set(abs_paths)) != len(abs_paths):
        raise ValueError("a file is listed twice; every cell must be stored exactly once")
    out = Path(out_dir)
    start = logg.info(f"tokenizing {len(paths)} file(s) into the token store {str(out)!r}")

    infos = [_check_file(p, vocab, max_len, layer, gene_id_key, obs_keys, n_counts_key)
             for p in abs_paths]  # every file is validated before anything is written

    store_params = {
        "max_len": params["max_len"], "chunk_size": params["chunk_size"], "obs_keys": obs_keys,
        "gene_id_key": gene_id_key, "layer": layer, "n_counts_key": n_counts_key,
        "min_overlap": params["min_overlap"],
    }
    manifest = read_manifest(out) if out.exists() else None
    if manifest is None:
        if out.exists() and any(out.iterdir()) and not interrupted_start(out, vocab):
            raise ValueError(f"{str(out)!r} exists and is not a token store; use a new out_dir")
        out.mkdir(parents=True, exist_ok=True)
        vocab.save(out / VOCAB_DIR)
        manifest = {
            "format": STORE_FORMAT, "version": STORE_VERSION, "vocab_hash": vocab.hash,
            "vocab_size": len(vocab), "dtype": np.dtype(token_dtype(vocab)).name,
            "params": store_params, "files": infos, "shards": [], "complete": False,
        }
        write_manifest(out, manifest)
    else:
        _check_resume(manifest, vocab, store_params, infos, out)
        logg.info(f"    resuming: {len(manifest['shards'])} shard(s) already written")
    shards_dir = out / SHARDS_DIR
    shards_dir.mkdir(exist_ok=True)
    done = {s["name"] for s in manifest["shards"]}
    # leftovers of an interrupted run (never part of the store): unrecorded shards, temp folders
    stale = [d for d in shards_dir.iterdir() if d.name not in done] + list(out.glob(".tmp-*"))
    for d in stale:
        shutil.rmtree(d) if d.is_dir() else d.unlink()

    n_written = 0
    todos = [
        [(s, e) for s, e in chunk_bounds(info["n_obs"], params["chunk_size"])
         if shard_name(fi, s) not in done]
        for fi, info in enumerate(infos)
    ]
    n_todo = sum(len(todo) for todo in todos)
    n_cells = sum(e - s for todo in todos for s, e in todo)
    bar = logg._progress_bar(n_cells, desc="tokenize_corpus", show=n_todo > 1)
    options = {"max_len": params["max_len"], "min_overlap": params["min_overlap"],
               "obs_keys": obs_keys, "layer": layer, "gene_id_key": gene_id_key,
               "n_counts_key": n_counts_key}  # fmt: skip
    with numba_threads(), bar:
        if client is not None:
            n_written = _tokenize_on_cluster(client, infos, todos, out, manifest, vocab, options,
                                             bar)  # fmt: skip
        for fi, (info, todo) in enumerate(zip(infos, todos, strict=True)):
            if todo and client is None:
                n_written += _tokenize_file(fi, info, todo, out, manifest, vocab, params,
                                            obs_keys, layer, gene_id_key, n_counts_key, bar)
    manifest["shards"].sort(key=lambda r: (r["file"], r["start"]))
    manifest["complete"] = True
    write_manifest(out, manifest)
    store = TokenStore(out)
    logg.info(f"    finished: {n_written} new shard(s); {store!r}", time=start)
    return store


def _check_file(p, vocab, max_len, layer, gene_id_key, obs_keys, n_counts_key) -> dict[str, Any]:
    """Validate one input file (gene IDs, layer, obs columns); its manifest entry."""
    import anndata as ad

    if not os.path.isfile(p):
        raise ValueError(f"file {p!r} does not exist")
    a = ad.read_h5ad(p, backed="r")
    try:
        plan = prepare(a, vocab, max_len=max_len, layer=layer, gene_id_key=gene_id_key)
        missing = [k for k in obs_keys if k not in a.obs.columns]
        if missing:
            raise ValueError(f"{p}: obs has no column(s) {missing} (obs_keys)")
        obs_n_counts(a, n_counts_key)
        return {"path": p, "n_obs": int(a.n_obs), "n_vars": int(a.n_vars),
                "size": os.path.getsize(p), "n_genes_in_vocab": plan.n_genes_in_vocab}
    finally:
        a.file.close()


def _check_resume(manifest, vocab, store_params, infos, out) -> None:
    if manifest["vocab_hash"] != vocab.hash:
        raise ValueError(
            f"{str(out)!r} holds tokens made with vocabulary {manifest['vocab_hash']}, this "
            f"one is {vocab.hash}; use a new out_dir"
        )
    old = manifest["params"]
    diff = [k for k in store_params if old.get(k) != store_params[k]]
    if diff:
        raise ValueError(
            f"{str(out)!r} was written with other parameters ({', '.join(diff)}: "
            f"{[old.get(k) for k in diff]}); resume with the same call or use a new out_dir"
        )
    old_files = [(f["path"], f["n_obs"], f["size"]) for f in manifest["files"]]
    new_files = [(f["path"], f["n_obs"], f["size"]) for f in infos]
    if old_files != new_files:
        raise ValueError(
            f"{str(out)!r} was written from other files (or the files changed since); resume "
            "with the same files or use a new out_dir"
        )


def _tokenize_file(fi, info, todo, out, manifest, vocab, params, obs_keys, layer, gene_id_key,
                   n_counts_key, bar) -> int:
    import anndata as ad

    path = info["path"]
    t0 = logg.info(f"    {path}: {info['n_obs']:,} cells, {len(todo)} shard(s) to write")
    a = ad.read_h5ad(path, backed="r")
    try:
        plan = prepare(a, vocab, max_len=params["max_len"], layer=layer, gene_id_key=gene_id_key)
        n_counts = obs_n_counts(a, n_counts_key)
        obs_names = a.obs_names
        obs = a.obs[obs_keys] if obs_keys else None
        warned = [False]
        first = True
        for s, e, chunk in iter_chunks(plan.matrix, a.n_obs, params["chunk_size"], plan.what,
                                       prefetch=True, bounds=todo):
            enc = encode_chunk(chunk, plan, None if n_counts is None else n_counts[s:e], row0=s,
                               warned=warned)
            del chunk
            if first:
                check_overlap(enc.in_vocab, enc.total, params["min_overlap"],
                              params["min_overlap"], plan, f" of {path} (cells {s:,}–{e - 1:,})")
                first = False
            record = _save_shard(out, fi, s, e, enc, path, obs_names, obs, obs_keys)
            manifest["shards"].append(record)
            write_manifest(out, manifest)
            bar.update(e - s)
    finally:
        a.file.close()
    logg.info(f"    {path}: done", time=t0)
    return len(todo)


def _save_shard(out, fi, s, e, enc, path, obs_names, obs, obs_keys) -> dict[str, Any]:
    """Write the shard of rows ``s:e`` of file ``fi``; its manifest record."""
    name = shard_name(fi, s)
    meta = pd.DataFrame({"source_file": path, "obs_name": np.asarray(obs_names[s:e])})
    if obs is not None:
        for k in obs_keys:
            meta[k] = np.asarray(obs[k].iloc[s:e])
    _write_shard(out, name, enc.tokens, enc.lengths, meta)
    return {"name": name, "file": fi, "start": s, "end": e, "n_cells": e - s,
            "n_tokens": len(enc.tokens), "n_empty": int((enc.lengths == 2).sum())}  # fmt: skip


def _tokenize_on_cluster(client, infos, todos, out, manifest, vocab, options, bar) -> int:
    """One dask task per pending shard; the manifest records each as it finishes (driver only)."""
    jobs = [
        {"file": fi, "path": info["path"], "start": s, "end": e, "out": str(out.resolve()),
         "check_overlap": k == 0}  # the first pending chunk of a file, as without a cluster
        for fi, (info, todo) in enumerate(zip(infos, todos, strict=True))
        for k, (s, e) in enumerate(todo)
    ]  # fmt: skip
    logg.info(f"    {len(jobs)} shard(s) as tasks on the dask cluster {client.scheduler.address}")

    def record(job, rec) -> None:
        manifest["shards"].append(rec)
        write_manifest(out, manifest)
        bar.update(rec["n_cells"])

    shared = {"options": {**options, "vocab_hash": vocab.hash}}
    n = map_shards(client, _tokenize_shard, jobs, on_done=record, shared=shared,
                   name="maxtoki-tokenize")  # fmt: skip
    for tmp in out.glob(".tmp-*"):  # left by workers that died mid-write
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return n


def _tokenize_shard(job: dict[str, Any], *, options: dict[str, Any]) -> dict[str, Any]:
    """A dask task: tokenise rows ``start:end`` of one file into its shard; its manifest record."""
    import anndata as ad

    from ._chunks import read_rows

    path, s, e = job["path"], job["start"], job["end"]
    vocab = _store_vocab(job["out"], options["vocab_hash"])
    a = ad.read_h5ad(path, backed="r")
    try:
        plan = prepare(a, vocab, max_len=options["max_len"], layer=options["layer"],
                       gene_id_key=options["gene_id_key"])  # fmt: skip
        n_counts = obs_n_counts(a, options["n_counts_key"])
        obs_keys = options["obs_keys"]
        with numba_threads():
            enc = encode_chunk(read_rows(plan.matrix, s, e), plan,
                               None if n_counts is None else n_counts[s:e], row0=s,
                               warned=[False])  # fmt: skip
        if job["check_overlap"]:
            threshold = options["min_overlap"]
            check_overlap(enc.in_vocab, enc.total, threshold, threshold, plan,
                          f" of {path} (cells {s:,}–{e - 1:,})")  # fmt: skip
        return _save_shard(Path(job["out"]), job["file"], s, e, enc, path, a.obs_names,
                           a.obs[obs_keys] if obs_keys else None, obs_keys)  # fmt: skip
    finally:
        a.file.close()


@functools.lru_cache(maxsize=4)
def _store_vocab(out: str, vocab_hash: str) -> GeneVocab:
    """The vocabulary saved in the store (read once per worker process)."""
    vocab = GeneVocab.load(Path(out) / VOCAB_DIR)
    if vocab.hash != vocab_hash:
        raise ValueError(f"{out!r}: its vocabulary changed while it was being written")
    return vocab
