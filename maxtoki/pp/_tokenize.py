"""Rank value encoding: AnnData of raw counts → MaxToki tokens (``mt.pp.tokenize``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import logging as logg
from .._anndata import mirror_obs, resolve_modality
from .._docs import inject_docs
from .._keys import TokenSlots, h5ad_safe, write_tokens
from ._chunks import (
    DEFAULT_CHUNK_SIZE,
    Plan,
    check_overlap,
    encode_chunk,
    iter_chunks,
    numba_threads,
    obs_n_counts,
    prepare,
    validate_params,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab


@inject_docs
def tokenize(
    adata: Any,
    *,
    vocab: GeneVocab,
    max_len: int = 4096,
    layer: str | None = None,
    gene_id_key: str | None = None,
    n_counts_key: str | None = "n_counts",
    mod: str = "rna",
    key_added: str = "maxtoki",
    min_overlap: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    copy: bool = False,
) -> AnnData | None:
    """Rank value encoding of every cell: raw counts → MaxToki gene tokens.

    Reproduces the official MaxToki/Geneformer ``TranscriptomeTokenizer`` token for token (checked
    against the official output on real cells), in a parallel Numba kernel over chunks of cells,
    so memory stays bounded and backed AnnData (``read_h5ad(backed="r")``) works. Per cell:

    1. genes keyed by Ensembl ID; columns with the same ID are summed; genes outside the
       vocabulary are dropped;
    2. ``x / n_counts * 10_000 / median`` with ``n_counts`` from ``obs[n_counts_key]`` when present,
       else the total counts over all genes (computed as
       ``((x * (1 / n_counts)) * 10_000) * (1 / median)`` in float64, the operations SciPy does in
       the official code, so values and their order are bit-identical);
    3. non-zero genes sorted by that value, descending; ties (equal values) by ascending token id
       (the official unstable sort leaves tie order undefined);
    4. truncated to ``max_len - 2`` genes and wrapped as ``<bos> … <eos>``.

    Cells without any vocabulary gene are kept as ``<bos> <eos>`` and flagged.

    Parameters
    ----------
    adata
        AnnData (in memory or backed) or MuData (see ``mod``) with raw counts (integers; floats
        holding whole numbers are fine) in ``X`` or ``layer``: CSR, CSC, dense, or dask.
    vocab
        The model's vocabulary, e.g. ``GeneVocab.from_files(token_dictionary, gene_medians)``.
    max_len
        Model input size: at most ``max_len - 2`` genes per cell plus ``<bos>``/``<eos>``.
    layer
        Layer with raw counts; ``None`` uses ``X``.
    gene_id_key
        Column of ``var`` with Ensembl IDs (``"index"`` for ``var_names``). ``None`` uses
        ``var['ensembl_id']`` if present, else ``var_names`` if they look like Ensembl IDs.
        Version suffixes (``.17``) are ignored.
    n_counts_key
        Column of ``obs`` with each cell's total counts (as in the official tokenizer); when absent
        (or ``None``), totals are computed over all genes of ``X``/``layer``.
    {mod}
    {key_added}
    min_overlap
        Refuse (``ValueError``) when less than this fraction of all counts falls on vocabulary
        genes: a sign of the wrong species, ID type or feature set.
    chunk_size
        Cells per chunk (memory grows with it; the next chunk is read while one is ranked).
    copy
        Return a modified copy instead of writing in place (a backed AnnData is loaded into
        memory for the copy).

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``, with

    ``obsm[f'{key_added}_tokens']``
        Token ids per cell (``n_obs × width``, ``width`` the longest cell's length), padded with
        ``<pad>`` (0); ``uint16`` when the vocabulary has at most 65,536 tokens, else ``int32``.
    ``obs[f'{key_added}_n_tokens']``
        Number of tokens of each cell, ``<bos>`` and ``<eos>`` included.
    ``obs[f'{key_added}_empty']``
        ``True`` for cells without any vocabulary gene (tokens ``<bos> <eos>``).
    ``var[f'{key_added}_token_id']``
        Token id of each gene, ``-1`` for genes outside the vocabulary.
    ``uns[f'{key_added}_tokens']``
        ``params`` (the arguments), ``vocab_hash``, ``vocab_size``, ``dtype``, ``gene_id_source``,
        ``n_genes``, ``n_genes_in_vocab``, ``n_tokens_in_vocab`` (distinct tokens),
        ``frac_counts_in_vocab``, ``n_cells``, ``n_empty``, ``n_truncated`` (cells with more than
        ``max_len - 2`` vocabulary genes), ``slots`` (the keys written). Token consumers read
        them with ``tokens_key=f'{key_added}_tokens'``.

    Raises
    ------
    ValueError
        Negative, NaN or log-normalised values, missing gene IDs, gene symbols instead of IDs,
        too little overlap with the vocabulary, ``max_len < 3``, or an unknown layer. On any
        error the input is left unchanged.
    """
    params = validate_params(vocab, max_len, chunk_size, min_overlap, key_added)
    target, _ = resolve_modality(adata, mod)
    start = logg.info(
        f"tokenizing {target.n_obs:,} cells × {target.n_vars:,} genes "
        f"(vocabulary {vocab.hash}, max_len {max_len})"
    )
    plan = prepare(target, vocab, max_len=max_len, layer=layer, gene_id_key=gene_id_key)
    n_counts = obs_n_counts(target, n_counts_key)
    logg.info(
        f"    gene IDs from {plan.gene_ids.source}: {plan.n_genes_in_vocab:,} of "
        f"{target.n_vars:,} genes in the vocabulary ({plan.n_tokens_in_vocab:,} distinct tokens"
        f"{', duplicated IDs summed' if plan.has_dups else ''}); n_counts "
        f"{'from obs[' + repr(n_counts_key) + ']' if n_counts is not None else 'computed'}"
    )
    if target.n_obs == 0:
        raise ValueError("the AnnData has no cells to tokenize")
    tokens, lengths, frac, n_truncated = _encode(
        target.n_obs, plan, n_counts, chunk_size, min_overlap
    )
    slots = TokenSlots.for_key_added(key_added)
    n_empty = int((lengths == 2).sum())
    if n_empty:
        logg.warning(
            f"{n_empty:,} cells have no vocabulary gene with a non-zero count; they are kept as "
            f"<bos> <eos> and flagged in obs[{slots.empty!r}]"
        )
    record = {
        "params": h5ad_safe(
            dict(params, layer=layer, gene_id_key=gene_id_key, n_counts_key=n_counts_key, mod=mod)
        ),
        "gene_id_source": plan.gene_ids.source,
        "gene_id_key": plan.gene_ids.key,
        "n_counts_source": "obs" if n_counts is not None else "computed",
        "n_genes": int(target.n_vars),
        "n_genes_in_vocab": plan.n_genes_in_vocab,
        "n_tokens_in_vocab": plan.n_tokens_in_vocab,
        "frac_counts_in_vocab": float(frac),
        "n_cells": int(target.n_obs),
        "n_empty": n_empty,
        "n_truncated": int(n_truncated),
    }
    # --- everything validated and computed: write
    if copy:
        adata = adata.to_memory() if getattr(adata, "isbacked", False) else adata.copy()
    target, mdata = resolve_modality(adata, mod)
    write_tokens(
        target,
        tokens,
        lengths,
        key_added=key_added,
        vocab=vocab,
        token_id=plan.col_token,
        record=record,
    )
    mirror_obs(mdata, mod, [slots.n_tokens, slots.empty])
    logg.info("    finished", time=start)
    logg.info(
        f"added obsm[{slots.tokens!r}] ({target.n_obs:,} × {tokens.shape[1]} "
        f"{tokens.dtype.name}), obs[{slots.n_tokens!r}], obs[{slots.empty!r}], "
        f"var[{slots.token_id!r}], uns[{slots.tokens!r}]"
    )
    return adata if copy else None


def _encode(n_obs: int, plan: Plan, n_counts, chunk_size: int, min_overlap: float):
    """Every cell's tokens, padded: ``(tokens, lengths, fraction of counts in vocab, n_truncated)``.

    Chunk by chunk (memory bounded by the chunk size plus the result); fails fast when the first
    chunk already shows too little overlap with the vocabulary.
    """
    from ._rank_kernel import pad_rows

    flats: list[tuple[int, int, np.ndarray | None]] = []
    lengths = np.empty(n_obs, dtype=np.int32)
    total_counts = vocab_counts = 0.0
    n_truncated = 0
    warned = [False]
    n_chunks = -(-n_obs // chunk_size)
    with numba_threads():
        with logg._progress_bar(n_obs, desc="tokenize", show=n_chunks > 1) as bar:
            for s, e, chunk in iter_chunks(plan.matrix, n_obs, chunk_size, plan.what):
                part = None if n_counts is None else n_counts[s:e]
                enc = encode_chunk(chunk, plan, part, row0=s, warned=warned)
                del chunk
                flats.append((s, e, enc.tokens))
                lengths[s:e] = enc.lengths
                total_counts += enc.total
                vocab_counts += enc.in_vocab
                n_truncated += enc.n_truncated
                bar.update(e - s)
                if s == 0 and e < n_obs:  # fail fast when hopeless
                    check_overlap(
                        enc.in_vocab,
                        enc.total,
                        min_overlap / 2,
                        min_overlap,
                        plan,
                        f" in the first {e:,} cells",
                    )
        frac = check_overlap(vocab_counts, total_counts, min_overlap, min_overlap, plan, "")
        logg.info(f"    {frac:.1%} of counts are in vocabulary genes")
        tokens = np.zeros((n_obs, int(lengths.max())), dtype=plan.dtype)
        for i, (s, e, flat) in enumerate(flats):
            flats[i] = (s, e, None)  # free each chunk once copied
            offsets = np.zeros(e - s + 1, dtype=np.int64)
            np.cumsum(lengths[s:e], out=offsets[1:])
            pad_rows(flat, offsets, tokens, s)
            del flat
    return tokens, lengths, frac, n_truncated
