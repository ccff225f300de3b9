"""`maxtoki demo --quick`: the main job end to end, on a small budget."""

import json

import pandas as pd
import pytest

from maxtoki._cli import main
from maxtoki._demo import DEMO_SETTINGS, demo_inference_dtype
from maxtoki._versions import PACKAGES, versions


@pytest.mark.slow
def test_demo_quick_prints_the_table_and_beats_naive(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "Age prediction" in printed and "Age acceleration" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["inference_dtype"] == demo_inference_dtype("cpu")
    environment, now = summary["environment"], versions()  # what the numbers were computed with
    assert set(environment) == set(now)
    assert all(environment[name] == now[name] for name in PACKAGES)
    rows = summary["evaluation"]
    assert "heldout_donor" in {r["split"] for r in rows}  # the donors kept out of training
    for split in ("heldout_cell_type", "heldout_age"):
        error = {r["method"]: r["median_abs_error_months"] for r in rows if r["split"] == split}
        methods = {"maxtoki", "maxtoki_calibrated", "maxtoki_second_pass", "naive", "sgd"}
        assert methods <= set(error)
        assert error["maxtoki"] < error["naive"], split
    checks = {r["method"]: r["value"] for r in summary["generated_check"]}
    assert checks["real_vs_random_genes"] > checks["real_vs_real"]  # the controls behave
    assert "real_vs_generated" in checks and "age_sgd_vs_timelapse" in checks
    groups = {r["group"] for r in summary["age_acceleration"]}
    assert {"fibrosis", "alzheimer", "resilient"} <= groups
    methods = {r["method"] for r in summary["age_acceleration"]}
    assert methods == {"donor", "paired", "ridge_per_type"}
    for name in (
        "evaluation.csv",
        "age_acceleration.csv",
        "training_history.csv",
        "predicted_age.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    history = pd.read_csv(tmp_path / "training_history.csv")
    stages = {2} | ({1} if DEMO_SETTINGS["quick"]["stage1_steps"] else set())
    assert set(history["stage"]) == stages  # stage-1 pretraining (full demo), temporal stage


def test_generated_summary_lists_the_check_and_its_controls():
    import numpy as np
    import pandas as pd

    from maxtoki._demo import format_report, generated_summary

    methods = "maxtoki real_vs_generated real_vs_real cell_type_generated age_sgd_vs_timelapse"

    table = pd.DataFrame(
        {
            "split": ["heldout_age", "generated", "generated", "generated", "generated"],
            "method": methods.split(),
            "n_cells": [10, 40, 40, 60, 60],
            "median_abs_error_months": [50.0, np.nan, np.nan, np.nan, np.nan],
            "pearson_r": [0.8, np.nan, np.nan, np.nan, 0.456],
            "classifier_auc": [np.nan, 0.712, 0.49, np.nan, np.nan],
            "cell_type_match": [np.nan, np.nan, np.nan, 0.9, np.nan],
        }
    )
    summary = generated_summary(table)
    assert summary["method"].tolist() == [
        "real_vs_generated", "real_vs_real", "cell_type_generated", "age_sgd_vs_timelapse",
    ]  # fmt: skip
    assert summary["value"].tolist() == [0.71, 0.49, 0.9, 0.46]
    acceleration = pd.DataFrame(
        columns=["method", "stratum", "group", "planted_months", "effect_months",
                 "ci_low_months", "ci_high_months", "pval_permutation"]
    )  # fmt: skip
    report = format_report(table, acceleration, {"train": 1.0})
    assert "AUC real vs generated" in report and "AUC real vs real (control, ~0.5)" in report


def test_generated_summary_without_generated_rows_is_empty():
    from maxtoki._demo import generated_summary

    table = pd.DataFrame({"split": ["heldout_age"], "method": ["maxtoki"], "n_cells": [10]})
    summary = generated_summary(table)
    assert summary.empty and list(summary.columns)[:2] == ["check", "method"]


def test_ridge_reference_reads_ages_from_expression():
    import anndata as ad
    import numpy as np

    from maxtoki._demo import _ridge_ages

    rng = np.random.default_rng(0)

    def cells(n, kind):  # noisy counts whose log mean is linear in age, per cell type
        ages = rng.uniform(0, 1000, n)
        slopes = np.linspace(-1e-3, 1e-3, 30) * (1 if kind == "a" else -1)
        counts = rng.poisson(5 * np.exp(np.outer(ages, slopes)))
        obs = {"age_months": ages, "cell_type": [kind] * n}
        return ad.AnnData(counts.astype(np.float32), obs=pd.DataFrame(obs))

    context = ad.concat([cells(300, "a"), cells(300, "b")], index_unique="-")
    query = ad.concat([cells(300, "a"), cells(300, "b")], index_unique="-")
    ages = query.obs["age_months"].to_numpy()
    read = _ridge_ages(query, context, "cell_type")
    assert np.median(np.abs(read - ages)) < 150  # of a 1,000-month range
    # the ridge's read-out is compressed (slope ~0.8 on these cells); the inverted line is not
    assert abs(np.polyfit(ages, read, 1)[0] - 1) < 0.12


def test_the_held_out_control_donors_hold_both_sexes_over_every_age():
    import numpy as np

    import maxtoki as mt
    from maxtoki._demo import query_control_donors

    obs = mt.datasets.aging_atlas(
        n_donors=DEMO_SETTINGS["full"]["n_donors"], n_cells_per_donor=5, seed=0
    ).obs
    controls = obs[(obs["condition"] == "control").to_numpy()]
    chosen = query_control_donors(controls)
    donors = controls.groupby("donor", observed=True).agg(
        sex=("sex", "first"), age=("age_months", "first")
    )
    assert len(chosen) == len(set(chosen)) == round(len(donors) / 4)
    # both sexes, as many of each (the old `np.unique(donors)[::4]` chose females only)
    sexes = donors.loc[chosen, "sex"].astype(str).value_counts()
    assert set(sexes.index) == {"female", "male"} and sexes.max() - sexes.min() <= 1
    # over every age, and the reference of the acceleration (adults >= 45 years) has both sexes
    ages = donors.loc[chosen, "age"].to_numpy()
    assert ages.min() < 12 * 10 and ages.max() > 12 * 85
    assert np.all(np.diff(np.sort(ages)) < 12 * 12)
    adults = donors.loc[chosen][donors.loc[chosen, "age"] >= 12 * 45]
    assert adults["sex"].nunique() == 2
    assert list(query_control_donors(controls)) == list(chosen)  # no randomness
    # every 2nd: half the donors, as many of each sex
    half = query_control_donors(controls, every=2)
    assert len(half) == round(len(donors) / 2)
    sexes = donors.loc[half, "sex"].astype(str).value_counts()
    assert sexes.to_dict() == {"female": 14, "male": 14}


def test_the_acceleration_reads_a_cohort_apart_from_the_training_atlas():
    import numpy as np

    import maxtoki as mt
    from maxtoki._demo import _acceleration_cells, query_control_donors

    atlas = mt.datasets.aging_atlas(n_donors=24, n_cells_per_donor=12, seed=3)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(atlas))
    mt.pp.tokenize(atlas, vocab=vocab)
    cfg = {"cohort_donors": 40, "n_cells_per_donor": 12}
    cells = _acceleration_cells(atlas, cfg, vocab, seed=3)
    # the same world (genes in the same order, the training vocabulary's tokens), other donors
    assert list(cells.var_names) == list(atlas.var_names)
    assert cells.uns["maxtoki_tokens"]["vocab_hash"] == atlas.uns["maxtoki_tokens"]["vocab_hash"]
    assert not set(cells.obs["donor"].astype(str)) & set(atlas.obs["donor"].astype(str))
    deviation = np.asarray(atlas.uns["aging_atlas"]["donor_program_deviation"])
    cohort = mt.datasets.aging_atlas(n_donors=40, n_cells_per_donor=1, seed=3)
    other = np.asarray(cohort.uns["aging_atlas"]["donor_program_deviation"])
    assert np.abs(deviation[:, None] - other[None]).max(axis=-1).min() > 0  # no donor drawn twice
    # every disease group, and the reference: the cohort's every 2nd control of each sex
    obs = cells.obs
    assert set(obs["condition"].astype(str)) == {"control", "fibrosis", "alzheimer", "resilient"}
    controls = cohort.obs[(cohort.obs["condition"] == "control").to_numpy()]
    half = {f"cohort-{d}" for d in query_control_donors(controls, every=2)}
    reference = set(obs.loc[obs["condition"] == "control", "donor"].astype(str))
    assert reference and reference <= half
    assert len(half) == round(controls["donor"].nunique() / 2)
    assert set(obs["cell_type"].astype(str)) == {"fibroblast", "microglia"}
    assert obs["age_months"].min() >= 12 * 45
    # without a cohort: the same selection from the training atlas itself
    own = _acceleration_cells(atlas, {"n_cells_per_donor": 12}, vocab, seed=3)
    assert set(own.obs["donor"].astype(str)) <= set(atlas.obs["donor"].astype(str))
    assert own.obs_names.isin(atlas.obs_names).all()


def test_stage2_budget_leaves_the_demo_its_wall_budget():
    from maxtoki._demo import AFTER_TRAINING_STEPS, MIN_STAGE2_SECONDS, stage2_budget

    cfg = DEMO_SETTINGS["full"]
    wall, cap = cfg["wall_budget"], cfg["time_budget"]
    # the idle 2-core machine (0.33 s a stage-1 step, 92 s spent): what the wall budget leaves
    left = wall - 92 - AFTER_TRAINING_STEPS["float32"] * 0.33
    assert stage2_budget(cfg, 92.0, 0.33) == pytest.approx(min(cap, left))
    # this machine reads in bfloat16 (AMX); at 0.29–0.30 s a stage-1 step (~75 s spent by then)
    # its 500 stage-2 steps took 259–267 s (2026-12-06, the acceleration on its cohort)
    assert stage2_budget(cfg, 75.0, 0.30, "bfloat16") > 270
    # a machine half as fast again: training + what follows it still end within the wall budget
    budget = stage2_budget(cfg, 95.0, 0.5)
    assert 95.0 + budget + AFTER_TRAINING_STEPS["float32"] * 0.5 == pytest.approx(wall)
    # bfloat16 inference prices what follows training at fewer steps: stage 2 gets the rest
    bf16 = stage2_budget(cfg, 95.0, 0.5, "bfloat16")
    assert 95.0 + bf16 + AFTER_TRAINING_STEPS["bfloat16"] * 0.5 == pytest.approx(wall)
    assert bf16 > budget
    # twice as slow in float32, what follows training alone costs ~500 s: stage 2 keeps its floor
    assert stage2_budget(cfg, 95.0, 0.66) == MIN_STAGE2_SECONDS
    # a fast machine keeps the stage's cap; a hopelessly slow one keeps a floor
    assert stage2_budget(cfg, 10.0, 0.01) == cap
    assert stage2_budget(cfg, 500.0, 1.0) == MIN_STAGE2_SECONDS
    # no stage 1 (nothing measured) or no wall budget: the stage's own budget
    assert stage2_budget(cfg, 70.0, None) == cap
    assert stage2_budget(DEMO_SETTINGS["quick"], 5.0, 0.2) == DEMO_SETTINGS["quick"]["time_budget"]


def test_the_demo_reads_in_bfloat16_only_on_a_cpu_with_amx(monkeypatch):
    import torch

    for amx, bf16, expected in (
        (True, True, "bfloat16"),
        (True, False, "auto"),
        (False, True, "auto"),
    ):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v, raising=False)
        assert demo_inference_dtype("cpu") == expected
        assert demo_inference_dtype("cuda") == "auto"  # bfloat16 autocast there already
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probe
    assert demo_inference_dtype("cpu") == "auto"
