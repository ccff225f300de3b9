import sys

import numpy as np
import pytest

import maxtoki as mt

widgets = pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def app(out):
    with pytest.warns(UserWarning, match="not running in a Jupyter kernel"):
        return mt.pl.explore(
            out.adata, model=out.model, vocab=out.vocab, n_top_genes=8, device="cpu"
        )


def test_explore_builds_a_vbox_with_controls(app, out):
    assert isinstance(app, widgets.VBox)
    c = app.controls
    assert {"group", "context", "query", "timelapse", "predict", "generate", "head", "attention",
            "output", "plot", "status"} <= set(c)  # fmt: skip
    assert "Jupyter kernel" in c["status"].value
    obs = out.adata.obs
    labels = set(obs["cell_type"].astype(str) + "|" + obs["sex"].astype(str))
    assert set(c["group"].options[i][1] for i in range(len(c["group"].options))) == labels
    assert [b.description for b in (c["predict"], c["generate"], c["attention"])] == [
        "Predict time", "Generate cell", "Show attention",
    ]  # fmt: skip
    assert len(c["context"].value) == 2 and c["query"].value not in c["context"].value


def test_explore_group_change_updates_cells(app, out):
    c = app.controls
    group = c["group"].options[-1][1]
    c["group"].value = group
    rows = [v for _, v in c["context"].options]
    obs = out.adata.obs
    labels = (obs["cell_type"].astype(str) + "|" + obs["sex"].astype(str)).to_numpy()
    assert set(labels[rows]) == {group}
    ages = obs["age_months"].to_numpy()[rows]
    assert np.all(np.diff(ages) >= 0)  # listed by age
    assert c["query"].value in rows


def test_explore_predict_time(app, out):
    c = app.controls
    rows = [v for _, v in c["context"].options]
    c["context"].value = (rows[0], rows[len(rows) // 2])
    c["query"].value = rows[-1]
    c["predict"].click()
    html = c["output"].value
    assert "Predict time" in html and "Error" not in html
    true_age = out.adata.obs["age_months"].iloc[rows[-1]] / 12
    assert f"{true_age:.1f} y" in html
    assert "predicted age" in html and "predicted Δt" in html


def test_explore_generate_cell(app):
    c = app.controls
    c["timelapse"].value = 60
    c["generate"].click()
    html = c["output"].value
    assert "Generate cell" in html and "Δt +60 months" in html, html
    assert 1 <= html.count("<tr><td>") <= 8  # at most n_top_genes rows


def test_explore_attention(app):
    c = app.controls
    c["head"].value = "L0H1"
    c["attention"].click()
    assert c["plot"].value[:4] == b"\x89PNG"
    assert "Attention" in c["output"].value and "L0H1" in c["output"].value
    c["head"].value = "mean"
    c["attention"].click()
    assert "mean of all heads" in c["output"].value


def test_explore_reports_bad_choices_in_the_app(app):
    c = app.controls
    c["context"].value = ()
    c["predict"].click()
    assert "Error" in c["output"].value and "context cell" in c["output"].value
    rows = [v for _, v in c["context"].options]
    c["context"].value = (rows[0], rows[1])
    c["query"].value = rows[1]
    c["attention"].click()
    assert "query cell is one of the context cells" in c["output"].value


def test_explore_bad_input(out):
    bare = out.adata.copy()
    del bare.obsm["maxtoki_tokens"]
    with pytest.raises(ValueError, match=r"mt\.pp\.tokenize"):
        mt.pl.explore(bare, model=out.model, vocab=out.vocab)
    with pytest.raises(ValueError, match="groupby"):
        mt.pl.explore(out.adata, model=out.model, vocab=out.vocab, groupby="nope")


def test_explore_without_ipywidgets_says_how_to_install_it(out, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r"pip install 'maxtoki\[explore\]'"):
        mt.pl.explore(out.adata, model=out.model, vocab=out.vocab)
