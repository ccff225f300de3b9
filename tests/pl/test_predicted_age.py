import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

import maxtoki as mt


def test_predicted_age_colored_by_condition(out):
    ax = mt.pl.predicted_age(out.adata, color="condition", show=False)
    conditions = sorted(set(out.adata.obs["condition"].astype(str)))
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == len(conditions)
    assert sum(len(c.get_offsets()) for c in points) == out.adata.n_obs
    assert ax.get_xlabel() == "chronological age (years)"
    assert ax.get_ylabel() == "predicted age (years)"
    obs = out.adata.obs
    mae = np.median(np.abs(obs["maxtoki_age"] - obs["age_months"])) / 12
    assert f"median |error| {mae:.1f} years" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("control (n=") for t in legend)
    assert "identity" in legend


def test_predicted_age_facets_and_numeric_color(out):
    fig = mt.pl.predicted_age(
        out.adata, groupby="cell_type", color="sex", unit="months", show=False
    )
    assert isinstance(fig, Figure)
    types = sorted(set(out.adata.obs["cell_type"].astype(str)))
    assert len(fig.axes) == len(types)
    assert sorted(a.get_title().split("\n")[0] for a in fig.axes) == types
    assert fig.axes[0].get_xlabel() == "chronological age (months)"
    ax = mt.pl.predicted_age(out.adata, color="maxtoki_age_std", show=False)
    assert len(ax.figure.axes) == 2  # the colour bar


def test_predicted_age_bad_input(out):
    bare = out.adata.copy()
    del bare.obs["maxtoki_age"]
    with pytest.raises(ValueError, match=r"mt\.tl\.predict_time"):
        mt.pl.predicted_age(bare, show=False)
    with pytest.raises(ValueError, match="color"):
        mt.pl.predicted_age(out.adata, color="nope", show=False)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax"):
        mt.pl.predicted_age(out.adata, groupby="cell_type", ax=ax, show=False)
