"""Tokens in ``obsm`` → gene IDs per cell (``mt.get.tokens``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._anndata import check_vocab, resolve_modality

if TYPE_CHECKING:
    from ..pp._vocab import GeneVocab


def tokens(
    adata: Any,
    *,
    key: str = "maxtoki_tokens",
    vocab: GeneVocab | None = None,
    gene_symbols: str | None = None,
    max_genes: int | None = None,
    special_tokens: bool = False,
    output: Literal["list", "wide", "long"] = "list",
    mod: str = "rna",
) -> list[np.ndarray] | pd.DataFrame:
    """Decode the tokens written by :func:`maxtoki.pp.tokenize` back to gene IDs, per cell.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) with ``obsm[key]``.
    key
        Key of the tokens (``key_added`` of :func:`~maxtoki.pp.tokenize`).
    vocab
        Vocabulary to decode with; must be the one the tokens were made with (checked by its
        hash). ``None`` decodes with the AnnData's own genes (``var['maxtoki_token_id']`` and the
        gene ID column recorded in ``uns[key]``).
    gene_symbols
        Column of ``var`` with gene symbols to return instead of IDs (genes decoded through
        ``vocab`` that are not in ``var`` keep their ID).
    max_genes
        Keep only the first (highest-ranked) ``max_genes`` genes of each cell.
    special_tokens
        Keep ``<bos>``/``<eos>`` (and any other non-gene token) as their strings.
    output
        ``"list"``: one array of gene IDs per cell, in rank order; ``"wide"``: a DataFrame with
        one row per cell (index ``obs_names``) and columns ``1, 2, …`` (rank), missing entries
        ``None``; ``"long"``: a tidy DataFrame with columns ``obs_name``, ``rank`` (1-based),
        ``token_id`` and ``gene``.
    mod
        Modality for MuData.

    Returns
    -------
    A list of object arrays (``output="list"``) or a :class:`pandas.DataFrame`.
    """
    if output not in ("list", "wide", "long"):
        raise ValueError(f"output must be 'list', 'wide' or 'long', got {output!r}")
    if max_genes is not None and (not isinstance(max_genes, (int, np.integer)) or max_genes < 1):
        raise ValueError(f"max_genes must be a positive integer or None, got {max_genes!r}")
    if vocab is not None:
        check_vocab(vocab)
    ad, _ = resolve_modality(adata, mod)
    if key not in ad.obsm:
        raise ValueError(f"obsm[{key!r}] not found; run `mt.pp.tokenize` first")
    info = ad.uns.get(key, {})
    if not isinstance(info, dict):
        info = {}
    table = _decode_table(ad, key, info, vocab, gene_symbols)

    toks = np.asarray(ad.obsm[key])
    n_key = _slot(info, "n_tokens", key)
    lengths = (np.asarray(ad.obs[n_key], dtype=np.int64) if n_key in ad.obs.columns
               else (toks != 0).sum(axis=1))
    cells = []
    for i in range(toks.shape[0]):
        row = toks[i, : lengths[i]].astype(np.int64)
        if not special_tokens:
            row = row[table[1][row]]
        if max_genes is not None:
            row = row[: max_genes + (0 if not special_tokens else 1)]
        cells.append(row)
    if output == "list":
        return [table[0][r] for r in cells]
    if output == "wide":
        width = max((len(r) for r in cells), default=0)
        arr = np.full((len(cells), width), None, dtype=object)
        for i, r in enumerate(cells):
            arr[i, : len(r)] = table[0][r]
        return pd.DataFrame(arr, index=ad.obs_names.copy(), columns=pd.RangeIndex(1, width + 1))
    n = np.array([len(r) for r in cells], dtype=np.int64)
    flat = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({
        "obs_name": pd.Categorical(np.repeat(ad.obs_names.to_numpy(), n),
                                   categories=ad.obs_names.unique()),
        "rank": np.concatenate([np.arange(1, k + 1) for k in n]) if len(n) else flat,
        "token_id": flat,
        "gene": table[0][flat],
    })


def _slot(info: dict, name: str, key: str) -> str:
    slots = info.get("slots")
    if isinstance(slots, dict) and name in slots:
        return str(slots[name])
    stem = key[: -len("_tokens")] if key.endswith("_tokens") else key
    return f"{stem}_{name}"


def _decode_table(ad, key, info, vocab, gene_symbols) -> tuple[np.ndarray, np.ndarray]:
    """(names per token id as an object array, bool: is a gene token)."""
    symbols = None
    if gene_symbols is not None:
        if gene_symbols not in ad.var.columns:
            raise ValueError(
                f"var has no column {gene_symbols!r} (columns: {list(ad.var.columns)}); pass a "
                "var column of gene names as `gene_symbols`, or None for gene IDs"
            )
        symbols = ad.var[gene_symbols].astype(str).to_numpy()
    tid_key = _slot(info, "token_id", key)
    if vocab is not None:
        from ..pp._tokenize import made_with

        h = info.get("vocab_hash")
        if h is not None and not made_with(info, vocab):
            raise ValueError(
                f"tokens in adata were made with vocabulary {h}, this one is {vocab.hash}; "
                "decode with the vocabulary used by mt.pp.tokenize"
            )
        names = np.array(vocab.tokens, dtype=object)
        is_gene = np.zeros(len(vocab), dtype=bool)
        is_gene[vocab.gene_token_ids] = True
        if symbols is not None and tid_key in ad.var.columns:
            tid = ad.var[tid_key].to_numpy()
            ok = tid >= 0
            names[tid[ok]] = symbols[ok]
        return names, is_gene
    if tid_key not in ad.var.columns:
        raise ValueError(
            f"var[{tid_key!r}] not found (needed to decode without a vocabulary); run "
            "`mt.pp.tokenize` first or pass vocab="
        )
    tid = ad.var[tid_key].to_numpy().astype(np.int64)
    id_key = str(info.get("gene_id_key", "ensembl_id"))
    if symbols is not None:
        gene = symbols
    elif id_key == "index" or id_key not in ad.var.columns:
        gene = ad.var_names.astype(str).to_numpy()
    else:
        gene = ad.var[id_key].astype(str).to_numpy()
    from ..pp._gene_ids import strip_version

    size = int(max(tid.max(initial=0), np.asarray(ad.obsm[key]).max(initial=0))) + 1
    names = np.full(size, None, dtype=object)
    names[:4] = ["<pad>", "<mask>", "<bos>", "<eos>"][: min(4, size)]
    is_gene = np.zeros(size, dtype=bool)
    ok = tid >= 0
    for t, g in zip(tid[ok][::-1], gene[ok][::-1], strict=True):  # first gene wins for duplicates
        names[t] = g if symbols is not None else strip_version(g)
    is_gene[tid[ok]] = True
    return names, is_gene
