"""mt.tl.evaluate's baselines and noise bars, checked against computations done by hand.

An untrained tiny model is enough here: the baselines (``sgd``, ``sgd_offset``, ``ridge``,
``ridge_top_genes``, ``naive``), the donor-level errors and the bootstrap intervals do not
depend on what the model predicts.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from bad_input import FAST, TINY  # the shared untrained tiny model and fast options
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import maxtoki as mt
import maxtoki.tl._evaluate as evaluate_module
from maxtoki.tl._baselines import median_ci

HELDOUT_AGES = (300.0, 500.0)


@functools.cache
def _small():
    from maxtoki.train import build_model

    adata = mt.datasets.aging_atlas(n_donors=16, n_cells_per_donor=12, n_genes=200, seed=0)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    return adata, vocab, build_model("tiny", vocab=vocab, overrides=TINY)


@pytest.fixture(scope="module")
def run():
    """The table of one evaluate run, with the contexts and the SGD settings it used."""
    adata, vocab, model = _small()
    contexts, sgd_params = [], []
    draw = evaluate_module.draw_contexts

    def spy_draw(ref, *args, **kwargs):
        out = draw(ref, *args, **kwargs)
        contexts.append(ref.rows[out])  # positions in the pool → rows of the AnnData
        return out

    class SpySGD(SGDRegressor):
        def fit(self, X, y, **kwargs):
            sgd_params.append(self.get_params())
            return super().fit(X, y, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_module, "draw_contexts", spy_draw)
        mp.setattr("sklearn.linear_model.SGDRegressor", SpySGD)
        data = adata.copy()
        table = mt.tl.evaluate(
            data, model=model, vocab=vocab, heldout_ages=HELDOUT_AGES, n_cells=None,
            n_contexts=3, n_context_cells=2, n_boot=400, **FAST,
        )  # fmt: skip
    assert len(sgd_params) == 1
    return adata, table, contexts, sgd_params[0]


def _design(adata):
    """Ages, the training mask, the splits and log-normalised expression, from scratch."""
    ages = adata.obs["age_months"].to_numpy(float)
    ref = (adata.obs["condition"] == "control").to_numpy() & np.isfinite(ages)
    heldout_types = adata.uns["aging_atlas"]["heldout_cell_types"]
    in_type = adata.obs["cell_type"].isin(heldout_types).to_numpy()
    in_age = (ages >= HELDOUT_AGES[0]) & (ages <= HELDOUT_AGES[1])
    splits = {
        "heldout_cell_type": np.flatnonzero(ref & in_type),
        "heldout_age": np.flatnonzero(ref & in_age & ~in_type),
    }
    counts = sp.csr_matrix(adata.X, dtype=float).toarray()
    lognorm = np.log1p(counts * (1e4 / counts.sum(axis=1, keepdims=True)))
    return ages, ref & ~in_type & ~in_age, splits, lognorm


def _by_hand(adata, sgd_params):
    """Splits, SGD predictions over all cells, and the naive ages, computed here from scratch."""
    obs = adata.obs
    ages, train, splits, lognorm = _design(adata)
    sgd = TransformedTargetRegressor(
        regressor=make_pipeline(StandardScaler(), SGDRegressor(**sgd_params)),
        transformer=StandardScaler(),
    ).fit(lognorm[train], ages[train])
    sgd_age = sgd.predict(lognorm)
    # naive: the most common training age of the type and sex, else of the sex (ties: youngest)
    df = obs.loc[train, ["cell_type", "sex"]].astype(str).assign(age=ages[train])
    mode = lambda a: a.value_counts().sort_index().idxmax()  # noqa: E731
    by_ts = df.groupby(["cell_type", "sex"])["age"].agg(mode)
    by_s = df.groupby("sex")["age"].agg(mode)
    naive_age = np.array(
        [
            by_ts.get((t, s), by_s[s])
            for t, s in zip(obs["cell_type"].astype(str), obs["sex"].astype(str), strict=True)
        ]
    )
    return ages, splits, sgd_age, naive_age


def _top_genes_by_hand(adata, vocab, max_genes):
    """1 where a gene is among a cell's first ``max_genes`` genes of its token row."""
    genes = set(vocab.gene_token_ids.tolist())
    X = np.zeros((adata.n_obs, len(vocab)))
    for i, row in enumerate(np.asarray(adata.obsm["maxtoki_tokens"])):
        X[i, [t for t in row if t in genes][:max_genes]] = 1.0
    return X


def _ridge_by_hand(X, ages, train, scale=True):
    """Ridge from scratch in NumPy: centre (and scale) features, standardise ages, choose the
    penalty by exact leave-one-out (intercept unpenalised) over ``RIDGE_ALPHAS``, solve."""
    from maxtoki.tl._baselines import RIDGE_ALPHAS

    mu, sd = X[train].mean(0), X[train].std(0) if scale else np.ones(X.shape[1])
    sd[sd == 0] = 1.0
    X = (X - mu) / sd
    y_mean, y_sd = ages[train].mean(), ages[train].std()
    y = (ages[train] - y_mean) / y_sd
    A = np.column_stack([np.ones(train.sum()), X[train]])

    def solve(alpha):
        penalty = np.diag(np.r_[0.0, np.full(X.shape[1], alpha)])
        return np.linalg.solve(A.T @ A + penalty, A.T), penalty

    def loo(alpha):
        inverse, _ = solve(alpha)
        hat = A @ inverse
        return np.mean(((y - hat @ y) / (1 - np.diag(hat))) ** 2)

    alpha = RIDGE_ALPHAS[int(np.argmin([loo(a) for a in RIDGE_ALPHAS]))]
    w = solve(alpha)[0] @ y
    return (w[0] + X @ w[1:]) * y_sd + y_mean


def test_ridges_and_their_offsets_match_a_numpy_ridge_by_hand(run):
    adata, table, contexts, sgd_params = run
    ages, splits, sgd_age, _ = _by_hand(adata, sgd_params)
    _, train, _, lognorm = _design(adata)
    top = _top_genes_by_hand(adata, _small()[1], FAST["max_genes"])
    assert (top.sum(1) == FAST["max_genes"]).all()  # the model's view: 8 of ~100 genes a cell
    ridges = {
        "ridge": _ridge_by_hand(lognorm, ages, train),
        "ridge_top_genes": _ridge_by_hand(top, ages, train, scale=False),
    }
    rows = table.set_index(["split", "method"])
    for (split, q), ctx in zip(splits.items(), contexts, strict=True):
        for name, age in ridges.items():
            offset = np.array([(ages - age)[np.unique(c)].mean() for c in ctx])
            for method, pred in ((name, age[q]), (f"{name}_offset", age[q] + offset)):
                row = rows.loc[(split, method)]
                np.testing.assert_allclose(
                    row["median_abs_error_months"], np.median(np.abs(pred - ages[q])), rtol=1e-6
                )
                np.testing.assert_allclose(
                    row["pearson_r"], np.corrcoef(pred, ages[q])[0, 1], rtol=1e-6
                )
        # different models, not copies of each other or of SGD
        assert not np.allclose(ridges["ridge"][q], sgd_age[q], atol=1.0)
        assert not np.allclose(ridges["ridge_top_genes"][q], ridges["ridge"][q], atol=1.0)


def test_sgd_offset_and_donor_errors_match_by_hand(run):
    adata, table, contexts, sgd_params = run
    ages, splits, sgd_age, naive_age = _by_hand(adata, sgd_params)
    rows = table.set_index(["split", "method"])
    assert list(table["split"].unique()) == list(splits)
    assert len(contexts) == len(splits)  # one draw of contexts per split, in split order
    for (split, q), ctx in zip(splits.items(), contexts, strict=True):
        assert ctx.shape == (len(q), 3, 2)
        residual = ages - sgd_age
        offset = np.array([residual[np.unique(c)].mean() for c in ctx])
        assert np.abs(offset).max() > 1.0  # the offset changes the predictions
        preds = {"sgd": sgd_age[q], "sgd_offset": sgd_age[q] + offset, "naive": naive_age[q]}
        for method, pred in preds.items():
            row = rows.loc[(split, method)]
            err = pred - ages[q]
            assert row["n_cells"] == len(q)
            np.testing.assert_allclose(row["median_abs_error_months"], np.median(np.abs(err)))
            np.testing.assert_allclose(row["bias_months"], err.mean(), atol=1e-6)
            np.testing.assert_allclose(row["pearson_r"], np.corrcoef(pred, ages[q])[0, 1])
            # donor level: a donor's cells of one cell type averaged
            cells = adata.obs.iloc[q][["donor", "cell_type"]].astype(str)
            donor = cells.assign(p=pred, t=ages[q]).groupby(["donor", "cell_type"]).mean()
            np.testing.assert_allclose(
                row["donor_median_abs_error_months"], (donor["p"] - donor["t"]).abs().median()
            )
            np.testing.assert_allclose(
                row["donor_pearson_r"], np.corrcoef(donor["p"], donor["t"])[0, 1]
            )


def test_every_median_error_has_an_interval_around_it(run):
    _, table, _, _ = run
    for prefix in ("", "donor_"):
        point = table[f"{prefix}median_abs_error_months"]
        low = table[f"{prefix}median_abs_error_ci_low_months"]
        high = table[f"{prefix}median_abs_error_ci_high_months"]
        assert np.isfinite(low).all() and np.isfinite(high).all()
        assert (low <= point).all() and (point <= high).all() and (low < high).any()


def test_median_ci_narrows_with_more_cells_and_agrees_with_scipy():
    from scipy.stats import bootstrap

    values = np.random.default_rng(1).exponential(100.0, size=4000)
    few = median_ci(values[:100], 1000, np.random.default_rng(0))
    many = median_ci(values, 1000, np.random.default_rng(0))
    for (lo, hi), v in ((few, values[:100]), (many, values)):
        assert lo <= np.median(v) <= hi
    assert many[1] - many[0] < 0.5 * (few[1] - few[0])  # ~ 1/sqrt(n): 40× the cells, ~6× narrower
    ref = bootstrap(
        (values[:100],), np.median, n_resamples=4000, method="percentile", random_state=2
    ).confidence_interval
    np.testing.assert_allclose(few, (ref.low, ref.high), atol=0.15 * (ref.high - ref.low))
    assert np.isnan(median_ci(np.zeros(0), 10, np.random.default_rng(0))).all()


def test_without_donors_the_donor_metrics_are_nan():
    adata, vocab, model = _small()
    table = mt.tl.evaluate(
        adata.copy(), model=model, vocab=vocab, donor_key=None, n_cells=20, n_contexts=1,
        n_boot=50, **FAST,
    )  # fmt: skip
    assert "sgd_offset" in set(table["method"])
    for col in ("median_abs_error_months", "median_abs_error_ci_low_months"):
        assert np.isfinite(table[col]).all()
    donor_cols = [c for c in table.columns if c.startswith("donor_")]
    assert len(donor_cols) == 4 and table[donor_cols].isna().all().all()


@pytest.mark.parametrize("n_boot", [0, -5, 2.5, "many", True])
def test_bad_n_boot(n_boot):
    adata, vocab, model = _small()
    data = adata.copy()
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        mt.tl.evaluate(data, model=model, vocab=vocab, n_boot=n_boot, **FAST)
    assert "maxtoki_evaluate" not in data.uns


def test_plot_draws_the_offset_baseline_with_its_intervals(run):
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer, ErrorbarContainer

    _, table, _, _ = run
    ax = mt.pl.evaluation(table, unit="months", show=False)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "maxtoki", "naive", "sgd", "sgd_offset", "ridge", "ridge_offset", "ridge_top_genes",
        "ridge_top_genes_offset",
    ]  # fmt: skip
    colors = [c[0].get_facecolor() for c in ax.containers if isinstance(c, BarContainer)]
    assert len(set(colors)) == len(legend)  # the offset baseline has a colour of its own
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == len(legend)
    drawn = [seg[:, 1] for c in errorbars for seg in c.lines[2][0].get_segments()]
    want = pd.concat([table[table["method"] == m] for m in legend])  # method by method
    np.testing.assert_allclose(
        drawn,
        want[["median_abs_error_ci_low_months", "median_abs_error_ci_high_months"]].to_numpy(),
    )
    plt.close(ax.figure)
