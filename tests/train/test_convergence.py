"""A tiny model trained on the simulated atlas on a CPU learns: validation loss and MAE drop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import maxtoki as mt

MODEL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


@pytest.fixture(scope="module")
def atlas():
    adata = mt.datasets.aging_atlas(
        n_donors=16, n_cells_per_donor=30, n_genes=300, n_cell_types=4, seed=0
    )
    adata = adata[adata.obs["condition"] == "control"].copy()
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    return adata, vocab


def test_time_between_cells_learns_on_heldout_cell_type(atlas):
    """75 steps beat the naive median on a held-out cell type.

    The claim is about the trainer, so the prompts are the sorted, no-Δt=0 kind and the
    readout is in months (``time_scale=1``): with the official sampler and scale 200 the same
    75 steps stay at the naive level (measured, seeds 0/1/2: MAE 548/482/435 vs naive
    526/454/421 months; 150 steps: 527/419/318 vs 526/454/421), see docs/compatibility.md.
    """
    torch.set_num_threads(1)
    adata, vocab = atlas
    held = list(adata.uns["aging_atlas"]["heldout_cell_types"])
    prompts = mt.pp.trajectories(
        adata,
        n_context=2,
        task="TimeBetweenCells",
        holdout={"cell_type": held},
        n_prompts=1200,
        random_state=0,
        sort_context=True,
        allow_same_time=False,
        query_sampling="cells",
        group_balance=None,
    )
    snapshot = adata.copy()
    model, history = mt.tl.train(
        adata,
        vocab=vocab,
        prompts=prompts,
        steps=75,
        max_genes_per_cell=24,
        model_overrides={**MODEL, "time_scale": 1.0},
        config={
            "global_batch_size": 16,
            "micro_batch_size": 16,
            "lr": 3e-3,
            "eval_interval": 25,
            "warmup_steps": 5,
        },
        quiet=True,
    )
    evals = history[history["kind"] == "eval"].reset_index(drop=True)
    assert list(evals["step"]) == [0, 25, 50, 75]
    first, last = evals.iloc[0], evals.iloc[-1]
    assert last["loss"] < 0.5 * first["loss"], evals
    assert last["mae_months"] < 0.6 * first["mae_months"], evals
    # better than the naive predictor: the median training timelapse for every query
    train, ev = prompts[prompts.split == "train"], prompts[prompts.split == "eval"]
    naive = float(np.mean(np.abs(ev["dt_query"] - train["dt_query"].median())))
    assert last["mae_months"] < naive, (last["mae_months"], naive)
    # and its timelapses follow the true ones (0.79 here)
    assert last["timelapse_r"] > 0.5, evals["timelapse_r"]
    assert not model.training
    # the AnnData is untouched
    assert adata.obs.equals(snapshot.obs) and set(adata.obsm) == set(snapshot.obsm)
    assert set(adata.uns) == set(snapshot.uns)


def test_next_cell_cross_entropy_drops(atlas):
    torch.set_num_threads(1)
    adata, vocab = atlas
    _, history = mt.tl.train(
        adata,
        vocab=vocab,
        steps=20,
        task="NextCell",
        n_context=2,
        n_prompts=320,
        max_genes_per_cell=16,
        model_overrides=MODEL,
        config={
            "global_batch_size": 16,
            "micro_batch_size": 16,
            "lr": 3e-3,
            "eval_interval": 20,
            "warmup_steps": 2,
            "val_fraction": 0.1,
        },
        quiet=True,
    )
    evals = history[history["kind"] == "eval"]
    assert evals["ce"].iloc[-1] < 0.9 * evals["ce"].iloc[0], evals
    assert evals["mae_months"].isna().all()  # no TimeBetweenCells prompts


def test_stage1_next_gene(atlas):
    torch.set_num_threads(1)
    adata, vocab = atlas
    _, history = mt.tl.train(
        adata,
        vocab=vocab,
        stage=1,
        steps=15,
        max_genes_per_cell=16,
        model_overrides=MODEL,
        config={
            "global_batch_size": 16,
            "micro_batch_size": 8,
            "lr": 3e-3,
            "eval_interval": 15,
            "warmup_steps": 2,
            "val_fraction": 0.1,
        },
        quiet=True,
    )
    evals = history[history["kind"] == "eval"]
    assert evals["loss"].iloc[-1] < evals["loss"].iloc[0]
    assert (evals["loss"] == evals["ce"]).all()


def test_tl_train_errors(atlas):
    adata, vocab = atlas
    with pytest.raises(ValueError, match=r"run `mt\.pp\.tokenize\(adata\)` first"):
        mt.tl.train(_untokenized(adata), vocab=vocab, steps=1)
    other = mt.pp.GeneVocab.from_genes({"ENSG_X": 1.0})
    with pytest.raises(ValueError, match=r"re-run `mt\.pp\.tokenize`"):
        mt.tl.train(adata, vocab=other, steps=1)
    with pytest.raises(ValueError, match="unknown training config keys"):
        mt.tl.train(adata, vocab=vocab, steps=1, config={"learning_rate": 1})


def _untokenized(adata):
    bare = adata.copy()
    del bare.obsm["maxtoki_tokens"]
    return bare
