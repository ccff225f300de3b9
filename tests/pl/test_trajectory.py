import pytest

import maxtoki as mt


def test_trajectory_prompts_with_generated(out):
    prompts = out.prompts
    ax = mt.pl.trajectory(out.adata, prompts, row=[0, 1], generated=out.generated, show=False)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 2
    assert all(str(prompts["group"].iloc[i]) in labels[i] for i in range(2))
    arrows = [t for t in ax.texts if t.get_text().startswith("Δt")]
    n_ctx = prompts["n_context"].iloc[:2].to_numpy()
    assert len(arrows) == int(n_ctx.sum())  # n-1 between context cells + 1 to the query
    dt_q = int(prompts["dt_query"].iloc[0])
    assert any(t.get_text() == f"Δt {dt_q:+d}" for t in arrows)
    names = {t.get_text() for t in ax.texts}
    assert {prompts["query"].iloc[0], prompts["ctx0"].iloc[0]} <= names
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "query (true age)" in legend and "query (predicted age)" in legend
    assert any(t.startswith("generated (") for t in legend)
    assert ax.get_xlabel() == "age (years)"


def test_trajectory_single_row_by_label(out):
    label = out.prompts.index[3]
    ax = mt.pl.trajectory(out.adata, out.prompts, row=label, predicted_key=None, show=False)
    assert len(ax.get_yticklabels()) == 1
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "query (predicted age)" not in legend


def test_trajectory_bad_input(out):
    with pytest.raises(ValueError, match="out of range"):
        mt.pl.trajectory(out.adata, out.prompts, row=10_000, show=False)
    other = out.adata[:10].copy()
    with pytest.raises(ValueError, match="obs_names"):
        mt.pl.trajectory(other, out.prompts, row=list(range(5)), show=False)
    with pytest.raises(ValueError, match=r"mt\.pp\.trajectories"):
        mt.pl.trajectory(out.adata, out.prompts[["query"]], show=False)
    with pytest.raises(ValueError, match=r"mt\.tl\.generate"):
        mt.pl.trajectory(out.adata, out.prompts, generated=out.adata, show=False)
