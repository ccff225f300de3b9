"""Baselines and metrics of :func:`maxtoki.tl.evaluate` (private): naive, SGDRegressor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

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


def sgd(
    adata: AnnData,
    tokens_key: str,
    ages: np.ndarray,
    train: np.ndarray,
    targets: np.ndarray,
    gen,
    max_train: int = 20000,
) -> np.ndarray:
    """SGDRegressor on standardised log-normalised expression; predictions at ``targets``."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.full(adata.n_obs, np.nan)
    if len(targets) == 0:
        return out
    fit_rows = np.flatnonzero(train)
    if len(fit_rows) > max_train:
        fit_rows = np.sort(gen.choice(fit_rows, max_train, replace=False))
    seed = int(gen.integers(2**31 - 1))
    model = TransformedTargetRegressor(
        regressor=make_pipeline(
            StandardScaler(with_mean=True),
            # the default inverse-scaling step size diverges on ~1,000 standardised genes
            SGDRegressor(
                random_state=seed,
                alpha=1e-3,
                max_iter=2000,
                tol=1e-4,
                learning_rate="adaptive",
                eta0=1e-3,
            ),
        ),
        transformer=StandardScaler(),
    )
    model.fit(log_normalised(adata, tokens_key, fit_rows).toarray(), ages[fit_rows])
    out[targets] = model.predict(log_normalised(adata, tokens_key, targets).toarray())
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def metrics(
    split: str,
    method: str,
    pred: np.ndarray,
    truth: np.ndarray,
    unit: np.ndarray,
    donors: np.ndarray,
) -> dict:
    err = pred - truth
    df = pd.DataFrame({"u": unit, "p": pred, "t": truth}).groupby("u").mean()
    return {
        "split": split,
        "method": method,
        "n_cells": len(pred),
        "n_donors": len(np.unique(donors)),
        "median_abs_error_months": float(np.median(np.abs(err))),
        "pearson_r": _pearson(pred, truth),
        "bias_months": float(np.mean(err)),
        "donor_median_abs_error_months": float(np.median(np.abs(df["p"] - df["t"]))),
        "donor_pearson_r": _pearson(df["p"].to_numpy(), df["t"].to_numpy()),
        "singlet_fraction": np.nan,
        "classifier_accuracy": np.nan,
    }
