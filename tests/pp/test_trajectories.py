"""mt.pp.trajectories: the prompt table (obs names, months), its rules and its errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import maxtoki as mt


def _adata(n=240, seed=0, ages=(240, 360, 480, 600, 720)):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {
            "age_months": rng.choice(ages, n).astype(float),
            "cell_type": rng.choice(["A", "B", "C"], n),
            "sex": rng.choice(["female", "male"], n),
        },
        index=[f"cell{i:03d}" for i in range(n)],
    )
    return ad.AnnData(np.zeros((n, 2), dtype=np.float32), obs=obs)


def test_table_columns_and_rules():
    adata = _adata()
    before = adata.copy()
    df = mt.pp.trajectories(adata, n_prompts=300, random_state=1)
    assert len(df) == 300
    expected = ["task", "split", "group", "n_context", "ctx0", "ctx1", "ctx2", "t_ctx0", "t_ctx1",
                "t_ctx2", "dt0", "dt1", "query", "t_query", "dt_query"]  # fmt: skip
    assert list(df.columns) == expected
    assert set(df["task"]) == {"TimeBetweenCells", "NextCell"}
    assert (df["task"] == "TimeBetweenCells").sum() == 150  # 50/50 mix
    assert set(df["n_context"]) == {2, 3}
    obs = adata.obs
    for row in df.itertuples():
        k = row.n_context
        ctx = [getattr(row, f"ctx{j}") for j in range(k)]
        times = [obs.loc[c, "age_months"] for c in ctx]
        assert times == sorted(times)  # context sorted by time
        assert len(set(times)) == k  # distinct time points when the group has enough
        assert row.query not in ctx
        t_q = obs.loc[row.query, "age_months"]
        assert t_q not in times  # query at a different time
        group = {f"{obs.loc[c, 'cell_type']}|{obs.loc[c, 'sex']}" for c in [*ctx, row.query]}
        assert group == {row.group}
        assert row.dt0 == times[1] - times[0]
        assert row.dt_query == t_q - times[-1]
        if k == 2:
            assert row.ctx2 is None and pd.isna(row.dt1)
    # nothing written into the AnnData
    assert adata.obs.equals(before.obs) and adata.uns.keys() == before.uns.keys()
    assert not adata.obsm.keys()


def test_reproducible_and_csv_roundtrip(tmp_path):
    adata = _adata()
    a = mt.pp.trajectories(adata, random_state=3)
    b = mt.pp.trajectories(adata, random_state=3)
    c = mt.pp.trajectories(adata, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert len(a) == adata.n_obs  # default: every cell is the query once
    assert sorted(a["query"]) == sorted(adata.obs_names)
    a.to_csv(tmp_path / "p.csv")
    back = mt.train.read_prompts(tmp_path / "p.csv")
    assert list(back["query"]) == list(a["query"])
    assert back["ctx2"].isna().sum() == a["ctx2"].isna().sum()
    assert list(back["dt0"]) == list(a["dt0"])
    a.to_csv(tmp_path / "no_index.csv", index=False)
    pd.testing.assert_frame_equal(
        mt.train.read_prompts(tmp_path / "no_index.csv"), back.reset_index(drop=True)
    )


def test_numeric_looking_names_survive_csv(tmp_path):
    adata = _adata(n=60)
    adata.obs_names = [f"{i:04d}" for i in range(60)]
    df = mt.pp.trajectories(adata, task="TimeBetweenCells", n_context=2)
    df.to_csv(tmp_path / "p.csv")
    back = mt.train.read_prompts(tmp_path / "p.csv")
    assert back["query"].iloc[0] == df["query"].iloc[0]
    assert back["ctx0"].str.len().eq(4).all()


def test_single_task_and_fixed_context():
    df = mt.pp.trajectories(_adata(), task="NextCell", n_context=2, n_prompts=50)
    assert set(df["task"]) == {"NextCell"}
    assert set(df["n_context"]) == {2}
    assert "ctx2" not in df.columns


def test_holdout_mapping_and_mask():
    adata = _adata()
    df = mt.pp.trajectories(adata, holdout={"cell_type": "C"}, n_prompts=200)
    train, ev = df[df.split == "train"], df[df.split == "eval"]
    held = set(adata.obs_names[adata.obs.cell_type == "C"])
    cols = ["ctx0", "ctx1", "ctx2", "query"]
    assert not set(train[cols].stack()) & held  # training never sees held-out cells
    assert set(ev["query"]) == held  # every held-out cell is queried …
    assert len(ev) == 2 * len(held)  # … once per task
    mask = (adata.obs.cell_type == "C").to_numpy()
    df2 = mt.pp.trajectories(adata, holdout=mask, n_prompts=200)
    pd.testing.assert_frame_equal(df, df2)
    df3 = mt.pp.trajectories(adata, holdout=pd.Series(mask, index=adata.obs_names), n_prompts=200)
    pd.testing.assert_frame_equal(df, df3)


def test_dt_clipped_with_warning():
    adata = _adata(ages=(0, 600, 1200))
    with pytest.warns(UserWarning, match="clipped"):
        df = mt.pp.trajectories(adata, time_range=(-500, 500), n_context=2)
    assert df["dt_query"].between(-500, 500).all()
    assert df["dt0"].dropna().between(-500, 500).all()


def test_missing_time_column():
    adata = _adata()
    with pytest.raises(ValueError, match="no time column 'age'"):
        mt.pp.trajectories(adata, time_key="age")


def test_non_numeric_times():
    adata = _adata()
    adata.obs["age_months"] = adata.obs["age_months"].astype(str) + " months"
    with pytest.raises(ValueError, match="numeric times"):
        mt.pp.trajectories(adata)


def test_group_with_one_time_point():
    adata = _adata()
    adata.obs.loc[adata.obs.cell_type == "B", "age_months"] = 300.0
    with pytest.raises(ValueError, match=r"single time point.*'B\|female'.*'B\|male'"):
        mt.pp.trajectories(adata)


def test_bad_arguments():
    adata = _adata()
    with pytest.raises(ValueError, match="groupby columns"):
        mt.pp.trajectories(adata, groupby=("tissue",))
    with pytest.raises(ValueError, match="task"):
        mt.pp.trajectories(adata, task="Age")
    with pytest.raises(ValueError, match="n_context"):
        mt.pp.trajectories(adata, n_context=(3, 2))
    with pytest.raises(TypeError, match="holdout"):
        mt.pp.trajectories(adata, holdout=[True, False])
    with pytest.raises(ValueError, match="holdout names obs column"):
        mt.pp.trajectories(adata, holdout={"tissue": "lung"})


def test_missing_times_are_left_out():
    adata = _adata()
    adata.obs.iloc[:5, 0] = np.nan
    with pytest.warns(UserWarning, match="5 cells have no value"):
        df = mt.pp.trajectories(adata)
    assert not set(df[["ctx0", "ctx1", "ctx2", "query"]].stack()) & set(adata.obs_names[:5])


def test_mudata():
    md = pytest.importorskip("mudata")
    m = md.MuData({"rna": _adata(n=60)})
    assert len(mt.pp.trajectories(m, n_context=2)) == 60


def test_module_needs_no_torch():
    import inspect

    import maxtoki.pp._trajectories as module

    assert "torch" not in inspect.getsource(module)
