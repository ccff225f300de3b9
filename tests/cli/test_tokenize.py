"""``maxtoki tokenize``: files → a token store with the tokens of ``mt.pp.tokenize``."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import maxtoki as mt


def _assert_store_holds(store_dir, adata, vocab, obs_keys):
    """Every cell of the store has ``mt.pp.tokenize``'s tokens of the same cell, in order."""
    store = mt.pp.TokenStore(store_dir)
    assert store.complete and len(store) == adata.n_obs
    tokens = adata.obsm["maxtoki_tokens"]
    n = adata.obs["maxtoki_n_tokens"].to_numpy()
    for i in range(adata.n_obs):
        np.testing.assert_array_equal(store[i], tokens[i, : n[i]])
    assert store.obs["obs_name"].tolist() == adata.obs_names.tolist()
    for key in obs_keys:
        expected = adata.obs[key].to_numpy()
        if key == "age_months":
            np.testing.assert_array_equal(store.obs[key].to_numpy(), expected)
        else:
            assert store.obs[key].astype(str).tolist() == pd.Series(expected).astype(str).tolist()
    assert store.vocab.hash == vocab.hash


def test_two_files_give_the_tokens_of_pp_tokenize(cli):
    expected = cli.tokenized(cli.cells, cli.vocab)
    _assert_store_holds(cli.store, expected, cli.vocab, cli.OBS_KEYS)
    store = mt.pp.TokenStore(cli.store)
    assert store.n_shards == 4  # 40 cells per file in chunks of 25
    assert sorted(set(store.obs["source_file"])) == sorted(str(f.resolve()) for f in cli.files)


def test_a_folder_of_files_and_the_official_names(cli, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for f in cli.files:
        shutil.copy(f, folder / f.name)
    (folder / "notes.txt").write_text("not a data file")
    assert cli.run("tokenize", folder, "-o", tmp_path / "store", "--vocab", cli.model_dir) == 0
    expected = cli.tokenized(cli.cells, cli.vocab)
    _assert_store_holds(tmp_path / "store", expected, cli.vocab, [])


def test_a_killed_run_resumes(cli, tmp_path, monkeypatch, capsys):
    """A crash after the first shard; the same command again writes only what is missing."""
    import maxtoki.pp._tokenize_corpus as corpus

    real = corpus._write_shard
    calls = []

    def crash_on_second(out, name, *args):
        calls.append(name)
        if len(calls) == 2 and name == "f00000-r000000000025":  # the first run's second shard
            raise OSError("No space left on device")
        return real(out, name, *args)

    monkeypatch.setattr(corpus, "_write_shard", crash_on_second)
    argv = ["tokenize", *cli.files, "-o", tmp_path / "store", "--vocab", cli.root / "vocab",
            "--obs-keys", *cli.OBS_KEYS, "--chunk-size", "25"]  # fmt: skip
    assert cli.run(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "maxtoki tokenize: error: No space left on device"
    assert not any("Traceback" in line for line in err)
    assert len(mt.pp.TokenStore(tmp_path / "store")) == 25  # the first shard only
    calls.clear()
    assert cli.run(*argv) == 0
    assert len(calls) == 3 and calls[0].endswith("r000000000025")  # not the first again
    expected = cli.tokenized(cli.cells, cli.vocab)
    _assert_store_holds(tmp_path / "store", expected, cli.vocab, cli.OBS_KEYS)


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("loompy") is not None, reason="loompy is installed"
)
def test_loom_without_loompy_says_what_to_install(cli, tmp_path, capsys):
    loom = tmp_path / "cells.loom"
    loom.write_bytes(b"")
    assert cli.run("tokenize", loom, "-o", tmp_path / "store", "--vocab", cli.root / "vocab") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("maxtoki tokenize: error: reading .loom files needs")
    assert "pip install loompy" in err
    assert not (tmp_path / "store").exists()


def test_loom_files_are_converted_once(cli, tmp_path):
    pytest.importorskip("loompy")
    loom = tmp_path / "donors_a.loom"
    adata = cli.cells[:40].copy()
    adata.write_loom(loom)
    argv = ["tokenize", loom, "-o", tmp_path / "store", "--vocab", cli.root / "vocab",
            "--gene-id-key", "ensembl_id"]  # fmt: skip
    assert cli.run(*argv) == 0
    converted = tmp_path / "store.loom-h5ad" / "donors_a.h5ad"
    stamp = converted.stat().st_mtime_ns
    assert cli.run(*argv) == 0  # resumes: the same converted file, nothing rewritten
    assert converted.stat().st_mtime_ns == stamp
    expected = cli.tokenized(adata, cli.vocab)
    _assert_store_holds(tmp_path / "store", expected, cli.vocab, [])
