import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch

import maxtoki as mt
from maxtoki.pl._utils import format_p


def test_age_acceleration_violins_with_tests(out):
    ax = mt.pl.age_acceleration(out.adata, show=False)
    groups = [t.get_text() for t in ax.get_xticklabels()]
    assert groups[0] == "control"
    assert sorted(groups) == sorted(set(out.adata.obs["condition"].astype(str)))
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == len(groups)
    table = mt.get.age_acceleration(out.adata)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == len(table)
    for _, row in table.iterrows():
        p_mw, p_perm = format_p(row["pval_mannwhitney"]), format_p(row["pval_permutation"])
        assert any(f"MW {p_mw}" in t and f"perm {p_perm}" in t for t in texts), (p_mw, texts)
        assert any(f"{row['effect_years']:+.1f} y" in t for t in texts)
    assert ax.get_ylabel() == "predicted − chronological age (years)"
    assert "vs control" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["donor mean"]


def test_age_acceleration_box_and_strata(out):
    ax = mt.pl.age_acceleration(out.adata, kind="box", donors=False, unit="months", show=False)
    assert len([p for p in ax.patches if isinstance(p, PathPatch)]) == 4
    assert "months" in ax.get_ylabel()

    adata = out.adata.copy()
    mt.tl.age_acceleration(adata, stratify_by="cell_type", n_boot=50, key_added="acc_ct")
    key = "acc_ct_age_acceleration"
    strata = sorted(set(mt.get.age_acceleration(adata, key=key)["stratum"]))
    fig = mt.pl.age_acceleration(adata, key=key, show=False)
    assert isinstance(fig, Figure)
    assert sorted(a.get_title().split("\n")[0] for a in fig.axes) == strata
    ax = mt.pl.age_acceleration(adata, key=key, stratum=strata[0], show=False)
    assert ax.get_title().startswith(strata[0])
    with pytest.raises(ValueError, match="stratum"):
        mt.pl.age_acceleration(adata, key=key, stratum="nope", show=False)


def test_age_acceleration_bad_input(out):
    with pytest.raises(ValueError, match=r"mt\.tl\.age_acceleration"):
        mt.pl.age_acceleration(out.adata, key="not_there", show=False)
    with pytest.raises(ValueError, match="groupby"):
        mt.pl.age_acceleration(out.adata, groupby="nope", show=False)
    with pytest.raises(ValueError, match="kind"):
        mt.pl.age_acceleration(out.adata, kind="bar", show=False)
