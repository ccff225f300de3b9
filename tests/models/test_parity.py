"""Our decoder against transformers.LlamaForCausalLM (a test-only dependency)."""

import json

import pytest
import torch

from maxtoki.models import MaxToki, MaxTokiConfig

transformers = pytest.importorskip("transformers")

LLAMA3 = {
    "rope_type": "llama3",
    "factor": 4.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def _config(**overrides) -> MaxTokiConfig:
    values = dict(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    values.update(overrides)
    return MaxTokiConfig(**values)


def _ids(batch=2, steps=48, vocab=96, seed=0):
    return torch.randint(0, vocab, (batch, steps), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"rope_scaling": LLAMA3},
        {"num_key_value_heads": 4},
        {"num_key_value_heads": 1, "rope_theta": 500.0},
    ],
    ids=["gqa", "llama3-rope", "mha", "mqa-theta"],
)
def test_logits_match_transformers_loaded_from_our_folder(tmp_path, overrides):
    torch.manual_seed(0)
    ours = MaxToki(_config(**overrides)).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = _ids()
    with torch.no_grad():
        a = ours(ids, output_hidden_states=True)
        b = theirs(ids, output_hidden_states=True)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=0)
    assert len(a.hidden_states) == len(b.hidden_states) == 3
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=0)


def test_right_padding_matches_transformers(tmp_path):
    torch.manual_seed(1)
    ours = MaxToki(_config(rope_scaling=LLAMA3)).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = _ids()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 30:] = False
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        b = theirs(ids, attention_mask=mask.long()).logits
    torch.testing.assert_close(a[mask], b[mask], atol=1e-4, rtol=0)


@pytest.mark.parametrize("shard", [False, True])
def test_from_pretrained_reads_transformers_folder(tmp_path, shard):
    hf_config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_scaling=dict(LLAMA3),
        rope_theta=10_000.0,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(2)
    theirs = transformers.LlamaForCausalLM(hf_config).eval()
    kwargs = {"max_shard_size": "20KB"} if shard else {}
    theirs.save_pretrained(tmp_path, safe_serialization=True, **kwargs)
    assert (tmp_path / "model.safetensors.index.json").exists() == shard
    ours = MaxToki.from_pretrained(tmp_path, device="cpu")
    assert ours.config == _config(rope_scaling=LLAMA3)  # head_dim / rope_parameters normalised
    ids = _ids(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-4, rtol=0)


def test_saved_config_keeps_maxtoki_fields(tmp_path):
    config = _config(
        time_token_start_id=40,
        n_time_tokens=20,
        time_min_months=-10,
        boq_token_id=60,
        eoq_token_id=61,
        attn_backend="sdpa",
    )
    MaxToki(config).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == ["LlamaForCausalLM"] and written["model_type"] == "llama"
    assert written["time_token_start_id"] == 40 and written["eoq_token_id"] == 61
    assert MaxToki.from_pretrained(tmp_path, device="cpu").config == config
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path)
    assert hf.config.vocab_size == 96
