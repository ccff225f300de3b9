"""Checks of generated cells in :func:`maxtoki.tl.evaluate` (private): doublets, two-sample."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._anndata import resolve_modality
from .._keys import read_tokens, token_keys
from ._baselines import METRIC_COLUMNS
from ._expression import rank_expression_map, reconstruct_expression
from ._utils import raw_counts, tokenize_like, vocab_columns


def generated_check(
    adata,
    tokens,
    ctype,
    generated,
    vocab,
    max_genes,
    gen,
    mod,
    pairs,
    tokens_key,
    n_real: int = 2000,
) -> list[dict]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score, train_test_split

    gdata, _ = resolve_modality(generated, mod)
    # generated cells keep the tokens mt.tl.generate wrote, whatever the real cells' key
    own = token_keys(gdata)
    g_key = tokens_key if tokens_key in gdata.obsm or len(own) != 1 else own[0]
    g_tokens = read_tokens(gdata, g_key, vocab).matrix
    cols = vocab_columns(adata, vocab, tokens_key)
    if max_genes is None:
        max_genes = int((g_tokens != 0).sum(1).max()) - 2
    real = np.sort(gen.choice(adata.n_obs, min(n_real, adata.n_obs), replace=False))
    # doublets: counts of two real cells summed, then tokenized like real cells
    first = gen.choice(adata.n_obs, len(real))
    if pairs == "same_type":
        by_type = pd.Series(np.arange(adata.n_obs)).groupby(ctype).indices
        second = np.array([gen.choice(by_type[ctype[i]]) for i in first])
    else:
        second = gen.choice(adata.n_obs, len(real))
    counts = raw_counts(adata, tokens_key)
    d_tokens = tokenize_like(counts[first] + counts[second], adata, vocab, tokens_key)
    # negative control: as many random vocabulary genes as each generated cell has
    n_gen = (g_tokens != 0).sum(1) - 2
    present = cols.token_ids
    control = np.zeros((len(n_gen), max_genes + 2), dtype=np.int64)
    for i, n in enumerate(np.minimum(n_gen, max_genes)):
        control[i, 0], control[i, n + 1] = vocab.bos_id, vocab.eos_id
        control[i, 1 : n + 1] = gen.choice(present, n, replace=False)

    emap = rank_expression_map(adata, tokens, vocab, tokens_key)

    def features(tok):  # the same representation for every cell: top genes, rank → expression
        return reconstruct_expression(_truncate(tok, max_genes), emap, cols, vocab).toarray()

    X = np.vstack([features(tokens[real]), features(d_tokens)])
    y = np.r_[np.zeros(len(real)), np.ones(len(first))]
    seed = int(gen.integers(2**31 - 1))
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    clf = HistGradientBoostingClassifier(random_state=seed).fit(Xtr, ytr)
    acc = float(clf.score(Xte, yte))
    g_feats, c_feats = features(g_tokens), features(control)
    rows = []
    for method, feats in (
        ("doublet_classifier", g_feats),
        ("doublet_classifier_random_genes", c_feats),
    ):
        singlets = float(np.mean(clf.predict(feats) == 0))
        rows.append(_row(method, len(feats), singlet_fraction=singlets, classifier_accuracy=acc))
    # two-sample test: can a classifier tell generated (or random) cells from real ones?
    for method, feats in (("real_vs_generated", g_feats), ("real_vs_random_genes", c_feats)):
        pick = gen.choice(len(real), min(len(real), len(feats)), replace=False)
        Xc = np.vstack([X[: len(real)][pick], feats])
        yc = np.r_[np.zeros(len(pick)), np.ones(len(feats))]
        folds = int(min(5, len(pick), len(feats)))
        score = np.nan
        if folds >= 2:
            score = float(
                cross_val_score(
                    HistGradientBoostingClassifier(random_state=seed), Xc, yc, cv=folds
                ).mean()
            )
        rows.append(_row(method, len(feats), classifier_accuracy=score))
    return rows


def _row(method: str, n: int, **values) -> dict:
    base = dict.fromkeys(METRIC_COLUMNS, np.nan)
    return base | {"split": "generated", "method": method, "n_cells": n, "n_donors": 0} | values


def _truncate(tokens: np.ndarray, max_genes: int) -> np.ndarray:
    """Keep ``<bos>``, the top ``max_genes`` genes and ``<eos>`` of each row."""
    out = np.zeros((len(tokens), max_genes + 2), dtype=np.int64)
    for i, row in enumerate(tokens):
        n = int((row != 0).sum())
        genes = row[1 : n - 1][:max_genes]
        out[i, 0] = row[0]
        out[i, 1 : 1 + len(genes)] = genes
        out[i, 1 + len(genes)] = row[n - 1]
    return out
