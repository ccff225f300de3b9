"""Tokens in ``obsm`` → gene IDs per cell (``mt.get.tokens``)."""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._anndata import check_vocab, resolve_modality
from .._docs import inject_docs
from .._keys import TOKENS_KEY, TokenSlots, made_with
from .._vocab import SPECIAL_TOKENS

if TYPE_CHECKING:
    from .._vocab import GeneVocab

#: A versioned Ensembl gene ID (``'ENSG00000141510.17'``), as ``mt.pp.map_gene_ids`` reads them.
_VERSIONED_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{11})\.\d+$")


@inject_docs
def tokens(
    adata: Any,
    *,
    tokens_key: str = "maxtoki_tokens",
    vocab: GeneVocab | None = None,
    gene_symbols: str | None = None,
    max_genes: int | None = None,
    special_tokens: bool = False,
    output: Literal["list", "wide", "long"] = "list",
    mod: str = "rna",
    key: str | None = None,
) -> list[np.ndarray] | pd.DataFrame:
    """Decode the tokens written by :func:`maxtoki.pp.tokenize` back to gene IDs, per cell.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) with ``obsm[tokens_key]``.
    {tokens_key}
    vocab
        Vocabulary to decode with; must be the one the tokens were made with (checked by its
        hash). ``None`` decodes with the AnnData's own genes (the token id of each gene,
        ``var['maxtoki_token_id']`` for the default ``tokens_key``, and the gene ID column
        recorded in ``uns[tokens_key]``).
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
    {mod}
    key
        Deprecated alias of ``tokens_key`` (emits a :class:`FutureWarning`; removed in the next
        release).

    Returns
    -------
    A list of object arrays (``output="list"``) or a :class:`pandas.DataFrame`.
    """
    if key is not None:
        tokens_key = _deprecated_key(key, tokens_key)
    if output not in ("list", "wide", "long"):
        raise ValueError(f"output must be 'list', 'wide' or 'long', got {output!r}")
    if max_genes is not None and (not isinstance(max_genes, (int, np.integer)) or max_genes < 1):
        raise ValueError(f"max_genes must be a positive integer or None, got {max_genes!r}")
    if vocab is not None:
        check_vocab(vocab)
    ad, _ = resolve_modality(adata, mod)
    if tokens_key not in ad.obsm:
        raise ValueError(f"obsm[{tokens_key!r}] not found; run `mt.pp.tokenize` first")
    info = ad.uns.get(tokens_key, {})
    if not isinstance(info, dict):
        info = {}
    slots = TokenSlots.for_tokens_key(tokens_key, info)
    table = _decode_table(ad, tokens_key, info, vocab, gene_symbols, slots.token_id)

    toks = np.asarray(ad.obsm[tokens_key])
    n_key = slots.n_tokens
    lengths = (
        np.asarray(ad.obs[n_key], dtype=np.int64)
        if n_key in ad.obs.columns
        else (toks != 0).sum(axis=1)
    )
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
    return pd.DataFrame(
        {
            "obs_name": pd.Categorical(
                np.repeat(ad.obs_names.to_numpy(), n), categories=ad.obs_names.unique()
            ),
            "rank": np.concatenate([np.arange(1, k + 1) for k in n]) if len(n) else flat,
            "token_id": flat,
            "gene": table[0][flat],
        }
    )


def _deprecated_key(key: str, tokens_key: str) -> str:
    """``tokens_key`` given as the deprecated ``key=``: warn, and refuse two different keys."""
    if tokens_key not in (key, TOKENS_KEY):
        raise ValueError(
            f"pass the tokens' obsm key once, as `tokens_key` (got key={key!r} and "
            f"tokens_key={tokens_key!r})"
        )
    warnings.warn(
        "mt.get.tokens(key=...) is deprecated and will be removed in the next release; pass "
        "`tokens_key=` instead",
        FutureWarning,
        stacklevel=3,
    )
    return key


def _strip_version(gene_id: str) -> str:
    """``'ENSG00000141510.17'`` → ``'ENSG00000141510'``; anything else is returned unchanged."""
    match = _VERSIONED_ENSEMBL.match(gene_id)
    return match.group(1) if match else gene_id


def _decode_table(
    ad, key, info, vocab, gene_symbols, tid_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """(names per token id as an object array, bool: is a gene token)."""
    symbols = None
    if gene_symbols is not None:
        if gene_symbols not in ad.var.columns:
            raise ValueError(
                f"var has no column {gene_symbols!r} (columns: {list(ad.var.columns)}); pass a "
                "var column of gene names as `gene_symbols`, or None for gene IDs"
            )
        symbols = ad.var[gene_symbols].astype(str).to_numpy()
    if vocab is not None:
        h = info.get("vocab_hash")
        if h is not None and not made_with(info, vocab):
            raise ValueError(
                f"tokens in adata were made with vocabulary {h}, this one is {vocab.hash}; "
                "decode with the vocabulary used by mt.pp.tokenize"
            )
        names = np.array(vocab.tokens, dtype=object)
        is_gene = vocab.is_gene_token
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
    size = int(max(tid.max(initial=0), np.asarray(ad.obsm[key]).max(initial=0))) + 1
    names = np.full(size, None, dtype=object)
    names[:4] = list(SPECIAL_TOKENS)[: min(4, size)]
    is_gene = np.zeros(size, dtype=bool)
    ok = tid >= 0
    for t, g in zip(tid[ok][::-1], gene[ok][::-1], strict=True):  # first gene wins for duplicates
        names[t] = g if symbols is not None else _strip_version(g)
    is_gene[tid[ok]] = True
    return names, is_gene
