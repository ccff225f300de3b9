"""Expression from ranks: a typical log-normalised value of each gene at each rank (private).

Generated cells are token lists; to embed and plot them with real cells, every real reference
cell's top-ranked genes are binned by rank (log₂ bins: rank 1, 2–3, 4–7, …) and, for each gene
and bin, the median log-normalised expression (``normalize_total`` to 10,000 then ``log1p``) of
that gene at that rank is recorded; a generated gene at rank ``r`` gets that typical value (or,
for a gene never seen in that bin, the median over all genes in the bin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._utils import VocabColumns, raw_counts, vocab_columns

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab

_N_RANK_BINS = 16


def log_normalised(adata: AnnData, tokens_key: str, rows: np.ndarray | None = None):
    """``log1p(normalize_total(X, 1e4))`` of raw counts as CSR (all genes count in the total)."""
    import scipy.sparse as sp

    X = raw_counts(adata, tokens_key)
    X = X if rows is None else X[rows]
    X = sp.csr_matrix(X, dtype=np.float64)
    total = np.asarray(X.sum(axis=1)).ravel()
    X = sp.diags(1e4 / np.maximum(total, 1e-12)) @ X
    X.data = np.log1p(X.data)
    return X.tocsr()


def _rank_bin(n: int) -> np.ndarray:
    return np.minimum(np.floor(np.log2(np.arange(n) + 1)).astype(np.int64), _N_RANK_BINS - 1)


def rank_expression_map(
    adata: AnnData,
    tokens: np.ndarray,
    vocab: GeneVocab,
    tokens_key: str,
    *,
    max_cells: int = 5000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Typical log-normalised expression of each gene at each log₂ rank bin in real cells.

    Returns ``{'table': (vocab, bins) float with nan where unseen, 'fallback': (bins,)}``.
    """
    rows = np.arange(adata.n_obs)
    if len(rows) > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))
    cols = vocab_columns(adata, vocab, tokens_key)
    X = log_normalised(adata, tokens_key, rows)
    is_gene = vocab.is_gene_token
    cell_idx, token, rank = [], [], []
    for r, row in zip(rows, tokens[rows], strict=True):
        genes = row[is_gene[row]]
        cell_idx.append(np.full(len(genes), r))
        token.append(genes)
        rank.append(np.arange(len(genes)))
    cell_local = np.repeat(np.arange(len(rows)), [len(t) for t in token])
    token = np.concatenate(token).astype(np.int64)
    rank = np.concatenate(rank)
    col = cols.column_of[token]
    keep = col >= 0
    values = np.asarray(X[cell_local[keep], cols.var_rows[col[keep]]]).ravel()
    bins = np.minimum(np.floor(np.log2(rank[keep] + 1)).astype(np.int64), _N_RANK_BINS - 1)
    df = pd.DataFrame({"t": token[keep], "b": bins, "v": values})
    med = df.groupby(["t", "b"])["v"].median()
    table = np.full((len(vocab), _N_RANK_BINS), np.nan)
    table[med.index.get_level_values(0), med.index.get_level_values(1)] = med.to_numpy()
    fallback = (
        df.groupby("b")["v"].median().reindex(range(_N_RANK_BINS)).ffill().fillna(0.0).to_numpy()
    )
    return {"table": table, "fallback": fallback}


def reconstruct_expression(
    tokens: np.ndarray, expression_map: dict[str, np.ndarray], cols: VocabColumns, vocab: GeneVocab
):
    """Log-normalised expression (CSR, cells × ``cols`` genes) of a token matrix via the map."""
    import scipy.sparse as sp

    is_gene = vocab.is_gene_token
    data, indices, indptr = [], [], [0]
    for row in tokens:
        genes = row[is_gene[row]]
        b = _rank_bin(len(genes))
        v = expression_map["table"][genes, b]
        v = np.where(np.isnan(v), expression_map["fallback"][b], v)
        c = cols.column_of[genes]
        keep = c >= 0
        data.append(v[keep])
        indices.append(c[keep])
        indptr.append(indptr[-1] + int(keep.sum()))
    X = sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0),
            np.concatenate(indices) if indices else np.zeros(0, int),
            indptr,
        ),
        shape=(len(tokens), len(cols.token_ids)),
        dtype=np.float32,
    )
    X.sort_indices()
    return X
