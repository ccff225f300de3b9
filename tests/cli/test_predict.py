"""``maxtoki predict``: the ages of ``mt.tl.predict_time`` and embeddings of ``mt.tl.embed``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import maxtoki as mt

AGES = ["maxtoki_age", "maxtoki_timelapse", "maxtoki_age_std"]
QUIET = {"device": "cpu", "max_genes": 8}


def _quiet(fn, *args, **kwargs):
    with mt.settings.override(verbosity=0):
        return fn(*args, **kwargs)


def test_an_h5ad_file_in_one_shard_equals_the_tools(cli, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", cli.cells_file, "--model", cli.model_dir, "-o", out, "--what", "ages",
            "embeddings", "--format", "h5ad", "--n-contexts", "2", "--random-state", "3",
            "--obs-keys", "age_months", *cli.FAST]  # fmt: skip
    assert cli.run(*argv) == 0
    got = ad.read_h5ad(out / "predictions.h5ad")
    expected = cli.tokenized(cli.cells, cli.vocab)
    model = cli.model_of(cli.model_dir)
    _quiet(mt.tl.predict_time, expected, model=model, groupby="cell_type", n_contexts=2,
           random_state=3, **QUIET)  # fmt: skip
    _quiet(mt.tl.embed, expected, model=model, **QUIET)
    assert got.obs_names.tolist() == expected.obs_names.tolist()
    assert list(got.obs.columns) == [*AGES, "age_months"]
    for c in [*AGES, "age_months"]:
        np.testing.assert_allclose(got.obs[c], expected.obs[c], rtol=1e-6, err_msg=c)
    np.testing.assert_allclose(got.obsm["X_maxtoki"], expected.obsm["X_maxtoki"], atol=1e-5)


def test_without_donors_a_cell_is_never_its_own_context(cli, tmp_path):
    """``--donor-key none``: as ``mt.tl.predict_time(donor_key=None)``, which skips the cell itself.

    With one group the CLI's rule (each cell its own "donor") draws the same contexts in the same
    order as the tool's own rule (the query's row left out of the pool).
    """
    out = tmp_path / "out"
    argv = ["predict", cli.cells_file, "--model", cli.model_dir, "-o", out, "--format", "h5ad",
            "--groupby", "--donor-key", "none", "--n-contexts", "3", "--max-genes", "8",
            "--device", "cpu"]  # fmt: skip
    assert cli.run(*argv) == 0
    got = ad.read_h5ad(out / "predictions.h5ad")
    expected = cli.tokenized(cli.cells, cli.vocab)
    _quiet(mt.tl.predict_time, expected, model=cli.model_of(cli.model_dir), groupby=None,
           donor_key=None, n_contexts=3, **QUIET)  # fmt: skip
    for c in AGES:
        np.testing.assert_allclose(got.obs[c], expected.obs[c], rtol=1e-6, err_msg=c)


def _store_expected(cli, shard_size: int, random_state: int) -> pd.DataFrame:
    """Shard k: ``mt.tl.predict_time(shard, context=reference, random_state=random_state + k)``."""
    cells = cli.tokenized(cli.cells, cli.vocab)
    model = cli.model_of(cli.model_dir)
    obs = cells.obs
    ref = cells[(obs["condition"] == "control").to_numpy() & np.isfinite(obs["age_months"])]
    parts = []
    for k, lo in enumerate(range(0, cells.n_obs, shard_size)):
        shard = cells[lo : lo + shard_size].copy()
        _quiet(mt.tl.predict_time, shard, model=model, context=ref.copy(), groupby="cell_type",
               n_contexts=2, random_state=random_state + k, **QUIET)  # fmt: skip
        parts.append(shard.obs[AGES])
    return pd.concat(parts)


def _predict_store(cli, out, *extra) -> int:
    return cli.run("predict", cli.store, "--model", cli.model_dir, "-o", out, "--shard-size",
                   "30", "--n-contexts", "2", "--random-state", "5", *cli.FAST, *extra)  # fmt: skip


def test_a_store_in_shards_resumes_without_recomputing(cli, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _predict_store(cli, out, "--obs-keys", "age_months", "cell_type") == 0
    first = pd.read_parquet(out / "predictions.parquet")
    assert list(first.columns) == ["obs_name", "source_file", *AGES, "age_months", "cell_type"]
    assert first["obs_name"].tolist() == cli.cells.obs_names.tolist()
    expected = _store_expected(cli, 30, 5)
    for c in AGES:
        np.testing.assert_allclose(first[c], expected[c], rtol=1e-6, err_msg=c)
    np.testing.assert_array_equal(first["age_months"], cli.cells.obs["age_months"])

    shards = sorted((out / "shards").glob("shard-*.h5ad"))
    assert [s.name for s in shards] == ["shard-00000.h5ad", "shard-00001.h5ad", "shard-00002.h5ad"]
    stamps = {s.name: s.stat().st_mtime_ns for s in shards}
    shards[1].unlink()
    calls = []
    real = mt.tl.predict_time

    def counted(adata, **kwargs):
        calls.append(adata.n_obs)
        return real(adata, **kwargs)

    monkeypatch.setattr(mt.tl, "predict_time", counted)
    assert _predict_store(cli, out, "--obs-keys", "age_months", "cell_type") == 0
    assert calls == [30]  # only the deleted shard
    for s in (shards[0], shards[2]):
        assert s.stat().st_mtime_ns == stamps[s.name]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "predictions.parquet"), first)


def test_a_killed_job_resumes(cli, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = mt.tl.predict_time
    calls = []

    def killed_on_second(adata, **kwargs):
        calls.append(adata.n_obs)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a scheduler's SIGINT does mid-shard
        return real(adata, **kwargs)

    monkeypatch.setattr(mt.tl, "predict_time", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        _predict_store(cli, out)
    assert [p.name for p in (out / "shards").iterdir()] == ["shard-00000.h5ad"]
    assert not (out / "predictions.parquet").exists()
    monkeypatch.setattr(mt.tl, "predict_time", real)
    assert _predict_store(cli, out) == 0
    got = pd.read_parquet(out / "predictions.parquet")
    expected = _store_expected(cli, 30, 5)
    for c in AGES:
        np.testing.assert_allclose(got[c], expected[c], rtol=1e-6, err_msg=c)


def test_embeddings_of_a_stage1_model_in_shards(cli, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", cli.store, "--model", cli.stage1_dir, "-o", out, "--what", "embeddings",
            "--shard-size", "25", "--emb-layer", "penultimate", "--emb-mode", "eos",
            "--max-genes", "8", "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    assert cli.run(*argv) == 0
    got = pd.read_parquet(out / "predictions.parquet")
    expected = cli.tokenized(cli.cells, cli.vocab)
    _quiet(mt.tl.embed, expected, model=cli.model_of(cli.stage1_dir), emb_layer="penultimate",
           emb_mode="eos", **QUIET)  # fmt: skip
    emb = got[[f"X_maxtoki_{i}" for i in range(32)]].to_numpy()
    assert list(got.columns[:2]) == ["obs_name", "source_file"] and got.shape[1] == 2 + 32
    np.testing.assert_allclose(emb, expected.obsm["X_maxtoki"], atol=1e-5)
