"""mt.pp.augment_donors: pseudo-donor copies and the estimate of the donor effect."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import maxtoki as mt


def atlas(donor_noise=0.25, seed=0):
    adata = mt.datasets.aging_atlas(
        n_donors=80, n_cells_per_donor=50, donor_noise=donor_noise, seed=seed
    )
    return adata[adata.obs["condition"] == "control"].copy()


@pytest.fixture(scope="module")
def small():
    adata = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=20, seed=1)
    return adata


def test_every_copy_of_a_donor_carries_one_gene_effect_of_the_asked_size(small):
    out = mt.pp.augment_donors(small, n_copies=2, sigma=0.3, random_state=0)
    n = small.n_obs
    assert out.n_obs == 3 * n
    assert out.obs_names.is_unique
    original = sp.csr_matrix(small.X, dtype=np.float32).toarray()
    np.testing.assert_array_equal(out.X[:n].toarray(), original)
    donors = small.obs["donor"].astype(str).to_numpy()
    effects = []
    for k in (1, 2):
        copy = out.X[k * n : (k + 1) * n].toarray()
        assert np.array_equal(copy > 0, original > 0)  # zeros stay zeros
        np.testing.assert_array_equal(out.obs["augmented_copy"].to_numpy()[k * n : (k + 1) * n], k)
        assert set(out.obs["donor"][k * n : (k + 1) * n]) == {f"{d}-copy{k}" for d in donors}
        for donor in np.unique(donors):
            rows = donors == donor
            detected = (original[rows] > 0).any(axis=0)
            o, c = original[rows][:, detected], copy[rows][:, detected]
            ratio = np.log(np.where(o > 0, c, 1.0) / np.where(o > 0, o, 1.0))
            per_gene = np.where(o > 0, ratio, -np.inf).max(axis=0)
            # one effect per gene, shared by every cell of the donor's copy
            np.testing.assert_allclose(
                np.where(o > 0, ratio, np.inf).min(axis=0), per_gene, atol=1e-4
            )
            effects.append(per_gene)
    effects = np.concatenate(effects)
    assert abs(effects.mean()) < 0.01
    assert 0.29 < effects.std() < 0.31
    np.testing.assert_allclose(
        out.obs["n_counts"], np.asarray(out.X.sum(axis=1)).ravel(), rtol=1e-5
    )
    assert out.uns["augment_donors"] == {"sigma": 0.3, "estimated": False, "n_copies": 2}


def test_no_donor_effect_copies_the_cells_and_their_tokens(small):
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(small))
    out = mt.pp.augment_donors(small, n_copies=1, sigma=0.0)
    mt.pp.tokenize(out, vocab=vocab)
    tokens = out.obsm["maxtoki_tokens"]
    np.testing.assert_array_equal(tokens[small.n_obs :], tokens[: small.n_obs])


def test_the_input_is_left_unchanged(small):
    before = small.copy()
    mt.pp.augment_donors(small, n_copies=1)
    np.testing.assert_array_equal(small.X.toarray(), before.X.toarray())
    pd.testing.assert_frame_equal(small.obs, before.obs)
    assert list(small.uns) == list(before.uns)


@pytest.mark.parametrize("donor_noise", [0.1, 0.25, 0.5])
def test_the_estimate_follows_the_simulated_donor_effect(donor_noise):
    # measured on atlas seeds 0–4: 0.60–0.77 × the simulated effect of 0.1, 0.25 or 0.5 (log1p
    # compresses low expression); the bounds leave room on either side of that spread
    estimates = [
        mt.pp.augment_donors(
            atlas(donor_noise, seed), n_copies=1, groupby=["cell_type", "sex"]
        ).uns["augment_donors"]["sigma"]
        for seed in (0, 1)
    ]
    for estimate in estimates:
        assert 0.55 * donor_noise < estimate < 0.95 * donor_noise


def test_bad_input_is_refused_clearly(small):
    with pytest.raises(ValueError, match="n_copies"):
        mt.pp.augment_donors(small, n_copies=0)
    with pytest.raises(ValueError, match="sigma"):
        mt.pp.augment_donors(small, sigma=-0.1)
    with pytest.raises(ValueError, match="donor_key"):
        mt.pp.augment_donors(small, donor_key="patient")
    with pytest.raises(ValueError, match="time_key"):
        mt.pp.augment_donors(small, time_key="age")
    obs = pd.DataFrame({"donor": list("aabb")}, index=[f"c{i}" for i in range(4)])
    negative = ad.AnnData(-np.ones((4, 3), dtype=np.float32), obs=obs)
    with pytest.raises(ValueError, match="raw counts"):
        mt.pp.augment_donors(negative, sigma=0.2)
    few = small[small.obs["donor"].isin(small.obs["donor"].unique()[:2])].copy()
    with pytest.raises(ValueError, match="pass sigma="):
        mt.pp.augment_donors(few)
    with pytest.raises(TypeError, match="AnnData"):
        mt.pp.augment_donors(np.ones((3, 3)))
