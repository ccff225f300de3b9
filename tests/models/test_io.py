"""from_pretrained / save_pretrained: safetensors only, clear errors on bad folders."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from maxtoki.models import MaxToki, MaxTokiConfig

CONFIG = MaxTokiConfig(
    vocab_size=48,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=64,
)


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    MaxToki(CONFIG).save_pretrained(tmp_path)
    return tmp_path


def _rewrite(folder, change):
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def test_round_trip_and_files(folder):
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    model = MaxToki.from_pretrained(folder, device="cpu", dtype=torch.float64)
    assert model.dtype == torch.float64 and model.config == CONFIG
    torch.manual_seed(0)
    fresh = MaxToki(CONFIG)
    ids = torch.randint(0, 48, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits.float(), fresh(ids).logits, atol=1e-5, rtol=0)


def test_sharded_index(folder):
    state = load_file(folder / "model.safetensors")
    names = sorted(state)
    (folder / "model.safetensors").unlink()
    (folder / "shards").mkdir()
    weight_map = {}
    for i, part in enumerate((names[:5], names[5:])):
        save_file({n: state[n] for n in part}, folder / "shards" / f"part{i}.safetensors")
        weight_map.update({n: f"shards/part{i}.safetensors" for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = MaxToki.from_pretrained(folder, device="cpu")
    torch.testing.assert_close(model.lm_head.weight, state["lm_head.weight"])
    weight_map[names[0]] = "../outside.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="outside"):
        MaxToki.from_pretrained(folder, device="cpu")
    weight_map[names[0]] = "/etc/passwd"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="outside"):
        MaxToki.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda s: s.pop("model.layers.1.mlp.up_proj.weight"),
            "missing.*model.layers.1.mlp.up_proj.weight",
        ),
        (lambda s: s.update(extra=torch.zeros(2)), "unexpected.*extra"),
        (lambda s: s.update({"model.norm.weight": torch.ones(17)}), "model.norm.weight.*shape"),
        (
            lambda s: s.update({"model.embed_tokens.weight": torch.zeros(50, 16)}),
            "vocab size mismatch",
        ),
    ],
    ids=["missing", "unexpected", "shape", "vocab"],
)
def test_malformed_checkpoints(folder, change, match):
    _rewrite(folder, change)
    with pytest.raises(ValueError, match=match):
        MaxToki.from_pretrained(folder, device="cpu")


def test_old_inv_freq_buffers_are_ignored(folder):
    _rewrite(
        folder, lambda s: s.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(4)})
    )
    MaxToki.from_pretrained(folder, device="cpu")


def test_refuses_pickle_only_folder(folder):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match=r"pickle weights.*safetensors"):
        MaxToki.from_pretrained(folder, device="cpu")
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        MaxToki.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize("key", ["auto_map", "trust_remote_code"])
def test_refuses_remote_code(folder, key):
    config = json.loads((folder / "config.json").read_text())
    config[key] = {"AutoModelForCausalLM": "modeling.Evil"} if key == "auto_map" else True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="remote code"):
        MaxToki.from_pretrained(folder, device="cpu")


def test_missing_config_and_corrupt_weights(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        MaxToki.from_pretrained(tmp_path / "nothing", device="cpu")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="safetensors"):
        MaxToki.from_pretrained(folder, device="cpu")


def test_save_replaces_atomically_and_removes_stale_index(folder):
    (folder / "model.safetensors.index.json").write_text("{}")
    MaxToki(CONFIG).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_tied_embeddings_round_trip(tmp_path):
    config = MaxTokiConfig(**{**CONFIG.to_dict(), "tie_word_embeddings": True})
    model = MaxToki(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = MaxToki.from_pretrained(tmp_path, device="cpu")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight)


def test_no_unpickling_in_model_code():
    from pathlib import Path

    import maxtoki.models

    source = "".join(p.read_text() for p in Path(maxtoki.models.__file__).parent.glob("*.py"))
    assert "torch.load" not in source and "import pickle" not in source


def test_import_maxtoki_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, maxtoki; assert 'torch' not in sys.modules; "
        "maxtoki.models; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
