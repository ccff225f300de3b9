"""mt.tl.evaluate's generated-cell check: two-sample AUC with its controls, cell type, age read.

"Generated" cells here are built by hand from real cells (copies, or cells of another cell type
labelled as this one), so what each row must say is known independently of any model; the model
is an untrained tiny one (its age reading is only checked to be there).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from bad_input import TINY  # the shared untrained tiny model and fast options
from scipy.stats import pearsonr, spearmanr

import maxtoki as mt

MAX_GENES = 24


@functools.lru_cache(maxsize=1)
def _setup():
    adata = mt.datasets.aging_atlas(
        n_donors=24, n_cells_per_donor=30, n_genes=400, disease_fraction=0.0, seed=3
    )
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    model = mt.train.build_model("tiny", vocab=vocab, overrides=TINY)
    return adata, vocab, model


def _fake_generated(adata, rows, *, cell_type=None, timelapse=None):
    """Real cells ``rows`` posing as generated ones: the obs that mt.tl.generate writes."""
    g = adata[rows].copy()
    g.obs_names = [f"generated-{i}" for i in range(len(rows))]
    age = g.obs["age_months"].to_numpy(float)
    dt = np.zeros(len(rows)) if timelapse is None else np.asarray(timelapse, float)
    g.obs["context_age_months"] = age - dt
    g.obs["timelapse_months"] = dt
    g.obs["expected_age_months"] = age
    if cell_type is not None:
        g.obs["cell_type"] = cell_type
    return g


def _check(adata, vocab, model, generated, seed=0, train_mask=None):
    df = mt.tl.evaluate(
        adata, model=model, vocab=vocab, heldout_cell_types=[], generated=generated,
        max_genes=MAX_GENES, n_contexts=1, device="cpu", random_state=seed, train_mask=train_mask,
    )  # fmt: skip
    assert (df["split"] == "generated").all()
    return df.set_index("method")


def _null_sd(n: int) -> float:
    """Spread of the AUC of two samples of ``n`` from one distribution (Mann-Whitney)."""
    return float(np.sqrt((2 * n + 1) / 12) / n)


def test_copies_of_real_cells_pass_and_the_controls_behave():
    adata, vocab, model = _setup()
    gen = np.random.default_rng(0)
    rows = np.sort(gen.choice(adata.n_obs, 150, replace=False))
    dt = gen.integers(-480, 480, len(rows))  # ±40 years: wider than a read age's error
    # copies of cells the real side does not hold: a copy beside its own original, on the
    # other side, pulls the classifier below 0.5 (its twin is in the training folds)
    train = ~np.isin(np.arange(adata.n_obs), rows)
    g = _fake_generated(adata, rows, timelapse=dt)
    rows_df = _check(adata, vocab, model, g, train_mask=train)
    auc = rows_df["classifier_auc"]
    n = int(rows_df.loc["real_vs_generated", "n_cells"])
    assert n == int(rows_df.loc["real_vs_real", "n_cells"]) == 150  # sizes matched
    margin = 4 * _null_sd(n)
    assert abs(auc["real_vs_generated"] - 0.5) < margin
    assert abs(auc["real_vs_real"] - 0.5) < margin
    # each AUC is the mean of N_DRAWS draws; their spread is reported beside it
    spread = rows_df["classifier_auc_sd"]
    assert 0 < spread["real_vs_real"] < 0.2 and 0 < spread["real_vs_generated"] < 0.2
    assert auc["real_vs_random_genes"] >= 0.95
    assert auc["real_vs_shuffled_ranks"] > 0.5 + margin
    # cell type: copies of real cells are typed as well as real cells are
    real_acc = rows_df.loc["cell_type_real_cv", "cell_type_match"]
    assert real_acc > 0.9
    assert rows_df.loc["cell_type_generated", "cell_type_match"] >= real_acc - 0.1
    # age: SGD reads the copies' true ages about as well as held-out donors' real cells
    ref = rows_df.loc["age_sgd_real_cells", "pearson_r"]
    assert ref > 0.5
    assert rows_df.loc["age_sgd_vs_expected_age", "pearson_r"] > ref - 0.25
    # read age minus context age tracks the timelapse (context age = true age - timelapse)
    assert rows_df.loc["age_sgd_vs_timelapse", "spearman_r"] > 0.3
    # ridge, the same features fitted exactly: 0.69–0.81 and 0.83–0.90 over random states 0–9
    # (2026-12-06; SGD 0.56–0.76, the copies 0.66–0.74; the copies' |AUC - 0.5| at most 0.05)
    assert rows_df.loc["age_ridge_real_cells", "pearson_r"] > 0.6
    assert rows_df.loc["age_ridge_vs_expected_age", "pearson_r"] > 0.75
    for m in ("age_maxtoki_vs_expected_age", "age_maxtoki_vs_timelapse"):
        assert m in rows_df.index and rows_df.loc[m, "n_cells"] == len(rows)
    # the ceiling has a stand-in for every copy (its power: the test below)
    for m in ("age_sgd_vs_timelapse_real", "age_ridge_vs_timelapse_real",
              "age_maxtoki_vs_timelapse_real"):  # fmt: skip
        assert rows_df.loc[m, "n_cells"] == len(rows) and np.isfinite(rows_df.loc[m, "pearson_r"])
    # the doublet check is kept, on the controls too
    for m in ("doublet_classifier", "doublet_classifier_random_genes"):
        assert 0 <= rows_df.loc[m, "singlet_fraction"] <= 1
    assert "doublet_classifier_shuffled_ranks" in rows_df.index


def test_the_ceiling_reads_real_cells_of_the_requested_ages():
    """Requests spread over ±40 years: real stand-ins of those ages track them through SGD.

    Were a stand-in's read age paired with another cell's request, or its timelapse taken from
    the wrong cell, the correlation would fall towards 0.
    """
    adata, vocab, model = _setup()
    gen = np.random.default_rng(5)
    rows = np.sort(gen.choice(adata.n_obs, 150, replace=False))
    dt = gen.integers(-480, 480, len(rows))
    rows_df = _check(adata, vocab, model, _fake_generated(adata, rows, timelapse=dt))
    # 0.58–0.75 over 12 draws (6 request draws × 2 random states; 2026-12-04)
    assert rows_df.loc["age_sgd_vs_timelapse_real", "spearman_r"] > 0.45
    # ridge reads them better: 0.82–0.89 over 6 draws (SGD 0.61–0.75 on the same; 2026-12-05)
    assert rows_df.loc["age_ridge_vs_timelapse_real", "spearman_r"] > 0.7


def test_the_rows_of_real_cells_alone_do_not_depend_on_the_model():
    """Rows of real cells alone come out the same under two models and two generated sets.

    The models' own draws (a held-out split, read twice) come first, as in the demo; the
    generated sets differ in length, so their random-gene controls differ too.
    """
    adata, vocab, model = _setup()
    other = mt.train.build_model("tiny", vocab=vocab, overrides=TINY, seed=1)
    rows = np.arange(0, 300, 2)
    full = _fake_generated(adata, rows, timelapse=np.arange(len(rows)) % 5 * 24)
    short = full.copy()  # the same cells cut to 10 genes: other random-gene draws
    tokens = short.obsm["maxtoki_tokens"].copy()
    tokens[:, 11] = vocab.eos_id
    tokens[:, 12:] = 0
    short.obsm["maxtoki_tokens"] = tokens
    tables = [
        mt.tl.evaluate(
            adata, model=m, vocab=vocab, heldout_cell_types=[], heldout_ages=(480, 600),
            generated=g, max_genes=MAX_GENES, n_contexts=2, n_cells=40, calibrate=True,
            second_pass=True, device="cpu", random_state=0,
        ).set_index(["split", "method"])
        for m, g in ((model, full), (other, short))
    ]  # fmt: skip
    real_alone = [("real_vs_real", "classifier_auc"), ("real_vs_shuffled_ranks", "classifier_auc"),
                  ("cell_type_real_cv", "cell_type_match"), ("age_sgd_real_cells", "pearson_r"),
                  ("age_ridge_real_cells", "pearson_r")]  # fmt: skip
    for method, column in real_alone:
        a, b = (t.loc[("generated", method), column] for t in tables)
        assert a == b, method
    # what the models and the generated cells do read differently
    a, b = (t.loc[("heldout_age", "maxtoki"), "median_abs_error_months"] for t in tables)
    assert a != b
    assert (tables[0].loc[("generated", "real_vs_generated"), "classifier_auc"]
            != tables[1].loc[("generated", "real_vs_generated"), "classifier_auc"])  # fmt: skip


def test_cells_of_another_type_fail():
    adata, vocab, model = _setup()
    ctype = adata.obs["cell_type"].astype(str).to_numpy()
    types = list(dict.fromkeys(ctype))
    rows = np.flatnonzero(ctype == types[0])[:120]
    g = _fake_generated(adata, rows, cell_type=types[1])
    rows_df = _check(adata, vocab, model, g)
    # real cells are a mix of types, a share p of them of types[0]: the AUC's ceiling is 1 - p/2
    p = np.mean(ctype == types[0])
    n = int(rows_df.loc["real_vs_generated", "n_cells"])
    assert 0.5 + 4 * _null_sd(n) < rows_df.loc["real_vs_generated", "classifier_auc"] <= 1 - p / 2
    assert rows_df.loc["cell_type_generated", "cell_type_match"] == 0.0
    # one timelapse: no correlation with it, said as nan; no stand-in of the claimed type's
    # ages differs from the age asked for, so the ceiling's timelapses vary and it has a value
    assert np.isnan(rows_df.loc["age_sgd_vs_timelapse", "pearson_r"])
    assert rows_df.loc["age_sgd_vs_timelapse_real", "n_cells"] == len(rows)


def test_a_type_without_real_cells_has_no_ceiling():
    """Generated cells of a type no real cell has: no stand-ins, the ceiling rows are empty."""
    adata, vocab, model = _setup()
    rows = np.arange(0, 240, 3)
    g = _fake_generated(adata, rows, cell_type="alien cell", timelapse=np.arange(len(rows)) * 6)
    rows_df = _check(adata, vocab, model, g)
    for m in ("age_sgd_vs_timelapse_real", "age_maxtoki_vs_timelapse_real"):
        assert rows_df.loc[m, "n_cells"] == 0 and np.isnan(rows_df.loc[m, "pearson_r"])
    assert rows_df.loc["age_sgd_vs_timelapse", "n_cells"] == len(rows)


def test_two_sample_auc_is_an_out_of_fold_roc_auc():
    """Against sklearn on the same folds, and near 0.5 for two draws of one distribution."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from maxtoki.tl._generated_check import N_TREES, two_sample_auc

    gen = np.random.default_rng(1)
    a, b = gen.normal(size=(80, 5)), gen.normal(size=(80, 5)) + np.array([1.0, 0, 0, 0, 0])
    auc, acc = two_sample_auc(a, b, seed=7)
    X, y = np.vstack([a, b]), np.r_[np.zeros(80), np.ones(80)]
    proba = np.zeros(len(y))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=7).split(X, y):
        clf = RandomForestClassifier(n_estimators=N_TREES, random_state=7, n_jobs=1)
        clf.fit(X[tr], y[tr])
        proba[te] = clf.predict_proba(X[te])[:, 1]
    assert auc == pytest.approx(roc_auc_score(y, proba))
    assert acc == pytest.approx(np.mean((proba > 0.5) == y))
    assert auc > 0.7
    null, _ = two_sample_auc(a, gen.normal(size=(80, 5)), seed=7)
    assert abs(null - 0.5) < 4 * _null_sd(80)


def test_correlation_rows_equal_scipy():
    from maxtoki.tl._generated_check import _correlation_row

    gen = np.random.default_rng(2)
    x = gen.normal(size=40)
    y = x + gen.normal(size=40)
    y[3] = np.nan  # left out, as a cell without an age would be
    row = _correlation_row("age_sgd_vs_expected_age", x, y)
    ok = np.isfinite(y)
    assert row["n_cells"] == 39
    assert row["pearson_r"] == pytest.approx(pearsonr(x[ok], y[ok])[0])
    assert row["spearman_r"] == pytest.approx(spearmanr(x[ok], y[ok])[0])
    flat = _correlation_row("age_sgd_vs_timelapse", x, np.full(40, 12.0))
    assert np.isnan(flat["pearson_r"]) and np.isnan(flat["spearman_r"])


def test_stand_ins_are_the_nearest_real_cells_of_the_type():
    """Against a brute-force search: the type matches and no cell of it lies nearer in age."""
    import anndata as ad
    import pandas as pd

    from maxtoki.tl._generated_check import _stand_ins

    gen = np.random.default_rng(3)
    real_type = gen.choice(["a", "b", "c"], 300)
    real_age = gen.integers(0, 1000, 300).astype(float)
    obs = pd.DataFrame({
        "cell_type": gen.choice(["a", "b", "d"], 80),
        "expected_age_months": gen.uniform(-100, 1200, 80),
    })  # fmt: skip
    picked = _stand_ins(real_type, real_age, ad.AnnData(obs=obs), "cell_type", seed=0)
    for i, (t, e) in enumerate(zip(obs["cell_type"], obs["expected_age_months"], strict=True)):
        same = real_type == t
        if not same.any():  # type "d": no real cell of it
            assert picked[i] == -1
            continue
        assert real_type[picked[i]] == t
        assert abs(real_age[picked[i]] - e) == np.abs(real_age[same] - e).min()
    assert (picked == _stand_ins(real_type, real_age, ad.AnnData(obs=obs), "cell_type", 0)).all()
    # ties (a donor's cells share an age) are drawn among, not always the first
    tied = _stand_ins(np.array(["a"] * 20), np.full(20, 5.0), ad.AnnData(obs=obs.iloc[:40].assign(
        cell_type="a")), "cell_type", seed=1)  # fmt: skip
    assert len(np.unique(tied)) > 5


def test_real_cells_are_read_against_other_donors_only():
    """_other_donors against a loop over the reference: a cell needs its group's other donors."""
    from maxtoki.tl._contexts import Reference
    from maxtoki.tl._evaluate import _other_donors

    gen = np.random.default_rng(4)
    groups = gen.choice(["x", "y", "z"], 60)
    donors = gen.choice(["d1", "d2", "d3"], 60)
    groups[:6], donors[:6] = "v", "d1"  # group v: one donor's cells only
    ref = Reference([np.zeros(3)] * 60, np.zeros(60), groups, donors, np.arange(60), None)
    q_groups = np.array(["v", "x", "y", "z", "w"] * 8)  # w: no reference cells at all
    q_donors = gen.choice(["d1", "d2", "d3", "d4"], 40)
    want = [
        bool(((groups == g) & (donors != dn)).any())
        for g, dn in zip(q_groups, q_donors, strict=True)
    ]
    assert _other_donors(ref, q_groups, q_donors).tolist() == want
    assert not all(want) and any(want)
