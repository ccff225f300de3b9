"""Tests of the simulated aging atlas, :func:`maxtoki.datasets.aging_atlas`."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata

import maxtoki as mt

SMALL = {"n_donors": 8, "n_cells_per_donor": 30, "n_genes": 400}


@pytest.fixture(scope="module")
def atlas() -> ad.AnnData:
    """The default atlas (what the CPU demo uses)."""
    return mt.datasets.aging_atlas(seed=0)


@pytest.fixture(scope="module")
def lognorm(atlas) -> np.ndarray:
    """Dense log1p(counts per 10k) of the default atlas."""
    x = sp.diags(1e4 / atlas.obs["n_counts"].to_numpy()) @ atlas.X.astype(np.float64)
    return np.log1p(x.toarray())


def _spearman_with(values: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Spearman correlation of every column of ``values`` with ``age`` (nan for constants)."""
    rv = rankdata(values, axis=0)
    ra = rankdata(age)
    rv -= rv.mean(axis=0)
    ra -= ra.mean()
    denom = np.sqrt((rv**2).sum(axis=0) * (ra**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rv * ra[:, None]).sum(axis=0) / denom


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float = 100.0):
    """Ridge regression on standardised features; returns a predict function."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda q: ((q - mu) / sd) @ coef + y.mean()


# ------------------------------------------------------------------------------ determinism


def test_same_seed_identical():
    a = mt.datasets.aging_atlas(**SMALL, seed=3)
    b = mt.datasets.aging_atlas(**SMALL, seed=3)
    assert (a.X != b.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    np.testing.assert_array_equal(a.obsm["aging_atlas_activity"], b.obsm["aging_atlas_activity"])


def test_different_seeds_differ():
    a = mt.datasets.aging_atlas(**SMALL, seed=1)
    b = mt.datasets.aging_atlas(**SMALL, seed=2)
    assert a.shape == b.shape
    assert (a.X != b.X).nnz > 0.1 * a.X.nnz
    assert not np.array_equal(a.obs["age_months"].to_numpy(), b.obs["age_months"].to_numpy())
    assert not a.var_names.equals(b.var_names)  # genes are shuffled per seed


# --------------------------------------------------------------------------------- structure


def test_shapes_and_matrix(atlas):
    assert atlas.shape == (40 * 100, 1500)
    assert isinstance(atlas.X, sp.csr_matrix)
    assert atlas.X.dtype == np.int32
    assert atlas.X.data.min() > 0  # no explicit zeros, all counts positive integers
    assert atlas.X.has_canonical_format
    n_counts = np.asarray(atlas.X.sum(axis=1)).ravel()
    np.testing.assert_array_equal(atlas.obs["n_counts"].to_numpy(), n_counts)
    # sparse like single-cell data, but not empty
    density = atlas.X.nnz / np.prod(atlas.shape)
    assert 0.1 < density < 0.7


def test_obs_fields(atlas):
    obs = atlas.obs
    for key in ("donor", "sex", "cell_type", "condition"):
        assert isinstance(obs[key].dtype, pd.CategoricalDtype), key
    for key in ("age_months", "planted_acceleration_months", "biological_age_months"):
        assert np.issubdtype(obs[key].dtype, np.integer), key
    assert obs["heldout_cell_type"].dtype == bool
    assert obs["disease_marker_cell"].dtype == bool
    assert np.issubdtype(obs["n_counts"].dtype, np.integer)
    assert set(obs["sex"].cat.categories) == {"female", "male"}
    assert list(obs["condition"].cat.categories) == [
        "control",
        "fibrosis",
        "alzheimer",
        "resilient",
    ]
    assert obs["donor"].nunique() == 40
    assert obs.index.is_unique
    # one age, sex and condition per donor
    per_donor = obs.groupby("donor", observed=True)[["age_months", "sex", "condition"]].nunique()
    assert (per_donor == 1).all().all()
    np.testing.assert_allclose(obs["age_years"], obs["age_months"] / 12)


def test_var_fields(atlas):
    var = atlas.var
    assert var["ensembl_id"].str.fullmatch(r"ENSG9\d{10}").all()
    assert all(re.fullmatch(r"^ENSG\d{11}$", e) for e in var["ensembl_id"])
    assert var["ensembl_id"].is_unique and atlas.var_names.is_unique
    assert var["is_tf"].dtype == bool and var["is_housekeeping"].dtype == bool
    assert var["is_tf"].sum() >= 14 and var["is_housekeeping"].sum() >= 5
    programs = list(atlas.uns["aging_atlas"]["programs"])
    assert set(var["age_program"]) - {""} == set(programs)
    # every shared program is driven by TFs that belong to it; their targets name them
    tf = var[var["gene_kind"] == "age_tf"]
    assert tf["is_tf"].all() and (tf["age_program"] != "").all()
    targets = var[var["gene_kind"] == "program_target"]
    for gene, row in targets.iterrows():
        regs = row["regulators"].split(",")
        assert regs and all(var.loc[r, "age_program"] == row["age_program"] for r in regs), gene
        assert var.loc[regs, "is_tf"].all()
    assert set(var["age_trend"]) <= {"", "increasing", "decreasing", "non-monotonic"}
    assert (var.loc[var["age_program"] == "", "age_trend"] == "").all()
    assert (var.loc[var["age_program"] != "", "program_loading"] != 0).all()
    assert set(var["sex_specific"]) == {"", "female", "male"}
    assert set(var["disease_marker"]) == {"", "fibrosis", "alzheimer"}
    assert set(var["cell_type_marker"]) - {""} == set(atlas.obs["cell_type"].cat.categories)
    # housekeeping genes are not aging, marker or sex genes
    hk = var[var["is_housekeeping"]]
    assert (hk["age_program"] == "").all() and (hk["sex_specific"] == "").all()
    assert atlas.varm["aging_atlas_loadings"].shape == (atlas.n_vars, len(programs))
    assert atlas.varm["aging_atlas_cell_type_offset"].shape == (
        atlas.n_vars,
        atlas.obs["cell_type"].nunique(),
    )


def test_uns_record(atlas):
    info = atlas.uns["aging_atlas"]
    assert info["params"]["seed"] == 0 and info["params"]["n_donors"] == 40
    assert list(info["heldout_cell_types"]) == ["endothelial cell"]
    heldout = atlas.obs["cell_type"].isin(info["heldout_cell_types"]).to_numpy()
    np.testing.assert_array_equal(atlas.obs["heldout_cell_type"].to_numpy(), heldout)
    assert set(info["training_cell_types"]) | set(info["heldout_cell_types"]) == set(
        info["cell_types"]
    )
    n_programs, n_grid = len(info["programs"]), len(info["age_grid_months"])
    assert info["program_activity_female"].shape == (n_programs, n_grid)
    assert info["cell_type_program_shift"].shape == (len(info["cell_types"]), n_programs)
    assert set(info["program_shape"]) == {"increasing", "decreasing", "non-monotonic"}
    assert info["acceleration_months"]["fibrosis"] > info["acceleration_months"]["alzheimer"] > 0
    assert info["acceleration_months"]["resilient"] == 0
    # the recorded curves really are (non-)monotonic as labelled
    for curves in (info["program_activity_female"], info["program_activity_male"]):
        for curve, shape in zip(curves, info["program_shape"], strict=True):
            d = np.diff(curve[:96])  # 0-95 years
            if shape == "increasing":
                assert (d >= -1e-9).all()
            elif shape == "decreasing":
                assert (d <= 1e-9).all()
            else:
                assert (d > 1e-4).any() and (d < -1e-4).any()


# ------------------------------------------------------------------------------------ donors


def test_sexes_balanced_and_ages_span_life(atlas):
    obs = atlas.obs
    donors = obs.drop_duplicates("donor")
    counts = donors["sex"].value_counts()
    assert abs(counts["female"] - counts["male"]) <= 1
    assert abs((obs["sex"] == "female").mean() - 0.5) < 0.02
    ages = obs["age_months"]
    assert ages.min() <= 12 and ages.max() >= 90 * 12
    # healthy reference: controls are the majority and cover the whole life span for each sex
    controls = donors[donors["condition"] == "control"]
    assert len(controls) > len(donors) / 2
    for _, grp in controls.groupby("sex", observed=True):
        assert grp["age_months"].min() <= 12 and grp["age_months"].max() >= 90 * 12
        assert np.diff(np.sort(grp["age_months"])).max() < 15 * 12  # no big gaps
    # every cell type is seen in controls of every decade of life
    ctrl = obs[obs["condition"] == "control"]
    decades = pd.crosstab(ctrl["cell_type"], ctrl["age_months"] // 120)
    assert (decades > 0).all().all()


def test_library_sizes_in_documented_range(atlas):
    lib = atlas.uns["aging_atlas"]["params"]["library_size"]
    low, high = atlas.uns["aging_atlas"]["n_counts_range"]
    n_counts = atlas.obs["n_counts"]
    assert low == lib / 10 and high == lib * 10
    assert n_counts.between(low, high).all()
    assert 0.7 * lib < n_counts.median() < 1.3 * lib
    assert n_counts.quantile(0.9) / n_counts.quantile(0.1) > 1.5  # real spread


# ---------------------------------------------------------------------------- aging signal


def test_program_genes_track_age_housekeeping_do_not(atlas, lognorm):
    """Docstring claim: |Spearman| of monotonic program genes > 0.2 in every type, HK < 0.1."""
    var, obs = atlas.var, atlas.obs
    info = atlas.uns["aging_atlas"]
    trend_mono = var["age_trend"].isin(["increasing", "decreasing"]).to_numpy()
    shared = var["age_program"].isin(
        [p for p, t in zip(info["programs"], info["program_cell_type"], strict=True) if not t]
    )
    hk = var["is_housekeeping"].to_numpy()
    increasing = (var["age_trend"] == "increasing").to_numpy()
    mono_means = []
    for cell_type in obs["cell_type"].cat.categories:
        # monotonic genes of the shared programs and of this type's own program
        own = (
            var["age_program"] == info["programs"][list(info["program_cell_type"]).index(cell_type)]
        )
        mono = trend_mono & (shared | own).to_numpy()
        cells = ((obs["cell_type"] == cell_type) & (obs["condition"] == "control")).to_numpy()
        age = obs["age_months"].to_numpy()[cells]
        r_mono = _spearman_with(lognorm[np.ix_(cells, mono)], age)
        r_hk = _spearman_with(lognorm[np.ix_(cells, hk)], age)
        assert np.nanmean(np.abs(r_mono)) > 0.2, cell_type
        assert np.nanmean(np.abs(r_hk)) < 0.1, cell_type
        # the sign follows the planted trend for most genes
        agree = np.sign(r_mono) == np.where(increasing[mono], 1, -1)
        assert agree.mean() > 0.8, cell_type
        mono_means.append(np.nanmean(np.abs(r_mono)))
    assert np.mean(mono_means) > 0.25


def test_aging_changes_shared_across_types(atlas, lognorm):
    """Shared programs move the same genes the same way in different cell types."""
    var, obs = atlas.var, atlas.obs
    shared = (
        var["age_trend"].isin(["increasing", "decreasing"]).to_numpy()
        & var["gene_kind"].isin(["program_target", "age_tf"]).to_numpy()
    )
    age = obs["age_months"].to_numpy()
    ctrl = (obs["condition"] == "control").to_numpy()
    per_type = []
    for cell_type in obs["cell_type"].cat.categories:
        cells = ctrl & (obs["cell_type"] == cell_type).to_numpy()
        per_type.append(_spearman_with(lognorm[np.ix_(cells, shared)], age[cells]))
    corr = np.corrcoef(np.nan_to_num(np.array(per_type)))
    assert corr[np.triu_indices_from(corr, 1)].min() > 0.5


def test_cell_types_have_own_baselines_on_program_genes(atlas, lognorm):
    var, obs = atlas.var, atlas.obs
    program = (var["gene_kind"] == "program_target").to_numpy()
    hk = var["is_housekeeping"].to_numpy()
    young = ((obs["condition"] == "control") & (obs["age_months"] < 30 * 12)).to_numpy()
    types = obs["cell_type"].to_numpy()[young]
    means = pd.DataFrame(lognorm[young]).groupby(types).mean()  # types x genes
    spread = means.std(axis=0).to_numpy()
    assert np.median(spread[program]) > 3 * np.median(spread[hk])
    assert np.median(spread[program]) > 0.15
    # truth: per-type offsets of program genes differ, of housekeeping genes barely
    offset = atlas.varm["aging_atlas_cell_type_offset"]
    assert np.median(offset[program].std(axis=1)) > 3 * np.median(offset[hk].std(axis=1))


def test_global_model_misled_on_heldout_type_context_helps(atlas, lognorm):
    """A linear model trained on the other types is biased on the held-out type (it looks
    younger), while one that compares with cells of the same type is not."""
    obs = atlas.obs
    age = obs["age_months"].to_numpy().astype(float)
    ctrl = (obs["condition"] == "control").to_numpy()
    heldout = obs["heldout_cell_type"].to_numpy()
    genes = (atlas.var["age_program"] != "").to_numpy() | atlas.var["is_tf"].to_numpy()
    x = lognorm[:, genes]
    train, test = ctrl & ~heldout, ctrl & heldout
    global_pred = _ridge(x[train], age[train])(x[test])
    bias_global = np.mean(global_pred - age[test])
    # "context": the same model class fitted on half of the held-out type's donors
    donors = obs["donor"].to_numpy()
    test_donors = np.unique(donors[test])
    ctx_donors = test_donors[::2]
    ctx = test & np.isin(donors, ctx_donors)
    query = test & ~np.isin(donors, ctx_donors)
    ctx_pred = _ridge(x[ctx], age[ctx], alpha=300.0)(x[query])
    err_global = np.median(
        np.abs(global_pred[np.isin(np.flatnonzero(test), np.flatnonzero(query))] - age[query])
    )
    err_ctx = np.median(np.abs(ctx_pred - age[query]))
    assert bias_global < -24  # looks at least 2 years younger to the global model
    assert abs(np.mean(ctx_pred - age[query])) < abs(bias_global)
    assert err_ctx < err_global
    # the age signal is learnable but far from trivial for single cells
    naive = np.median(np.abs(age[query] - np.median(age[ctx])))
    assert err_ctx < 0.6 * naive
    assert err_ctx > 24


def test_age_effect_zero_removes_signal():
    a = mt.datasets.aging_atlas(n_donors=20, n_cells_per_donor=40, n_genes=400, age_effect=0.0)
    assert np.all(a.varm["aging_atlas_loadings"] == 0)
    x = sp.diags(1e4 / a.obs["n_counts"].to_numpy()) @ a.X.astype(np.float64)
    x = np.log1p(x.toarray())
    mono = a.var["age_trend"].isin(["increasing", "decreasing"]).to_numpy()
    cells = ((a.obs["cell_type"] == "CD4 T cell") & (a.obs["condition"] == "control")).to_numpy()
    r = _spearman_with(x[np.ix_(cells, mono)], a.obs["age_months"].to_numpy()[cells])
    assert np.nanmean(np.abs(r)) < 0.15


# ------------------------------------------------------------------------ disease and truth


def test_planted_acceleration_truth(atlas):
    obs = atlas.obs
    info = atlas.uns["aging_atlas"]
    planted = obs["planted_acceleration_months"]
    np.testing.assert_array_equal(
        obs["biological_age_months"].to_numpy(), (obs["age_months"] + planted).to_numpy()
    )
    assert (planted[obs["condition"].isin(["control", "resilient"])] == 0).all()
    for condition in ("fibrosis", "alzheimer"):
        cell_type = info["accelerated_cell_type"][condition]
        hit = (obs["condition"] == condition) & (obs["cell_type"] == cell_type)
        assert hit.sum() > 0
        assert (planted[hit] == info["acceleration_months"][condition]).all()
        assert (planted[(obs["condition"] == condition) & ~hit] == 0).all()
    assert (planted != 0).sum() == (planted > 0).sum()
    assert set(np.unique(planted)) == {0, 180, 60}


def test_disease_markers_and_resilient(atlas, lognorm):
    obs, var = atlas.obs, atlas.var
    info = atlas.uns["aging_atlas"]
    ad_genes = (var["disease_marker"] == "alzheimer").to_numpy()
    fib_genes = (var["disease_marker"] == "fibrosis").to_numpy()
    microglia = (obs["cell_type"] == info["marker_cell_type"]["resilient"]).to_numpy()
    fibro = (obs["cell_type"] == "fibroblast").to_numpy()
    cond = obs["condition"].to_numpy()

    def mean_expr(cells, genes):
        return lognorm[np.ix_(cells, genes)].mean()

    ctrl_mg = mean_expr(microglia & (cond == "control"), ad_genes)
    assert mean_expr(microglia & (cond == "resilient"), ad_genes) > ctrl_mg + 0.5
    assert mean_expr(microglia & (cond == "alzheimer"), ad_genes) > ctrl_mg + 0.5
    ctrl_fib = mean_expr(fibro & (cond == "control"), fib_genes)
    assert mean_expr(fibro & (cond == "fibrosis"), fib_genes) > ctrl_fib + 0.5
    # markers stay in the marker cell type
    assert mean_expr(~microglia & (cond == "resilient"), ad_genes) < ctrl_mg + 0.2
    marker_cells = obs["disease_marker_cell"].to_numpy()
    np.testing.assert_array_equal(
        marker_cells,
        (microglia & np.isin(cond, ["alzheimer", "resilient"])) | (fibro & (cond == "fibrosis")),
    )


def test_accelerated_cells_look_older(atlas):
    """Truth activities: accelerated fibroblasts run their programs at the biological age."""
    obs = atlas.obs
    info = atlas.uns["aging_atlas"]
    act = atlas.obsm["aging_atlas_activity"]
    senescence = list(info["programs"]).index("senescence")
    hit = ((obs["condition"] == "fibrosis") & (obs["cell_type"] == "fibroblast")).to_numpy()
    expected = obs["biological_age_months"].to_numpy()[hit] / 12 / 90
    assert np.corrcoef(act[hit, senescence], expected)[0, 1] > 0.5
    assert np.mean(act[hit, senescence] - obs["age_months"].to_numpy()[hit] / 12 / 90) > 0.1


# ------------------------------------------------------------------------------------ I/O


def test_h5ad_roundtrip(tmp_path):
    a = mt.datasets.aging_atlas(**SMALL, n_heldout_cell_types=0)
    path = tmp_path / "atlas.h5ad"
    a.write_h5ad(path)
    b = ad.read_h5ad(path)
    assert (a.X != b.X).nnz == 0 and b.X.dtype == np.int32
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert b.uns["aging_atlas"]["params"] == a.uns["aging_atlas"]["params"]
    assert len(b.uns["aging_atlas"]["heldout_cell_types"]) == 0
    np.testing.assert_array_equal(
        b.uns["aging_atlas"]["program_activity_male"], a.uns["aging_atlas"]["program_activity_male"]
    )
    np.testing.assert_array_equal(b.varm["aging_atlas_loadings"], a.varm["aging_atlas_loadings"])


def test_default_roundtrip(atlas, tmp_path):
    path = tmp_path / "default.h5ad"
    atlas.write_h5ad(path)
    b = ad.read_h5ad(path)
    assert list(b.uns["aging_atlas"]["heldout_cell_types"]) == ["endothelial cell"]
    assert b.uns["aging_atlas"]["accelerated_cell_type"]["resilient"] == ""


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_donors": 3}, "n_donors"),
        ({"n_donors": 10.5}, "n_donors"),
        ({"n_cells_per_donor": 0}, "n_cells_per_donor"),
        ({"n_cells_per_donor": -5}, "n_cells_per_donor"),
        ({"n_genes": 50}, "n_genes"),
        ({"n_cell_types": 2}, "n_cell_types"),
        ({"n_cell_types": 13}, "n_cell_types"),
        ({"n_cell_types": 4, "n_heldout_cell_types": 3}, "n_heldout_cell_types"),
        ({"disease_fraction": 0.5}, "disease_fraction"),
        ({"disease_fraction": -0.1}, "disease_fraction"),
        ({"fibrosis_acceleration_months": -12}, "fibrosis_acceleration_months"),
        ({"max_age_years": 60}, "max_age_years"),
        ({"library_size": 0}, "library_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"cell_noise": float("nan")}, "cell_noise"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mt.datasets.aging_atlas(**kwargs)


def test_positional_arguments_rejected():
    with pytest.raises(TypeError):
        mt.datasets.aging_atlas(40)  # type: ignore[misc]


def test_small_and_edge_sizes():
    a = mt.datasets.aging_atlas(n_donors=4, n_cells_per_donor=1, n_genes=400, n_cell_types=3)
    assert a.shape == (4, 400)
    assert a.obs["age_months"].max() >= 90 * 12
    b = mt.datasets.aging_atlas(**SMALL, disease_fraction=0.0)
    assert (b.obs["condition"] == "control").all()
    assert (b.obs["planted_acceleration_months"] == 0).all()
    c = mt.datasets.aging_atlas(**SMALL, n_cell_types=12, n_heldout_cell_types=3)
    assert c.obs["cell_type"].cat.categories.size == 12
    assert c.var_names.is_unique
    assert c.obs.loc[c.obs["heldout_cell_type"], "cell_type"].nunique() == 3


def test_import_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, maxtoki as mt; mt.datasets.aging_atlas(n_donors=4, n_cells_per_donor=2,"
        " n_genes=400); bad = [m for m in ('torch', 'numba', 'matplotlib') if m in sys.modules];"
        " assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_larger_atlas_scales():
    a = mt.datasets.aging_atlas(n_donors=100, n_cells_per_donor=200, n_genes=1000, seed=5)
    assert a.shape == (20_000, 1000)
    assert isinstance(a.X, sp.csr_matrix) and a.X.dtype == np.int32
    assert a.obs["n_counts"].between(*a.uns["aging_atlas"]["n_counts_range"]).all()
    assert (a.obs.groupby("donor", observed=True).size() == 200).all()
