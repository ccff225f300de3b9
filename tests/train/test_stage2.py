"""From released-style stage-1 weights to a temporal model: time tokens, a longer context, training.

The "released" model is a random checkpoint in the official 217M layout (the released vocabulary
of 20,275 tokens, a 4,096-token context) with a small hidden size, written as the release is: a
Hugging Face ``LlamaForCausalLM`` folder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import maxtoki as mt
from maxtoki.models import MaxToki, MaxTokiConfig

SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A random checkpoint in the official 217M layout (small hidden size), with its vocabulary."""
    config = MaxTokiConfig.preset("217M", **SMALL)
    assert (config.vocab_size, config.max_position_embeddings) == (20_275, 4_096)
    torch.manual_seed(0)
    model = MaxToki(config, vocab=mt.pp.GeneVocab.official())
    folder = tmp_path_factory.mktemp("released") / "MaxToki-217M-small-HF"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cells():
    """Atlas cells with official Ensembl IDs, tokenized with the released vocabulary."""
    vocab = mt.pp.GeneVocab.official()
    adata = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=15, n_genes=300, seed=0)
    rng = np.random.default_rng(0)
    adata.var["ensembl_id"] = rng.choice(vocab.gene_ids, adata.n_vars, replace=False)
    adata = adata[(adata.obs["condition"] == "control").to_numpy()].copy()
    mt.pp.tokenize(adata, vocab=vocab)
    return adata


def test_adding_time_tokens_keeps_the_gene_logits(released):
    model = MaxToki.from_pretrained(released, device="cpu")
    genes = model.vocab.gene_token_ids
    ids = torch.tensor([[2, *np.random.default_rng(1).choice(genes, 600), 3]])
    before = model(ids).logits
    model.add_time_tokens(random_state=0)
    after = model(ids).logits
    assert model.config.vocab_size == 23_277 and model.config.time_token_start_id == 20_275
    assert (model.config.boq_token_id, model.config.eoq_token_id) == (23_275, 23_276)
    assert model.vocab.hash == mt.pp.GeneVocab.official(temporal=True).hash
    torch.testing.assert_close(after[..., :20_275], before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="already has time tokens"):
        model.add_time_tokens()


def test_an_extended_context_matches_transformers_at_12k_tokens(released, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = MaxToki.from_pretrained(released, device="cpu")
    model.add_time_tokens(random_state=0)
    model.extend_context(16_384, factor=4.0)
    assert model.config.rope_scaling["original_max_position_embeddings"] == 4_096
    model.save_pretrained(tmp_path / "extended")
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "extended").eval()
    ids = torch.randint(4, 20_000, (1, 12_000), generator=torch.Generator().manual_seed(0))
    last = torch.arange(11_900, 12_000)
    with torch.inference_mode():
        ours = model(ids, logits_positions=last).logits
        ref = theirs(ids).logits[:, last]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=2e-4)
    with pytest.raises(ValueError, match="already extended"):
        model.extend_context(32_768)


def test_fine_tuning_released_weights_from_python(released, cells):
    temporal = mt.pp.GeneVocab.official(temporal=True)
    model, history = mt.tl.train(
        cells, model=str(released), vocab=temporal, steps=3, max_genes_per_cell=16, n_prompts=48,
        config={"max_length": 16_384, "global_batch_size": 4, "micro_batch_size": 4},
        quiet=True, device="cpu",
    )  # fmt: skip
    assert model.config.has_time_tokens and model.config.max_position_embeddings == 16_384
    assert model.config.rope_scaling["factor"] == 4.0 and len(history)
    mt.tl.predict_time(cells, model=model, n_contexts=1, device="cpu")  # the tokens serve it as is
    assert np.isfinite(cells.obs["maxtoki_age"]).all()


def test_fine_tuning_released_weights_from_the_command_line(released, cells, tmp_path):
    (tmp_path / "data").mkdir()
    cells.write_h5ad(tmp_path / "data" / "cells.h5ad")
    mt.pp.tokenize_corpus(
        [tmp_path / "data" / "cells.h5ad"], tmp_path / "store", vocab=mt.pp.GeneVocab.official(),
    )  # fmt: skip
    prompts = mt.pp.trajectories(cells, n_context=2, n_prompts=32, random_state=0)
    prompts.to_csv(tmp_path / "prompts.csv")
    config = {
        "init_from": "released",
        "tokens": "store",
        "vocab": "vocab",
        "prompts": "prompts.csv",
        "steps": 2,
        "global_batch_size": 4,
        "micro_batch_size": 4,
        "max_genes_per_cell": 16,
        "max_length": 8_192,
        "rope_factor": 8.0,
        "out_dir": "run",
        "device": "cpu",
        "quiet": True,
    }
    import shutil

    shutil.copytree(released, tmp_path / "released")
    mt.pp.GeneVocab.official(temporal=True).save(tmp_path / "vocab")
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert mt.train.main([str(tmp_path / "train.yaml")]) == 0
    trained = MaxToki.from_pretrained(tmp_path / "run" / "model", device="cpu")
    assert trained.config.has_time_tokens and trained.config.max_position_embeddings == 8_192
    assert trained.config.rope_scaling["factor"] == 8.0
    assert trained.vocab.hash == mt.pp.GeneVocab.official(temporal=True).hash
