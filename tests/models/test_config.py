import json
from pathlib import Path

import pytest
import torch

from maxtoki.models import MaxToki, MaxTokiConfig

REFERENCE = (
    Path(__file__).resolve().parents[3] / "shared/reference/maxtoki/MaxToki-217M-HF.config.json"
)
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 4096,
}


def _n_params_on_meta(config: MaxTokiConfig) -> int:
    with torch.device("meta"):
        return MaxToki(config).num_parameters()


@pytest.mark.parametrize(("name", "expected"), [("217M", 216_946_576), ("1B", 1_049_036_544)])
def test_preset_parameter_counts(name, expected):
    assert _n_params_on_meta(MaxTokiConfig.preset(name)) == expected


def test_1b_preset_vocab_is_the_stage1_vocab():
    # 20 × 47,780,352 per layer + 2,304 final norm + 2 × V × 2,304 = 1,049,036,544 → V = 20,275
    config = MaxTokiConfig.preset("1B")
    assert config.vocab_size == 20_275
    assert config.attention_head_dim == 144 and config.num_key_value_heads == 8


def test_tiny_preset_is_temporal_and_small():
    config = MaxTokiConfig.preset("tiny")
    assert config.has_time_tokens and config.vocab_size == 23_277
    assert config.time_token_id(0) == 21_775 and config.time_token_id(-1500) == 20_275
    assert (config.boq_token_id, config.eoq_token_id) == (23_275, 23_276)
    assert config.hidden_size == 64 and config.num_hidden_layers == 2
    assert MaxTokiConfig.preset("217M", temporal=True).vocab_size == 23_277
    assert MaxTokiConfig.preset("tiny", num_hidden_layers=3).num_hidden_layers == 3
    with pytest.raises(ValueError, match="unknown preset"):
        MaxTokiConfig.preset("7B")


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference config not found at {REFERENCE}")
def test_reference_217m_config_reads_and_counts():
    config = MaxTokiConfig.load(REFERENCE)
    assert config == MaxTokiConfig.preset("217M")
    assert config.attention_head_dim == 154
    assert _n_params_on_meta(config) == 216_946_576


def test_json_round_trip(tmp_path):
    config = MaxTokiConfig.preset(
        "tiny", rope_scaling=LLAMA3, max_position_embeddings=16_384, max_genes_per_cell=256
    )
    assert MaxTokiConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "config.json")
    assert MaxTokiConfig.load(tmp_path) == config
    assert MaxTokiConfig.from_json(tmp_path / "config.json") == config
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == ["LlamaForCausalLM"] and written["model_type"] == "llama"
    assert written["time_token_start_id"] == 20_275 and written["rope_scaling"]["factor"] == 8.0
    assert written["max_genes_per_cell"] == 256
    assert not list(tmp_path.glob(".*tmp"))


def test_reads_transformers5_rope_parameters():
    values = MaxTokiConfig.preset("tiny").to_hf_dict()
    values.pop("rope_scaling")
    values.pop("rope_theta")
    values["rope_parameters"] = {"rope_theta": 500_000.0, **LLAMA3}
    config = MaxTokiConfig.from_dict(values)
    assert config.rope_theta == 500_000.0 and config.rope_scaling == LLAMA3
    values["rope_parameters"] = {"rope_theta": 10_000.0, "rope_type": "default"}
    assert MaxTokiConfig.from_dict(values).rope_scaling is None


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("attention_bias", True, "attention_bias"),
        ("hidden_act", "gelu", "hidden_act"),
        ("mlp_bias", True, "mlp_bias"),
        ("model_type", "mistral", "model_type"),
        ("auto_map", {"AutoModel": "x.Y"}, "remote code"),
        ("rope_scaling", {"rope_type": "yarn", "factor": 2.0}, "llama3"),
        ("rope_scaling", {"rope_type": "llama3", "factor": 2.0}, "missing"),
    ],
)
def test_refuses_unsupported_hf_values(key, value, match):
    values = MaxTokiConfig.preset("tiny").to_hf_dict()
    values[key] = value
    with pytest.raises(ValueError, match=match):
        MaxTokiConfig.from_dict(values)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"hidden_size": 66}, "divisible"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"rms_norm_eps": 0.0}, "rms_norm_eps"),
        ({"attn_backend": "xformers"}, "attn_backend"),
        ({"eos_token_id": 30_000}, "eos_token_id"),
        ({"time_token_start_id": 22_000}, "do not fit"),
        ({"label_scale": -1.0}, "label_scale"),
        ({"boq_token_id": 20_300}, "boq_token_id"),
        ({"max_genes_per_cell": 0}, "max_genes_per_cell"),
    ],
)
def test_validation_names_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        MaxTokiConfig.preset("tiny", **overrides)


def test_type_errors():
    with pytest.raises(TypeError, match="num_hidden_layers"):
        MaxTokiConfig.preset("tiny", num_hidden_layers=2.0)
    with pytest.raises(TypeError, match="tie_word_embeddings"):
        MaxTokiConfig.preset("tiny", tie_word_embeddings=1)


def test_ignores_harmless_hf_keys_and_warns_on_unknown(capsys):
    values = MaxTokiConfig.preset("tiny").to_hf_dict()
    values.update(transformers_version="4.44.2", torch_dtype="float32", use_cache=True)
    MaxTokiConfig.from_dict(values)
    assert "ignoring" not in capsys.readouterr().err
    values["some_new_key"] = 1
    MaxTokiConfig.from_dict(values)
    assert "some_new_key" in capsys.readouterr().err


def test_time_token_helpers():
    config = MaxTokiConfig.preset("tiny")
    assert config.time_token_range == range(20_275, 23_275)
    with pytest.raises(ValueError, match="outside the time tokens"):
        config.time_token_id(1500)
    with pytest.raises(ValueError, match="no time tokens"):
        MaxTokiConfig.preset("217M").time_token_id(0)
