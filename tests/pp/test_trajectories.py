"""mt.pp.trajectories: the prompt table (obs names, months), its rules and its errors."""

from __future__ import annotations

import hashlib

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


LEGACY = dict(sort_context=True, allow_same_time=False, query_sampling="cells", group_balance=None)


def _rows(df: pd.DataFrame, obs: pd.DataFrame, time_key: str = "age_months"):
    """Per prompt: the row, its context names, their times and the query's time."""
    for row in df.itertuples():
        ctx = [getattr(row, f"ctx{j}") for j in range(row.n_context)]
        yield row, ctx, [obs.loc[c, time_key] for c in ctx], obs.loc[row.query, time_key]


@pytest.mark.parametrize("options", [{}, LEGACY], ids=["official", "legacy"])
def test_table_columns_and_rules(options):
    adata = _adata()
    before = adata.copy()
    df = mt.pp.trajectories(adata, n_prompts=300, random_state=1, **options)
    assert len(df) == 300
    expected = ["task", "split", "group", "n_context", "ctx0", "ctx1", "ctx2", "t_ctx0", "t_ctx1",
                "t_ctx2", "dt0", "dt1", "query", "t_query", "dt_query"]  # fmt: skip
    assert list(df.columns) == expected
    assert set(df["task"]) == {"TimeBetweenCells", "NextCell"}
    assert (df["task"] == "TimeBetweenCells").sum() == 150  # 50/50 mix
    assert set(df["n_context"]) == {2, 3}
    obs = adata.obs
    for row, ctx, times, t_q in _rows(df, obs):
        k = row.n_context
        if options:
            assert times == sorted(times)  # context sorted by time
            assert t_q not in times  # query at a different time
        assert len(set(times)) == k  # distinct time points when the group has enough
        assert row.query not in ctx
        group = {f"{obs.loc[c, 'cell_type']}|{obs.loc[c, 'sex']}" for c in [*ctx, row.query]}
        assert group == {row.group}
        assert row.dt0 == times[1] - times[0]
        assert row.dt_query == t_q - times[-1]
        if k == 2:
            assert pd.isna(row.ctx2) and pd.isna(row.dt1)
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
    assert len(a) == adata.n_obs  # default: as many prompts as training cells
    legacy = mt.pp.trajectories(adata, random_state=3, **LEGACY)
    assert sorted(legacy["query"]) == sorted(adata.obs_names)  # every cell is the query once
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


# --- the official sampler (issue 14) and the earlier one -------------------------------------
# ``sha256(df.to_csv())`` of tables written by the sampler before the official defaults (commit
# 767ffb8) on ``aging_atlas(n_donors=12, n_cells_per_donor=10, seed=0)``: the LEGACY options
# reproduce them exactly.
LEGACY_TABLES = {
    "n_prompts=200": (
        {"n_prompts": 200, "random_state": 3},
        "2317d56da13ba67ba5822b209ccbad9d1e9ba25f15b485b7fa61817c26aadd47",
    ),
    "holdout": (
        {"holdout": {"cell_type": "B cell"}, "random_state": 5},
        "d28379371beb8577b61ca9f6e440e659dc2c5c6082775848c4c8d989d3c1bf7d",
    ),
    "n_context=2": (
        {"n_context": 2, "task": "TimeBetweenCells", "random_state": 7},
        "7573954c713f2bcacd053552c9a477071be20910b7ba3877106de3026555be41",
    ),
    "groupby=None": (
        {"groupby": None, "n_context": (1, 3), "n_prompts": 50, "random_state": 11},
        "b25a9b75bd1a7ca8ad092f073d946c2cf4e51b1bac754246496092c0083ab808",
    ),
}


@pytest.mark.parametrize("name", list(LEGACY_TABLES))
def test_legacy_options_reproduce_the_earlier_table(name):
    kwargs, digest = LEGACY_TABLES[name]
    atlas = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=10, seed=0)
    df = mt.pp.trajectories(atlas, **kwargs, **LEGACY)
    if name == "n_prompts=200":  # the first row of the recorded table, readable
        first = df.iloc[0]
        assert (first.ctx0, first.ctx1, first.query, first.dt_query) == ("D00-0", "D04-9",
                                                                         "D02-3", -492)  # fmt: skip
    assert hashlib.sha256(df.to_csv().encode()).hexdigest() == digest
    assert not df.equals(mt.pp.trajectories(atlas, **kwargs))  # the defaults differ


def test_contexts_unsorted_by_default_sorted_on_request():
    adata = _adata()
    df = mt.pp.trajectories(adata, n_prompts=1200, random_state=0)
    dts = df[["dt0", "dt1"]].stack()
    assert (dts < 0).any() and (dts > 0).any()  # negative Δt between context cells
    # a uniformly random order: 1/2 of the 2-cell and 1/6 of the 3-cell contexts are sorted
    # (tolerance: > 5 standard deviations of a share over ≥ 500 prompts)
    for k, share in ((2, 1 / 2), (3, 1 / 6)):
        rows = [times for row, _, times, _ in _rows(df, adata.obs) if row.n_context == k]
        assert len(rows) > 500
        assert abs(np.mean([t == sorted(t) for t in rows]) - share) < 0.12
    srt = mt.pp.trajectories(adata, n_prompts=1200, random_state=0, sort_context=True)
    assert (srt[["dt0", "dt1"]].stack() > 0).all()
    assert all(times == sorted(times) for _, _, times, _ in _rows(srt, adata.obs))


def test_same_time_queries_by_default_never_when_disallowed():
    adata = _adata()  # 5 ages, ~8 cells per age and group
    df = mt.pp.trajectories(adata, n_prompts=1000, random_state=0)
    rows = list(_rows(df, adata.obs))
    assert all(row.query not in ctx for row, ctx, _, _ in rows)  # never the query cell itself
    assert any(t_q in times[:-1] for _, _, times, t_q in rows)  # shares an earlier context time
    # the query's time point is drawn independently of the context's: Δt = 0 in 1/5 of the
    # prompts (tolerance: > 5 standard deviations of a share over 1000 prompts)
    assert abs((df["dt_query"] == 0).mean() - 1 / 5) < 0.07
    off = mt.pp.trajectories(adata, n_prompts=1000, random_state=0, allow_same_time=False)
    assert not any(t_q in times for _, _, times, t_q in _rows(off, adata.obs))
    assert (off["dt_query"] != 0).all()


def _skewed(counts=(300, 30, 6, 2)) -> ad.AnnData:
    """One group; very unequal numbers of cells at its four time points."""
    ages = np.repeat([120.0, 240.0, 360.0, 480.0], counts)
    obs = pd.DataFrame({"age_months": ages}, index=[f"c{i}" for i in range(len(ages))])
    return ad.AnnData(obs=obs)


@pytest.mark.parametrize("seed", [0, 1])
def test_queries_uniform_over_time_points_or_cells(seed):
    counts = np.array([300, 30, 6, 2])
    adata, n = _skewed(tuple(counts)), 4000
    # tolerance: 6 standard deviations of a share over n draws (sd ≤ 0.5 / √n), for any seed;
    # the two samplers' expectations differ by far more (0.25 vs 0.89 for the first age)
    tol = 6 * 0.5 / np.sqrt(n)
    ages = [120.0, 240.0, 360.0, 480.0]
    for how, expected in (("time_points", np.full(4, 1 / 4)), ("cells", counts / counts.sum())):
        df = mt.pp.trajectories(
            adata, groupby=None, n_context=1, n_prompts=n, query_sampling=how, random_state=seed
        )
        share = df["t_query"].value_counts(normalize=True).reindex(ages, fill_value=0.0)
        assert np.abs(share.to_numpy() - expected).max() < tol, (how, share)


def _two_groups(n_big=200, n_small=4) -> ad.AnnData:
    big = np.resize([120.0, 240.0, 360.0, 480.0], n_big)
    small = np.resize([120.0, 240.0], n_small)
    obs = pd.DataFrame(
        {
            "age_months": np.concatenate([big, small]),
            "cell_type": ["big"] * n_big + ["small"] * n_small,
        },
        index=[f"c{i}" for i in range(n_big + n_small)],
    )
    return ad.AnnData(obs=obs)


@pytest.mark.parametrize("balance", [None, 0.0, 0.1, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("how", ["time_points", "cells"])
def test_group_balance_follows_the_official_formula(balance, how):
    adata, n = _two_groups(), 4000
    df = mt.pp.trajectories(
        adata, groupby="cell_type", n_context=1, n_prompts=n, group_balance=balance,
        query_sampling=how, random_state=0,
    )  # fmt: skip
    share = (df["group"] == "small").mean()
    # official get_weighted_probs: a group of n_g cells among G weighs (1 - b) n_g + b / G
    b = 0.0 if balance is None else balance
    expected = ((1 - b) * 4 + b / 2) / ((1 - b) * 204 + b)
    if balance is None and how == "cells":  # no draw: cells cycled, each equally often
        assert share == pytest.approx(4 / 204, abs=1 / n)
    else:  # tolerance: 6 standard deviations of the share over n draws
        assert abs(share - expected) < 6 * np.sqrt(expected * (1 - expected) / n)


def test_exclude_times_holds_out_ages():
    adata = _adata()  # ages 240, 360, 480, 600, 720
    t = adata.obs["age_months"]
    excluded = set(adata.obs_names[t.between(360, 480)])
    cols, ctx_cols = ["ctx0", "ctx1", "ctx2", "query"], ["ctx0", "ctx1", "ctx2"]
    df = mt.pp.trajectories(adata, exclude_times=(350, 500), n_prompts=300, random_state=0)
    train, ev = df[df.split == "train"], df[df.split == "eval"]
    assert len(train) == 300
    assert not set(train[cols].stack()) & excluded  # never in training
    assert not set(ev[ctx_cols].stack()) & excluded  # never a context cell
    assert set(ev["query"]) == excluded and len(ev) == 2 * len(excluded)  # once per task
    assert set(ev["t_query"]) == {360.0, 480.0}
    assert df.attrs["maxtoki_trajectories"]["exclude_times"] == [350.0, 500.0]
    inclusive = mt.pp.trajectories(adata, exclude_times=(360, 480), n_prompts=0)
    assert set(inclusive["query"]) == excluded
    # combined with holdout: a cell is held out when either says so
    both = mt.pp.trajectories(
        adata, exclude_times=(350, 500), holdout={"cell_type": "C"}, n_prompts=300
    )
    held = excluded | set(adata.obs_names[adata.obs.cell_type == "C"])
    train, ev = both[both.split == "train"], both[both.split == "eval"]
    assert not set(train[cols].stack()) & held
    assert set(ev["query"]) == held and len(ev) == 2 * len(held)
    assert not set(ev[ctx_cols].stack()) & excluded
    assert (ev[ctx_cols].stack().map(adata.obs["cell_type"]) == "C").any()  # held-out type
    with pytest.warns(UserWarning, match="matches no cell"):
        mt.pp.trajectories(adata, exclude_times=(0, 10))


def test_exclude_times_needs_other_ages_per_group():
    adata = _adata()
    adata.obs.loc[(adata.obs.cell_type == "A") & (adata.obs.sex == "female"), "age_months"] = 360
    with pytest.raises(ValueError, match=r"no cell outside exclude_times.*'A\|female'"):
        mt.pp.trajectories(adata, exclude_times=(300, 400))


def test_options_recorded():
    df = mt.pp.trajectories(_adata(n=60), n_context=2)
    rec = df.attrs["maxtoki_trajectories"]
    assert rec["sort_context"] is False and rec["allow_same_time"] is True
    assert rec["query_sampling"] == "time_points" and rec["group_balance"] == 0.1
    assert rec["exclude_times"] is None
    rec = mt.pp.trajectories(_adata(n=60), n_context=2, **LEGACY).attrs["maxtoki_trajectories"]
    assert {k: rec[k] for k in LEGACY} == LEGACY


def test_module_needs_no_torch():
    import inspect

    import maxtoki.pp._trajectories as module

    assert "torch" not in inspect.getsource(module)
