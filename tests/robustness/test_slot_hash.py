"""The slot hash of the bad-input suite sees a change of any slot of an AnnData."""

from __future__ import annotations

from collections.abc import Callable

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from bad_input import raw, slot_hash


def _mutations() -> dict[str, Callable[[ad.AnnData], None]]:
    def x_value(a):
        a.X.data[0] += 1

    def x_indices(a):
        a.X.indices[[0, 1]] = a.X.indices[[1, 0]]

    def obs_dtype(a):
        a.obs["age_months"] = a.obs["age_months"].astype(np.int64)

    def obs_categories(a):
        a.obs["sex"] = a.obs["sex"].cat.add_categories(["other"])

    def obs_value(a):
        a.obs.iloc[0, a.obs.columns.get_loc("age_years")] += 1

    def var_value(a):
        a.var.iloc[0, a.var.columns.get_loc("ensembl_id")] = "ENSG00000000000"

    def uns_nested(a):
        a.uns["aging_atlas"]["seed"] = -1

    return {
        "X-value": x_value,
        "X-indices": x_indices,
        "layer-added": lambda a: a.layers.__setitem__("counts", a.X.copy()),
        "obs-dtype": obs_dtype,
        "obs-categories": obs_categories,
        "obs-value": obs_value,
        "obs-column-added": lambda a: a.obs.__setitem__("new", 1),
        "var-value": var_value,
        "obsm-value": lambda a: a.obsm["aging_atlas_activity"].__setitem__((0, 0), -1.0),
        "varm-added": lambda a: a.varm.__setitem__("new", np.zeros((a.n_vars, 1))),
        "obsp-added": lambda a: a.obsp.__setitem__("d", sp.eye(a.n_obs, format="csr")),
        "varp-added": lambda a: a.varp.__setitem__("d", np.eye(a.n_vars)),
        "uns-nested": uns_nested,
        "obs_names": lambda a: setattr(a, "obs_names", [f"c{i}" for i in range(a.n_obs)]),
        "var_names": lambda a: setattr(a, "var_names", [f"g{i}" for i in range(a.n_vars)]),
        "raw-added": lambda a: setattr(a, "raw", a),
    }


@pytest.mark.parametrize("mutation", list(_mutations()))
def test_slot_hash_sees_every_slot(mutation):
    adata = raw()
    adata.uns["aging_atlas"] = dict(adata.uns["aging_atlas"])
    before = slot_hash(adata)
    assert slot_hash(adata) == before  # stable
    _mutations()[mutation](adata)
    assert slot_hash(adata) != before
