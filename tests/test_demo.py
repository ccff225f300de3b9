"""`maxtoki demo --quick`: the main job end to end, on a small budget."""

import json

import pytest

from maxtoki._cli import main


@pytest.mark.slow
def test_demo_quick_prints_the_table_and_beats_naive(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "Age prediction" in printed and "Age acceleration" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["evaluation"]
    assert "heldout_donor" in {r["split"] for r in rows}  # the donors kept out of training
    for split in ("heldout_cell_type", "heldout_age"):
        error = {r["method"]: r["median_abs_error_months"] for r in rows if r["split"] == split}
        assert {"maxtoki", "naive", "sgd"} <= set(error)
        assert error["maxtoki"] < error["naive"], split
    groups = {r["group"] for r in summary["age_acceleration"]}
    assert {"fibrosis", "alzheimer", "resilient"} <= groups
    for name in (
        "evaluation.csv",
        "age_acceleration.csv",
        "training_history.csv",
        "predicted_age.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
