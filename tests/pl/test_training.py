import json

import anndata
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import maxtoki as mt


def _labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_training_curves_from_history(out):
    fig = mt.pl.training_curves(out.history, show=False)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss, err = fig.axes
    assert {"train loss", "eval loss", "train time_loss", "eval time_loss"} <= set(_labels(loss))
    assert loss.get_xlabel() == "step" and loss.get_ylabel() == "loss"
    assert _labels(err) == ["mean |error|", "median |error|"]
    evals = out.history[out.history["kind"] == "eval"]
    np.testing.assert_allclose(err.get_lines()[1].get_ydata(), evals["median_ae_months"])
    assert "last:" in err.get_title()


def test_training_curves_from_files(out, tmp_path):
    path = tmp_path / "metrics.jsonl"
    with path.open("w") as f:
        for row in out.history.to_dict(orient="records"):
            f.write(json.dumps({k: v for k, v in row.items() if v == v}) + "\n")
    fig = mt.pl.training_curves(path, unit="years", show=False)
    assert fig.axes[1].get_ylabel() == "absolute error (years)"
    fig = mt.pl.training_curves(tmp_path, show=False)  # a run's out_dir
    assert len(fig.axes) == 2
    out.history.to_csv(tmp_path / "history.csv", index=False)
    fig = mt.pl.training_curves(tmp_path / "history.csv", x="elapsed_s", show=False)
    assert fig.axes[0].get_xlabel() == "elapsed s"


def test_training_curves_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\.jsonl"):
        mt.pl.training_curves(tmp_path / "missing.jsonl", show=False)
    with pytest.raises(TypeError, match="history"):
        mt.pl.training_curves(42, show=False)
    with pytest.raises(ValueError, match="kind"):
        mt.pl.training_curves(pd.DataFrame({"step": [1]}), show=False)


def test_evaluation_bars(out):
    table = out.evaluation
    ax = mt.pl.evaluation(table, show=False)
    values = table["median_abs_error_months"].dropna()
    assert len(ax.patches) == len(values)
    heights = sorted(p.get_height() for p in ax.patches)
    np.testing.assert_allclose(heights, sorted(values / 12))
    assert ax.get_ylabel() == "median |error| (years)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(dict.fromkeys(table.loc[values.index, "method"]))
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [s.replace("_", " ") for s in dict.fromkeys(table.loc[values.index, "split"])]
    assert len(ax.texts) == len(values)  # bar labels
    ax = mt.pl.evaluation(out.adata, metric="pearson_r", show=False)  # the stored table
    assert ax.get_ylabel() == "Pearson r"


def test_evaluation_puts_ablations_last_and_hatched(out):
    table = out.evaluation
    first = table[table["method"] == "maxtoki"].iloc[:1].assign(method="maxtoki_mask_query")
    ax = mt.pl.evaluation(
        pd.concat([first, table]), metric="bias_months", unit="months", show=False
    )
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "maxtoki" and legend[-1] == "maxtoki_mask_query"
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1
    assert hatched[0].get_height() == pytest.approx(first["bias_months"].iloc[0])
    assert ax.get_ylabel() == "mean error (bias) (months)"


def test_evaluation_bad_input(out):
    with pytest.raises(ValueError, match="metric"):
        mt.pl.evaluation(out.evaluation, metric="nope", show=False)
    with pytest.raises(ValueError, match=r"mt\.tl\.evaluate"):
        mt.pl.evaluation(anndata.AnnData(np.zeros((2, 2))), show=False)


def test_evaluation_draws_the_two_sample_aucs_with_the_chance_line():
    methods = ["real_vs_generated", "real_vs_real", "real_vs_random_genes", "doublet_classifier"]
    table = pd.DataFrame(
        {
            "split": "generated",
            "method": methods,
            "classifier_auc": [0.7, 0.52, 0.99, np.nan],  # the doublet row has no AUC
        }
    )
    ax = mt.pl.evaluation(table, metric="classifier_auc", show=False)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.7, 0.52, 0.99])
    assert ax.get_ylabel() == "two-sample AUC vs real cells"
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and tuple(dashed[0].get_ydata()) == (0.5, 0.5)
