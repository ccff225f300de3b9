"""Baselines and metrics of :func:`maxtoki.tl.evaluate` (private).

Baselines: naive, SGDRegressor, SGDRegressor plus the reference offset, ridge regression (the
same linear model fitted exactly) and ridge on the genes the model reads. Metrics: errors over
cells and donors, with bootstrap intervals on the median errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._stats import pearson_r
from ._expression import log_normalised

if TYPE_CHECKING:
    from anndata import AnnData

METRIC_COLUMNS = (
    "split",
    "method",
    "n_cells",
    "n_donors",
    "median_abs_error_months",
    "pearson_r",
    "bias_months",
    "donor_median_abs_error_months",
    "donor_pearson_r",
    "singlet_fraction",
    "classifier_accuracy",
    "median_abs_error_ci_low_months",
    "median_abs_error_ci_high_months",
    "donor_median_abs_error_ci_low_months",
    "donor_median_abs_error_ci_high_months",
    "classifier_auc",
    "classifier_auc_sd",
    "cell_type_match",
    "spearman_r",
)


def _mode(values: np.ndarray) -> float:
    vals, counts = np.unique(values, return_counts=True)
    return float(vals[np.argmax(counts)])  # ties: the youngest of the most common ages


def naive(ctype: np.ndarray, sex: np.ndarray, ages: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Most common training age of the cell's type and sex (else of its sex, else overall)."""
    df = pd.DataFrame({"t": ctype[train], "s": sex[train], "a": ages[train]})
    by_ts: Mapping = {k: _mode(g["a"].to_numpy()) for k, g in df.groupby(["t", "s"])}
    by_s: Mapping = {k: _mode(g["a"].to_numpy()) for k, g in df.groupby("s")}
    overall = _mode(df["a"].to_numpy())
    return np.array(
        [by_ts.get((t, s), by_s.get(s, overall)) for t, s in zip(ctype, sex, strict=True)],
        dtype=float,
    )


#: Ridge penalties searched by leave-one-out by ``ridge`` and ``ridge_top_genes``.
RIDGE_ALPHAS = np.logspace(-1, 5, 13)
#: ``ridge`` and ``ridge_top_genes`` fit on at most this many training cells (evenly spaced): the
#: leave-one-out search costs ``n² × genes``.
RIDGE_MAX_TRAIN = 5000


def linear_baselines(
    adata: AnnData,
    tokens_key: str,
    ages: np.ndarray,
    train: np.ndarray,
    gen,
    view: Callable[[np.ndarray], sp.csr_matrix],
    max_train: int = 20000,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``sgd``, ``ridge`` and ``ridge_top_genes``, fitted on ``train`` cells.

    ``sgd`` is the paper's SGDRegressor on standardised log-normalised expression
    (:func:`sgd_regressor`); ``ridge`` is the same linear model fitted exactly, its penalty chosen
    by leave-one-out over :data:`RIDGE_ALPHAS` (:func:`ridge_regressor`), on at most
    :data:`RIDGE_MAX_TRAIN` of SGD's cells; ``ridge_top_genes`` is ridge on ``view(rows)``, the
    genes the model reads of each cell (:func:`top_gene_presence`), centred, not scaled. Returns
    ``predict(rows)``: each baseline's ages over all cells, ``nan`` outside ``rows``.
    """
    fit_rows = np.flatnonzero(train)
    if len(fit_rows) > max_train:
        fit_rows = np.sort(gen.choice(fit_rows, max_train, replace=False))
    X = log_normalised(adata, tokens_key, fit_rows).toarray()
    y = ages[fit_rows]
    models = {"sgd": sgd_regressor(int(gen.integers(2**31 - 1))).fit(X, y)}
    ridge_rows = np.unique(np.linspace(0, len(fit_rows) - 1, RIDGE_MAX_TRAIN).astype(int))
    models["ridge"] = ridge_regressor().fit(X[ridge_rows], y[ridge_rows])
    seen = view(fit_rows[ridge_rows])
    genes = np.unique(seen.indices)  # genes no training cell shows get no weight
    top_genes = ridge_regressor(scale=False).fit(seen[:, genes].toarray(), y[ridge_rows])

    def predict(rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: np.full(adata.n_obs, np.nan) for name in (*models, "ridge_top_genes")}
        if len(rows):
            features = log_normalised(adata, tokens_key, rows).toarray()
            for name, model in models.items():
                out[name][rows] = model.predict(features)
            out["ridge_top_genes"][rows] = top_genes.predict(view(rows)[:, genes].toarray())
        return out

    return predict


def top_gene_presence(
    tokens: np.ndarray, rows: np.ndarray, is_gene: np.ndarray, max_genes: int | None
) -> sp.csr_matrix:
    """1 where a gene is among a cell's first ``max_genes`` gene tokens: what the model reads.

    ``tokens``: rank-ordered token matrix; ``is_gene``: which token ids are genes. Returns
    ``(len(rows), len(is_gene))``, columns indexed by token id.
    """
    cells = np.asarray(tokens[rows], dtype=np.int64)
    genes = is_gene[cells]
    if max_genes is not None:
        genes &= np.cumsum(genes, axis=1) <= max_genes
    row, col = np.nonzero(genes)
    values = np.ones(len(row))
    return sp.csr_matrix((values, (row, cells[row, col])), shape=(len(cells), len(is_gene)))


def sgd_regressor(seed: int):
    """The ``sgd`` baseline's unfitted model: SGDRegressor on standardised features and ages."""
    from sklearn.linear_model import SGDRegressor

    # the default inverse-scaling step size diverges on ~1,000 standardised genes
    return _standardised(
        SGDRegressor(
            random_state=seed, alpha=1e-3, max_iter=2000, tol=1e-4, learning_rate="adaptive",
            eta0=1e-3,
        )
    )  # fmt: skip


def ridge_regressor(scale: bool = True):
    """The ``ridge`` baseline's unfitted model: RidgeCV on standardised features and ages.

    ``scale=False`` centres the features without scaling them (0/1 features: a rare gene
    scaled to unit variance would take a large weight).
    """
    from sklearn.linear_model import RidgeCV

    return _standardised(RidgeCV(alphas=RIDGE_ALPHAS), scale)


def _standardised(regressor, scale: bool = True):
    """``regressor`` on centred (and, with ``scale``, scaled) features, standardised ages."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(
        regressor=make_pipeline(StandardScaler(with_std=scale), regressor),
        transformer=StandardScaler(),
    )


def reference_offset(residual: np.ndarray, context_rows: np.ndarray) -> np.ndarray:
    """Each query's mean ``residual`` over its distinct context cells.

    ``residual``: true minus predicted age over all cells; ``context_rows``: ``(n_queries, …)``
    rows of the cells in each query's contexts.
    """
    flat = context_rows.reshape(len(context_rows), -1)
    return np.array([residual[np.unique(rows)].mean() for rows in flat], dtype=float)


def metrics(
    split: str,
    method: str,
    pred: np.ndarray,
    truth: np.ndarray,
    unit: np.ndarray | None,
    donors: np.ndarray,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """A table row, and the absolute errors of the cells and of the donor units.

    ``unit``: each cell's donor unit (donor and cell type), whose cells' predictions are
    averaged for the donor metrics; ``None`` (no donors known) leaves them ``nan``.
    """
    err = pred - truth
    unit_err, unit_pred, unit_truth = np.zeros(0), np.zeros(0), np.zeros(0)
    if unit is not None:
        df = pd.DataFrame({"u": unit, "p": pred, "t": truth}).groupby("u").mean()
        unit_pred, unit_truth = df["p"].to_numpy(), df["t"].to_numpy()
        unit_err = np.abs(unit_pred - unit_truth)
    row = {
        "split": split,
        "method": method,
        "n_cells": len(pred),
        "n_donors": len(np.unique(donors)),
        "median_abs_error_months": float(np.median(np.abs(err))),
        "pearson_r": pearson_r(pred, truth),
        "bias_months": float(np.mean(err)),
        "donor_median_abs_error_months": float(np.median(unit_err)) if len(unit_err) else np.nan,
        "donor_pearson_r": pearson_r(unit_pred, unit_truth),
        "singlet_fraction": np.nan,
        "classifier_accuracy": np.nan,
    }
    return row, np.abs(err), unit_err


def median_ci(
    values: np.ndarray, n_boot: int, gen: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (``nan`` when empty)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.nan, np.nan
    medians = np.empty(n_boot)
    chunk = max(1, 2_000_000 // len(values))  # bounded memory for large splits
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        draws = values[gen.integers(len(values), size=(n, len(values)))]
        medians[start : start + n] = np.median(draws, axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(medians, [tail, 100 - tail])
    return float(lo), float(hi)
