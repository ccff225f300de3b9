"""``maxtoki prompts``: the table of ``mt.pp.trajectories``, as CSV that ``maxtoki train`` reads."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

import maxtoki as mt


def _expected(obs: pd.DataFrame, tmp_path, **kwargs) -> pd.DataFrame:
    """``mt.pp.trajectories`` on the same cells, through a CSV (the format read_prompts reads)."""
    with mt.settings.override(verbosity=0):
        df = mt.pp.trajectories(AnnData(obs=obs), **kwargs)
    df.to_csv(tmp_path / "expected.csv")
    return mt.train.read_prompts(tmp_path / "expected.csv")


def test_prompts_of_a_store_are_those_of_trajectories(cli, tmp_path):
    out = tmp_path / "prompts.csv"
    argv = ["prompts", cli.store, "-o", out, "--groupby", "cell_type", "--holdout",
            "cell_type=microglia", "--n-prompts", "50", "--random-state", "3"]  # fmt: skip
    assert cli.run(*argv) == 0
    got = mt.train.read_prompts(out)
    obs = cli.cells.obs[["age_months", "cell_type", "sex", "donor", "condition"]]
    expected = _expected(
        obs, tmp_path, groupby="cell_type", holdout=(obs["cell_type"] == "microglia").to_numpy(),
        n_prompts=50, random_state=3,
    )  # fmt: skip
    pd.testing.assert_frame_equal(got, expected)
    held = set(cli.cells.obs_names[cli.cells.obs["cell_type"] == "microglia"])
    assert set(got.loc[got["split"] == "eval", "query"]) == held
    train = got[got["split"] == "train"]
    names = {n for c in got.columns if c.startswith("ctx") for n in train[c].dropna()}
    assert not names & held and not set(train["query"]) & held


def test_prompts_of_an_h5ad_file_with_the_sampler_options(cli, tmp_path):
    out = tmp_path / "prompts.csv.gz"
    argv = ["prompts", cli.cells_file, "-o", out, "--groupby", "--n-context", "2",
            "--task", "TimeBetweenCells", "--sort-context", "--no-same-time",
            "--query-sampling", "cells", "--group-balance", "none", "--exclude-times", "400",
            "500", "--random-state", "1"]  # fmt: skip
    assert cli.run(*argv) == 0
    expected = _expected(
        cli.cells.obs, tmp_path, groupby=None, n_context=2, task="TimeBetweenCells",
        sort_context=True, allow_same_time=False, query_sampling="cells", group_balance=None,
        exclude_times=(400, 500), random_state=1,
    )  # fmt: skip
    pd.testing.assert_frame_equal(mt.train.read_prompts(out), expected)


def test_maxtoki_train_reads_the_table(cli, tmp_path):
    out = tmp_path / "prompts.csv"
    assert cli.run("prompts", cli.store, "-o", out, "--groupby", "cell_type",
                   "--n-prompts", "16") == 0  # fmt: skip
    (tmp_path / "train.yaml").write_text(
        f"model: tiny\nmodel_overrides: {{hidden_size: 32, intermediate_size: 64}}\n"
        f"tokens: {cli.store}\nprompts: prompts.csv\nmax_genes_per_cell: 8\nsteps: 2\n"
        "global_batch_size: 4\nmicro_batch_size: 4\neval_at_start: false\nquiet: true\n"
        "out_dir: run\ndevice: cpu\nval_fraction: 0.25\n"
    )
    assert cli.run("train", tmp_path / "train.yaml") == 0
    model = mt.models.MaxToki.from_pretrained(tmp_path / "run" / "model", device="cpu")
    assert model.vocab.hash == cli.vocab.hash
