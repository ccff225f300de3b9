"""TrainConfig: YAML, overrides, validation, path resolution; the CLI on a token store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import maxtoki as mt
from maxtoki.train import TrainConfig
from maxtoki.train._cli import main


def test_defaults_and_accumulation_rule():
    cfg = TrainConfig()
    assert cfg.distributed == "ddp" and cfg.on_nan == "raise" and cfg.num_workers == 0
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        TrainConfig(global_batch_size=10, micro_batch_size=4)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(
        ValueError,
        match=r"unknown training config keys \['learning_rate'\]; valid keys are \[.*'lr'",
    ):
        TrainConfig.from_dict({"learning_rate": 1e-3})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("steps", "many", "steps must be an integer"),
        ("steps", 1.5, "steps must be an integer"),
        ("lr", "fast", "lr must be a finite number"),
        ("quiet", "yes", "quiet must be true or false"),
        ("distributed", "horovod", r"distributed must be one of \['ddp', 'fsdp2', 'none'\]"),
        ("betas", [0.9], "betas must be a list of 2 numbers"),
        ("model_overrides", 3, "model_overrides must be a mapping"),
        ("steps", 0, "steps must be >= 1"),
        ("task_mix", 2.0, "task_mix must lie in"),
    ],
)
def test_type_and_value_errors(key, value, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TrainConfig.from_dict({key: value})


def test_yaml_overrides_and_paths(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "train.yaml"
    path.write_text(
        "model: tiny\nmodel_overrides: {hidden_size: 32}\ntokens: store\nprompts: data/p.csv\n"
        "out_dir: run\nlr: 1e-3\nsteps: 10\n"
    )
    cfg = TrainConfig.from_yaml(
        path, ["steps=20", "model_overrides.num_hidden_layers=3", "peak_flops=1e12"]
    )
    assert cfg.steps == 20 and cfg.lr == 1e-3 and cfg.peak_flops == 1e12
    assert cfg.model_overrides == {"hidden_size": 32, "num_hidden_layers": 3}
    assert cfg.tokens == str((tmp_path / "cfg" / "store").resolve())
    assert cfg.prompts == str((tmp_path / "cfg" / "data" / "p.csv").resolve())
    with pytest.raises(ValueError, match="unknown training config key 'stepz'"):
        TrainConfig.from_yaml(path, ["stepz=3"])
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.from_yaml(path, ["steps"])


def test_restrict_paths_refuses_escapes(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("restrict_paths: true\ntokens: ../../etc\n")
    with pytest.raises(ValueError, match="outside the config folder"):
        TrainConfig.from_yaml(path)
    path.write_text("restrict_paths: true\ntokens: /tmp\n")
    with pytest.raises(ValueError, match="outside the config folder"):
        TrainConfig.from_yaml(path)
    path.write_text("restrict_paths: true\ntokens: sub/../store\n")
    assert TrainConfig.from_yaml(path).tokens == str(tmp_path.resolve() / "store")


def test_bad_yaml(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_cli_usage_errors(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text("nonsense_key: 1\n")
    with pytest.raises(SystemExit):
        main([str(path)])
    assert "unknown training config keys ['nonsense_key']" in capsys.readouterr().err


def _atlas_store(tmp_path):
    adata = mt.datasets.aging_atlas(
        n_donors=12, n_cells_per_donor=10, n_genes=200, n_cell_types=3, seed=1
    )
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    adata.write_h5ad(tmp_path / "atlas.h5ad")
    store = mt.pp.tokenize_corpus(tmp_path / "atlas.h5ad", tmp_path / "store", vocab=vocab)
    prompts = mt.pp.trajectories(
        adata, n_context=2, n_prompts=64, holdout={"donor": ["D00", "D01"]}
    )
    prompts.to_csv(tmp_path / "prompts.csv")
    return store


def test_cli_trains_from_a_store(tmp_path):
    torch.set_num_threads(1)
    _atlas_store(tmp_path)
    (tmp_path / "train.yaml").write_text(
        "model: tiny\nmodel_overrides: {hidden_size: 32, intermediate_size: 64}\n"
        "tokens: store\nprompts: prompts.csv\nmax_genes_per_cell: 16\nsteps: 4\n"
        "global_batch_size: 8\nmicro_batch_size: 4\neval_interval: 2\nout_dir: run\n"
        "checkpoint_interval: 2\nquiet: true\nrestrict_paths: true\n"
    )
    assert main([str(tmp_path / "train.yaml"), "warmup_steps=1", "keep_last=1"]) == 0
    run = tmp_path / "run"
    assert (run / "latest").read_text().strip() == "step_000004"
    assert sorted(p.name for p in run.glob("step_*")) == ["step_000004"]  # keep_last=1
    model = mt.models.MaxToki.from_pretrained(run / "model", device="cpu")
    assert model.config.hidden_size == 32
    assert (
        mt.pp.GeneVocab.load(run / "model").hash == mt.pp.TokenStore(tmp_path / "store").vocab.hash
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"train", "eval"}
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 2, 4]
    assert all(np.isfinite(r["loss"]) for r in rows)
