"""``maxtoki predict/tokenize --scheduler``: shards as tasks on a dask cluster of 2 processes.

The reference is the same command without a cluster (itself checked against mt.tl.predict_time
and mt.tl.embed in test_predict.py, and against mt.pp.tokenize in test_tokenize.py): the table and
the store must be the same, also after a worker dies while writing a shard, and a rerun computes
only the missing shards.
"""

from __future__ import annotations

import os

import dask
import numpy as np
import pandas as pd
import pytest

import maxtoki as mt

distributed = pytest.importorskip("distributed")

OPTIONS = ["--shard-size", "30", "--n-contexts", "2", "--random-state", "5", "--what", "ages",
           "embeddings", "--obs-keys", "age_months", "cell_type"]  # fmt: skip


@pytest.fixture(scope="module")
def local(cli, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("predict") / "local"
    assert cli.run("predict", cli.store, "--model", cli.model_dir, "-o", out, *OPTIONS,
                   *cli.FAST) == 0  # fmt: skip
    return pd.read_parquet(out / "predictions.parquet")


def predict(cli, cluster, out) -> pd.DataFrame:
    address = cluster.scheduler.address
    assert cli.run("predict", cli.store, "--model", cli.model_dir, "-o", out, *OPTIONS, *cli.FAST,
                   "--scheduler", address) == 0  # fmt: skip
    assert not list((out / "shards").glob(".tmp-*"))
    return pd.read_parquet(out / "predictions.parquet")


def test_the_cluster_writes_the_local_table(cli, cluster, local, tmp_path):
    got = predict(cli, cluster, tmp_path / "out")
    assert len(got) == cli.cells.n_obs == 80
    pd.testing.assert_frame_equal(got, local, rtol=1e-5)


def test_a_worker_killed_while_writing_a_shard_loses_nothing(cli, cluster, local, tmp_path):
    """The first shard file written on the cluster is left under its temporary name and its
    worker process exits; dask computes that shard again on a live worker."""
    marker = tmp_path / "killed"

    def patch(marker: str) -> None:  # runs on every worker (pickled by value: a closure)
        from maxtoki import _cli_utils

        real = _cli_utils.replace_atomically

        def die_before_the_rename(tmp, final):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # only the first write dies
            except FileExistsError:
                return real(tmp, final)
            os._exit(1)

        _cli_utils.replace_atomically = die_before_the_rename

    before = set(cluster.scheduler_info()["workers"])
    cluster.run(patch, str(marker))
    try:
        got = predict(cli, cluster, tmp_path / "out")
    finally:
        cluster.wait_for_workers(2, timeout=120)
    assert marker.exists()
    assert len(before - set(cluster.scheduler_info()["workers"])) == 1, "one worker died"
    pd.testing.assert_frame_equal(got, local, rtol=1e-5)


def test_a_rerun_on_the_cluster_computes_only_missing_shards(cli, cluster, local, tmp_path):
    out = tmp_path / "out"
    predict(cli, cluster, out)
    shards = sorted((out / "shards").glob("shard-*.h5ad"))
    assert len(shards) == 3
    stamps = {s.name: s.stat().st_mtime_ns for s in shards}
    shards[1].unlink()
    (out / "shards" / ".tmp-999-shard-00001.h5ad").write_bytes(b"half a file")
    got = predict(cli, cluster, out)
    for s in (shards[0], shards[2]):
        assert s.stat().st_mtime_ns == stamps[s.name]
    assert shards[1].is_file()
    pd.testing.assert_frame_equal(got, local, rtol=1e-5)


def test_a_scheduler_that_does_not_answer(cli, tmp_path, capsys):
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        status = cli.run("predict", cli.store, "--model", cli.model_dir, "-o", tmp_path / "out",
                         *OPTIONS, *cli.FAST, "--scheduler", "tcp://127.0.0.1:9")  # fmt: skip
    assert status == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "predict: error: --scheduler: no dask scheduler answers at 'tcp://127.0.0.1:9'" in err


def test_tokenize_on_the_cluster_writes_the_local_store(cli, cluster, tmp_path):
    out = tmp_path / "store"
    assert cli.run("tokenize", *cli.files, "-o", out, "--vocab", cli.root / "vocab", "--obs-keys",
                   *cli.OBS_KEYS, "--chunk-size", "25", "--scheduler",
                   cluster.scheduler.address) == 0  # fmt: skip
    got, expected = mt.pp.TokenStore(out), mt.pp.TokenStore(cli.store)
    assert got.complete and len(got) == len(expected) == 80
    assert got.manifest["shards"] == expected.manifest["shards"]
    for i in range(len(expected)):
        np.testing.assert_array_equal(got[i], expected[i])
    pd.testing.assert_frame_equal(got.obs, expected.obs)
