"""A new time head starts in scale: the time tokens no answer can reach are pushed down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import maxtoki as mt
from maxtoki.models import Collator, predict_timelapse
from maxtoki.train import ArrayTokens, TrainConfig, build_datasets, build_model, start_time_readout

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2}  # fmt: skip


@pytest.fixture(scope="module")
def cells():
    adata = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=15, n_genes=300, seed=0)
    adata = adata[(adata.obs["condition"] == "control").to_numpy()].copy()
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    return adata, vocab


@pytest.fixture(scope="module")
def data(cells):
    adata, vocab = cells
    matrix = adata.obsm["maxtoki_tokens"]
    source = ArrayTokens(matrix, adata.obs["maxtoki_n_tokens"].to_numpy(), names=adata.obs_names)
    prompts = mt.pp.trajectories(adata, n_context=2, n_prompts=64, time_range=vocab.time_range,
                                 random_state=0)  # fmt: skip
    config = TrainConfig(stage=2, max_genes_per_cell=16, task_mix=0.75)
    train, _ = build_datasets(config, source, vocab, max_length=256, prompts=prompts)
    return train, Collator(vocab_size=len(vocab))


def _eoq_read_out(model, train, collator):
    """Expected timelapses (months) and the time mass on unreachable tokens at ``<eoq>``."""
    batch = collator([train[i] for i in range(len(train))])
    with torch.no_grad():
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    at = batch["eoq_index"][~torch.isnan(batch["time_target"])]
    logits = logits[at[:, 0], at[:, 1]]
    config = model.config
    time = logits[:, config.time_token_start_id :][:, : config.n_time_tokens].softmax(-1)
    values = torch.arange(config.n_time_tokens) + config.time_min_months
    unreachable = (values * config.time_scale).abs() > 1500
    return predict_timelapse(logits, config)[0], time[:, unreachable].sum(-1)


def test_a_new_time_head_starts_in_scale_and_nothing_else_moves(cells, data):
    train, collator = data
    model = build_model("tiny", vocab=cells[1], overrides=SMALL, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pred, unreachable = _eoq_read_out(model, train, collator)
    assert pred.abs().median() > 5_000 and unreachable.min() > 0.9  # the problem it solves

    assert start_time_readout(model, train, collator)
    pred, unreachable = _eoq_read_out(model, train, collator)
    assert pred.abs().max() <= 1_500 and unreachable.max() < 1e-6
    after = model.state_dict()
    for name, value in before.items():
        if name != "lm_head.weight":
            assert torch.equal(after[name], value), name
    config = model.config
    values = torch.arange(config.n_time_tokens) + config.time_min_months
    moved = torch.zeros(config.vocab_size, dtype=torch.bool)
    moved[config.time_token_start_id : config.time_token_start_id + config.n_time_tokens] = (
        values * config.time_scale
    ).abs() > 1500
    change = after["lm_head.weight"] - before["lm_head.weight"]
    assert torch.equal(change[~moved], torch.zeros_like(change[~moved]))
    assert torch.linalg.matrix_rank(change[moved]) == 1  # one direction: the mean <eoq> state
    assert not start_time_readout(model, train, collator)  # in scale now: left alone
    assert torch.equal(model.lm_head.weight, after["lm_head.weight"])


def test_a_head_without_unreachable_tokens_is_left_alone(cells, data):
    train, collator = data
    model = build_model("tiny", vocab=cells[1], overrides={**SMALL, "time_scale": 1}, seed=0)
    weight = model.lm_head.weight.clone()
    assert not start_time_readout(model, train, collator)
    assert torch.equal(model.lm_head.weight, weight)


def test_stage_2_validates_in_scale_from_its_first_step(cells, caplog):
    adata, vocab = cells
    _, history = mt.tl.train(
        adata, vocab=vocab, steps=2, max_genes_per_cell=16, n_prompts=64, random_state=0,
        model_overrides=SMALL, quiet=True, device="cpu",
        config={"global_batch_size": 8, "micro_batch_size": 8, "eval_interval": 1,
                "time_readout_start": True},
    )  # fmt: skip
    first = history[history["kind"] == "eval"].iloc[0]
    assert first["step"] == 0 and np.isfinite(first["mae_months"])
    assert first["mae_months"] < 1_500
    assert any("the new time head starts in scale" in r.getMessage() for r in caplog.records)
