"""Bad input to the ``maxtoki`` verbs: exit status 1 and one line saying what is wrong."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

import maxtoki as mt


def _cases(cli, tmp):
    """``(id, argv, words the message must contain)``; ``tmp`` is an empty folder."""
    model, stage1, store = cli.model_dir, cli.stage1_dir, cli.store
    vocab = cli.root / "vocab"
    missing = tmp / "missing.h5ad"
    (tmp / "notes.txt").write_text("x")
    (tmp / "full").mkdir()
    (tmp / "full" / "thesis.tex").write_text("x")
    return [
        ("tokenize: missing file", ["tokenize", missing, "-o", tmp / "s", "--vocab", vocab],
         ["does not exist", "missing.h5ad"]),
        ("tokenize: not h5ad", ["tokenize", tmp / "notes.txt", "-o", tmp / "s", "--vocab", vocab],
         ["neither .h5ad nor .loom"]),
        ("tokenize: empty folder", ["tokenize", tmp / "full", "-o", tmp / "s", "--vocab", vocab],
         ["holds no .h5ad or .loom"]),
        ("tokenize: vocab not a folder",
         ["tokenize", cli.files[0], "-o", tmp / "s", "--vocab", tmp / "nope"],
         ["--vocab", "official"]),
        ("tokenize: folder without a vocabulary",
         ["tokenize", cli.files[0], "-o", tmp / "s", "--vocab", tmp / "full"],
         ["token_dictionary.json"]),
        ("tokenize: unknown obs key",
         ["tokenize", cli.files[0], "-o", tmp / "s", "--vocab", vocab, "--obs-keys", "agee"],
         ["no column", "agee"]),
        ("tokenize: into another folder",
         ["tokenize", cli.files[0], "-o", tmp / "full", "--vocab", vocab],
         ["is not a token store", "new out_dir"]),
        ("tokenize: other options on resume",
         ["tokenize", *cli.files, "-o", store, "--vocab", vocab, "--chunk-size", "10",
          "--obs-keys", *cli.OBS_KEYS],
         ["other parameters", "chunk_size"]),
        ("prompts: missing input", ["prompts", missing, "-o", tmp / "p.csv"], ["does not exist"]),
        ("prompts: not CSV", ["prompts", store, "-o", tmp / "p.parquet"],
         ["CSV", "read_prompts"]),
        ("prompts: column not in the store",
         ["prompts", store, "-o", tmp / "p.csv", "--time-key", "age_years"],
         ["age_years", "--obs-keys"]),
        ("prompts: bad holdout", ["prompts", store, "-o", tmp / "p.csv", "--holdout", "celltype"],
         ["COLUMN=VALUE"]),
        ("prompts: holdout column", ["prompts", store, "-o", tmp / "p.csv", "--holdout", "x=1"],
         ["obs column 'x'"]),
        ("predict: missing model", ["predict", store, "--model", tmp / "nope", "-o", tmp / "o"],
         ["nope"]),
        ("predict: ages of a model without time tokens",
         ["predict", store, "--model", stage1, "-o", tmp / "o"],
         ["no time tokens", "--what embeddings"]),
        ("predict: not a store", ["predict", tmp / "full", "--model", model, "-o", tmp / "o"],
         ["neither", "token store"]),
        ("predict: into another folder",
         ["predict", store, "--model", model, "-o", tmp / "full"], ["not a predict output"]),
        ("predict: no reference cells",
         ["predict", store, "--model", model, "-o", tmp / "o", "--reference", "healthy"],
         ["no reference cells", "--reference"]),
        ("predict: time column not in the store",
         ["predict", store, "--model", model, "-o", tmp / "o", "--time-key", "age_years"],
         ["age_years", "--obs-keys"]),
        ("predict: tokens of another vocabulary",
         ["predict", cli.root / "other_store", "--model", model, "-o", tmp / "o"],
         ["tokenized with vocabulary", f"--vocab {model}"]),
        ("predict: zero shard size",
         ["predict", store, "--model", model, "-o", tmp / "o", "--shard-size", "0"],
         ["--shard-size"]),
        ("predict: prompts longer than the model",
         ["predict", store, "--model", model, "-o", tmp / "o", "--groupby", "cell_type"],
         ["max_length", "max_genes"]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def other_store(cli):
    """A store tokenized with other gene medians (another model's encoding)."""
    other = mt.pp.GeneVocab.from_genes({g: 2 * m for g, m in cli.vocab.gene_medians.items()})
    with mt.settings.override(verbosity=0):
        mt.pp.tokenize_corpus(cli.files[0], cli.root / "other_store", vocab=other)


N_CASES = 22


@pytest.mark.parametrize("i", range(N_CASES))
def test_a_user_error_is_one_line(cli, other_store, tmp_path, capsys, i):
    cases = _cases(cli, tmp_path)
    assert len(cases) == N_CASES
    name, argv, words = cases[i]
    before = json.loads((cli.store / "manifest.json").read_text())
    assert cli.run(*argv) == 1, name
    err = capsys.readouterr().err.strip().splitlines()
    verb = name.split(":")[0]
    assert err and err[-1].startswith(f"maxtoki {verb}: error: "), (name, err)
    assert not any("Traceback" in line for line in err), name
    for word in words:
        assert word in err[-1], (name, word, err[-1])
    assert json.loads((cli.store / "manifest.json").read_text()) == before  # left unchanged


def test_a_rerun_with_other_options_is_refused(cli, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", cli.store, "--model", cli.stage1_dir, "-o", out, "--what", "embeddings",
            "--max-genes", "8", "--device", "cpu", "--shard-size", "40"]  # fmt: skip
    assert cli.run(*argv) == 0
    assert cli.run(*argv[:-1], "50") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "other inputs or options (options.shard_size: 40 → 50)" in err
    assert "use a new --out-dir" in err
    shutil.rmtree(out / "shards")  # nothing left to protect: a new start is allowed
    assert cli.run(*argv[:-1], "50") == 0


def test_traceback_on_request(cli, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mt._cli.main(["--traceback", "prompts", str(tmp_path / "x.h5ad"), "-o", "p.csv"])


def test_usage_errors_are_argparse_s(cli, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run("predict", cli.store)
    assert e.value.code == 2
    assert "the following arguments are required: --model, -o/--out-dir" in capsys.readouterr().err


def test_parquet_without_pyarrow_says_what_to_install(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    argv = ["predict", cli.store, "--model", cli.model_dir, "-o", tmp_path / "o"]
    assert cli.run(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--format parquet needs the `pyarrow` package" in err and "--format h5ad" in err
    assert not (tmp_path / "o").exists()  # refused before any work
