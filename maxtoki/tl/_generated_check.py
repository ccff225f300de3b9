"""Checks of generated cells in :func:`maxtoki.tl.evaluate` (private).

Every check reads cells the same way: each cell's top ``max_genes`` genes, their ranks turned into
typical log-normalised expression (:mod:`._expression`). Real cells are the training cells.

- Classifier two-sample tests (the headline): a random forest, 5-fold stratified
  cross-validation, tells ``n`` cells of one set from ``n`` real cells; out-of-fold AUC, the
  mean over ``N_DRAWS`` draws of both sides and the folds (``classifier_auc_sd``: their
  spread). Rows
  ``real_vs_generated`` and its controls ``real_vs_real`` (two disjoint halves of the real
  cells: ≈ 0.5, spread about ``sqrt((2n + 1) / 12) / n``), ``real_vs_random_genes`` (as many
  random vocabulary genes as a generated cell: ≈ 1) and ``real_vs_shuffled_ranks`` (real cells'
  genes with their ranks permuted). The forest was chosen over gradient boosting and logistic
  regression on the controls alone: gradient boosting missed random genes (AUC 0.92), logistic
  regression missed shuffled ranks (0.56). The side drawn from the real cells moves one draw's
  AUC: on one demo model's cells, 0.58–0.75 over 17 draws (real vs real 0.43–0.60).
- Cell type: logistic regression trained on real cells assigns each generated cell a type; the
  share equal to its context's type (``cell_type_generated``), beside its cross-validated
  accuracy on real cells (``cell_type_real_cv``).
- Age read from generated cells: SGD (the linear baseline's pipeline) and ridge regression (the
  same linear model fitted exactly) trained on real cells, and the model when
  :func:`maxtoki.tl.evaluate` passes its reading, against the expected age (last context age +
  timelapse) and, as read age minus context age, against the timelapse; each linear reader's
  donor-held-out correlation on real cells is its reference (``age_sgd_real_cells``,
  ``age_ridge_real_cells``). On these features (top genes, mostly zeros) SGD's optimiser
  wanders: its reference swings with the draw (r −0.01 to 0.48 on one demo's cells, where ridge
  reads 0.87–0.89), so ridge is the linear reader to trust. The
  ceiling of the timelapse rows (``age_*_vs_timelapse_real``): what a generator that wrote real
  cells of the requested age would score. Each generated cell is stood in for by the real cell
  of its type whose age is nearest its expected age (from the half of the real cells the
  readers are not fitted on; the model reads it against contexts of other donors), and that
  cell's read age minus the context age is correlated with its own age minus the context age.
- Doublets (kept for comparison): gradient boosting on real cells vs summed pairs of real cells;
  the share of generated, random-gene and shuffled-rank cells it calls singlets. It calls most
  random-gene and shuffled-rank cells singlets too: it cannot tell them from real cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import resolve_modality
from .._keys import read_tokens, token_keys
from .._stats import pearson_r
from ._baselines import METRIC_COLUMNS, ridge_regressor, sgd_regressor
from ._expression import rank_expression_map, reconstruct_expression
from ._utils import raw_counts, tokenize_like, vocab_columns

N_FOLDS = 5
#: Draws of each two-sample test, averaged: one draw's real side alone moved one model's AUC from
#: 0.64 to 0.75 (docs/benchmarks.md, "Checking generated cells"); their spread is
#: ``classifier_auc_sd``.
N_DRAWS = 5
N_TREES = 100  # per forest: five forests of 100 cost half as much again as one of 300


@dataclass
class _Sets:
    """Features (cells × genes) of the real cells and of every set compared with them."""

    real: np.ndarray  # real cells, side A of the two-sample tests (and training set)
    real_rows: np.ndarray  # their rows in adata
    other_real: np.ndarray  # disjoint real cells: side B of real vs real
    other_rows: np.ndarray  # their rows in adata
    generated: np.ndarray
    random_genes: np.ndarray
    shuffled_ranks: np.ndarray


def generated_check(
    adata,
    tokens,
    ctype,
    ages,
    donors,
    train,
    generated,
    vocab,
    max_genes,
    gen,
    mod,
    pairs,
    tokens_key,
    cell_type_key: str,
    model_ages: Callable[..., np.ndarray | None] | None = None,
    n_real: int = 2000,
) -> list[dict]:
    """The rows of split ``generated`` (see the module docstring).

    ``model_ages(tokens, obs)``: the model's age of each generated cell (or ``None``);
    ``model_ages(rows=rows, gen=gen)``: of the real cells ``rows`` of ``adata``.
    """
    gdata, g_tokens = generated_tokens(generated, mod, vocab, tokens_key)
    if max_genes is None:
        max_genes = int((g_tokens != 0).sum(1).max()) - 2
    pool = np.flatnonzero(train)
    if len(pool) < 4:
        raise ValueError(
            f"the generated-cell checks need at least 4 training cells, got {len(pool)}"
        )
    pool = gen.permutation(pool)[: min(n_real, len(pool))]
    half = len(pool) // 2
    emap = rank_expression_map(adata, tokens, vocab, tokens_key)
    cols = vocab_columns(adata, vocab, tokens_key)

    def features(tok):  # the same representation for every cell: top genes, rank → expression
        return reconstruct_expression(_truncate(tok, max_genes), emap, cols, vocab).toarray()

    # drawn before anything that depends on the generated cells: the rows of real cells alone
    # (real vs real, cell type and age of real cells) do not depend on the model
    seed = int(gen.integers(2**31 - 1))
    shuffled = _shuffle_ranks(_truncate(tokens[pool[half:]], max_genes), gen)
    n_gen = np.minimum((g_tokens != 0).sum(1) - 2, max_genes)  # the generated cells' lengths
    random_genes = _random_gene_cells(
        n_gen, cols.token_ids, vocab, max_genes, np.random.default_rng([seed, 1])
    )
    sets = _Sets(
        real=features(tokens[pool[:half]]),
        real_rows=pool[:half],
        other_real=features(tokens[pool[half:]]),
        other_rows=pool[half:],
        generated=features(g_tokens),
        random_genes=features(random_genes),
        shuffled_ranks=features(shuffled),
    )
    rows = _two_sample_rows(sets, gen, seed)
    rows += _cell_type_rows(sets, ctype, gdata, cell_type_key, seed)
    stand_in = _stand_ins(ctype[sets.other_rows], ages[sets.other_rows], gdata, cell_type_key, seed)
    rows += _age_rows(sets, ages, donors, gdata, g_tokens, model_ages, seed, stand_in)
    rows += _doublet_rows(adata, sets, ctype, pool, pairs, vocab, tokens_key, features, gen, seed)
    return rows


def generated_tokens(generated, mod, vocab, tokens_key) -> tuple:
    """The generated AnnData and its token matrix (the key mt.tl.generate wrote, if only one)."""
    gdata, _ = resolve_modality(generated, mod)
    own = token_keys(gdata)
    g_key = tokens_key if tokens_key in gdata.obsm or len(own) != 1 else own[0]
    return gdata, read_tokens(gdata, g_key, vocab).matrix


def _random_gene_cells(n_genes, present, vocab, max_genes, gen) -> np.ndarray:
    """Negative control: as many random vocabulary genes as each generated cell has."""
    out = np.zeros((len(n_genes), max_genes + 2), dtype=np.int64)
    for i, n in enumerate(n_genes):
        n = int(min(n, len(present)))
        out[i, 0], out[i, n + 1] = vocab.bos_id, vocab.eos_id
        out[i, 1 : n + 1] = gen.choice(present, n, replace=False)
    return out


def _shuffle_ranks(tokens: np.ndarray, gen) -> np.ndarray:
    """Negative control: each cell's genes kept, their order (ranks) permuted."""
    out = tokens.copy()
    for row in out:
        n = int((row != 0).sum())
        row[1 : n - 1] = gen.permutation(row[1 : n - 1])
    return out


def _two_sample_rows(sets: _Sets, gen, seed: int) -> list[dict]:
    """Cross-validated AUC of real (side A) vs each set, ``n`` cells per side."""
    candidates = {
        "real_vs_generated": sets.generated,
        "real_vs_real": sets.other_real,
        "real_vs_random_genes": sets.random_genes,
        "real_vs_shuffled_ranks": sets.shuffled_ranks,
    }
    n = min(len(sets.real), *(len(v) for v in candidates.values()))
    scores = {method: [] for method in candidates}
    for draw in range(N_DRAWS):  # each draw: new cells of both sides, new folds
        a = sets.real[gen.choice(len(sets.real), n, replace=False)]
        for method, other in candidates.items():
            b = other[gen.choice(len(other), n, replace=False)]
            scores[method].append(two_sample_auc(a, b, seed + draw))
    rows = []
    for method, pairs in scores.items():
        auc, acc = np.asarray(pairs, dtype=float).T
        rows.append(_row(method, n, classifier_auc=float(np.mean(auc)),
                         classifier_auc_sd=float(np.std(auc, ddof=1)),
                         classifier_accuracy=float(np.mean(acc))))  # fmt: skip
    return rows


def two_sample_auc(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    """Out-of-fold AUC and accuracy of a classifier telling rows of ``a`` from rows of ``b``."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = int(min(N_FOLDS, len(a), len(b)))
    if folds < 2:
        return np.nan, np.nan
    X = np.vstack([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(_classifier(seed), X, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba)), float(np.mean((proba > 0.5) == y))


def _classifier(seed: int):
    """The two-sample tests' classifier: a random forest (chosen on the controls, see docs)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=N_TREES, random_state=seed, n_jobs=1)


def _cell_type_rows(sets: _Sets, ctype, gdata, cell_type_key: str, seed: int) -> list[dict]:
    """Cross-validated type accuracy on real cells; share of generated cells of their type."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = ctype[sets.real_rows]
    values, counts = np.unique(labels, return_counts=True)
    n_real = len(labels)
    if len(values) < 2 or cell_type_key not in gdata.obs:
        logg.warning(
            f"generated-cell check: no cell-type rows (needs 2+ cell types and "
            f"obs[{cell_type_key!r}] in the generated cells)"
        )
        return []

    def classifier():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))

    folds = int(min(N_FOLDS, counts.min()))
    real_acc = np.nan
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        called_real = cross_val_predict(classifier(), sets.real, labels, cv=cv)
        real_acc = float(np.mean(called_real == labels))
    called = classifier().fit(sets.real, labels).predict(sets.generated)
    wanted = gdata.obs[cell_type_key].astype(str).to_numpy()
    return [
        _row("cell_type_real_cv", n_real, cell_type_match=real_acc),
        _row("cell_type_generated", len(wanted), cell_type_match=float(np.mean(called == wanted))),
    ]


def _age_rows(sets: _Sets, ages, donors, gdata, g_tokens, model_ages, seed, stand_in) -> list:
    """Ages read by SGD (and the model) from generated cells and from their real stand-ins.

    ``stand_in``: each generated cell's stand-in, a position in ``sets.other_rows`` (-1: none).
    """
    from sklearn.model_selection import GroupKFold, cross_val_predict

    need = ("expected_age_months", "context_age_months", "timelapse_months")
    if not set(need) <= set(gdata.obs):
        logg.warning(f"generated-cell check: no age rows (needs obs columns {list(need)})")
        return []
    obs = gdata.obs
    y = ages[sets.real_rows]
    groups = donors[sets.real_rows]
    rows = []
    folds = int(min(N_FOLDS, len(np.unique(groups))))
    readers = {"sgd": lambda: sgd_regressor(seed), "ridge": ridge_regressor}
    if folds >= 2:  # reference: each reader's age of held-out donors' real cells, same features
        for name, reader in readers.items():
            pred = cross_val_predict(reader(), sets.real, y, cv=GroupKFold(folds), groups=groups)
            rows.append(_correlation_row(f"age_{name}_real_cells", pred, y))
    expected = obs["expected_age_months"].to_numpy(float)
    context_age = obs["context_age_months"].to_numpy(float)
    timelapse = obs["timelapse_months"].to_numpy(float)
    has = stand_in >= 0
    real_rows = sets.other_rows[stand_in[has]]
    real_timelapse = np.full(len(obs), np.nan)
    real_timelapse[has] = ages[real_rows] - context_age[has]
    read = {}
    for name, reader in readers.items():
        fitted = reader().fit(sets.real, y)
        real = fitted.predict(sets.other_real[stand_in[has]]) if has.any() else None
        read[name] = (fitted.predict(sets.generated), _filled(has, real))
    if model_ages is not None:
        model_read = model_ages(g_tokens, obs)
        if model_read is not None:
            # own draws of contexts: the rows after these keep their draws
            real_read = model_ages(rows=real_rows, gen=np.random.default_rng(seed))
            read["maxtoki"] = (model_read, _filled(has, real_read))
    for name, (age, real_age) in read.items():
        rows.append(_correlation_row(f"age_{name}_vs_expected_age", age, expected))
        rows.append(_correlation_row(f"age_{name}_vs_timelapse", age - context_age, timelapse))
        rows.append(_correlation_row(
            f"age_{name}_vs_timelapse_real", real_age - context_age, real_timelapse
        ))  # fmt: skip
    return rows


def _stand_ins(real_type, real_age, gdata, cell_type_key: str, seed: int) -> np.ndarray:
    """For each generated cell, a real cell of its type nearest its expected age (-1: none).

    Cells tied at the nearest age (a donor's cells) are drawn among at random.
    """
    gen = np.random.default_rng(seed)
    obs = gdata.obs
    out = np.full(len(obs), -1, dtype=np.int64)
    if cell_type_key not in obs or "expected_age_months" not in obs:
        return out
    g_type = obs[cell_type_key].astype(str).to_numpy()
    expected = obs["expected_age_months"].to_numpy(float)
    real_type = real_type.astype(str)
    for i, (t, e) in enumerate(zip(g_type, expected, strict=True)):
        cand = np.flatnonzero(real_type == t)
        if len(cand) and np.isfinite(e):
            gap = np.abs(real_age[cand] - e)
            out[i] = gen.choice(cand[gap == gap.min()])
    return out


def _filled(has: np.ndarray, values) -> np.ndarray:
    """``values`` at the positions where ``has``, ``nan`` elsewhere."""
    out = np.full(len(has), np.nan)
    if values is not None:
        out[has] = values
    return out


def _correlation_row(method: str, read: np.ndarray, target: np.ndarray) -> dict:
    """Pearson and Spearman r of ``read`` against ``target`` (``nan`` when either is constant)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(read) & np.isfinite(target)
    r = pearson_r(read[ok], target[ok])  # NaN below 3 pairs or where either side is constant
    if np.isnan(r):
        return _row(method, int(ok.sum()))
    spearman = float(spearmanr(read[ok], target[ok])[0])
    return _row(method, int(ok.sum()), pearson_r=r, spearman_r=spearman)


def _doublet_rows(
    adata, sets: _Sets, ctype, pool, pairs, vocab, tokens_key, features, gen, seed
) -> list[dict]:
    """A doublet detector (real vs summed pairs of real cells) applied to each set."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    first = gen.choice(pool, len(sets.real))
    if pairs == "same_type":
        by_type = pd.Series(pool).groupby(ctype[pool]).agg(list)
        second = np.array([gen.choice(by_type[ctype[i]]) for i in first])
    else:
        second = gen.choice(pool, len(sets.real))
    counts = raw_counts(adata, tokens_key)
    doublets = features(tokenize_like(counts[first] + counts[second], adata, vocab, tokens_key))
    X = np.vstack([sets.real, doublets])
    y = np.r_[np.zeros(len(sets.real)), np.ones(len(doublets))]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    clf = HistGradientBoostingClassifier(random_state=seed).fit(Xtr, ytr)
    acc = float(clf.score(Xte, yte))
    rows = []
    for method, feats in (
        ("doublet_classifier", sets.generated),
        ("doublet_classifier_random_genes", sets.random_genes),
        ("doublet_classifier_shuffled_ranks", sets.shuffled_ranks),
    ):
        singlets = float(np.mean(clf.predict(feats) == 0))
        rows.append(_row(method, len(feats), singlet_fraction=singlets, classifier_accuracy=acc))
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
