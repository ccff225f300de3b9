"""from_pretrained on a Hugging Face Hub repo id, offline, against a cache laid out as the Hub's.

The cache is built by hand the way ``huggingface_hub`` writes it: ``models--org--name/`` with
``blobs/<sha256>``, ``snapshots/<commit>/<file>`` symlinked to the blobs, and
``refs/<branch>`` holding the commit. No test reaches the network (a guard fails any that tries).
"""

import hashlib
import json
import os
import sys

import pytest
import torch

import maxtoki as mt
from maxtoki.models import MaxToki, MaxTokiConfig
from maxtoki.pp import GeneVocab

huggingface_hub = pytest.importorskip("huggingface_hub")

GENES = {f"ENSG{i:011d}": 1.0 + i / 10 for i in range(30)}
VOCAB = GeneVocab.from_genes(GENES, time_range=None).with_time_tokens((-10, 9))
SIZES = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=64,
)
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any Hub API call fails the test; the offline switches start unset."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the Hugging Face Hub")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def _model(seed: int) -> MaxToki:
    torch.manual_seed(seed)
    return MaxToki(MaxTokiConfig(**SIZES, **VOCAB.model_config_fields()), vocab=VOCAB)


def _cache(cache, repo_id, commit, files, *, refs=("main",), subfolder=""):
    """Put the files of folder ``files`` into ``cache`` as snapshot ``commit`` of ``repo_id``."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    blobs = storage / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot = storage / "snapshots" / commit
    for file in sorted(p for p in files.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / subfolder / file.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def _saved(tmp_path, name, seed=0) -> tuple[MaxToki, os.PathLike]:
    model = _model(seed)
    model.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def _assert_same(loaded: MaxToki, reference: MaxToki) -> None:
    assert loaded.config == reference.config
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    ids = torch.randint(
        0, reference.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)
    assert loaded.vocab.hash == reference.vocab.hash


def test_offline_env_loads_from_the_cache(tmp_path, monkeypatch):
    model, files = _saved(tmp_path, "saved")
    snapshot = _cache(tmp_path / "hub", "org/tiny", COMMIT_A, files)
    assert (snapshot / "model.safetensors").is_symlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at call time, after huggingface_hub's import
    loaded = MaxToki.from_pretrained("org/tiny", cache_dir=tmp_path / "hub", device="cpu")
    _assert_same(loaded, model)


def test_local_files_only_with_a_subfolder(tmp_path):
    model, files = _saved(tmp_path, "saved")
    _cache(tmp_path / "hub", "org/tiny", COMMIT_A, files, subfolder="stage2/final")
    loaded = MaxToki.from_pretrained(
        "org/tiny",
        subfolder="stage2/final",
        cache_dir=tmp_path / "hub",
        local_files_only=True,
        device="cpu",
    )
    _assert_same(loaded, model)
    with pytest.raises(FileNotFoundError, match=r"no config\.json at its top level.*subfolder="):
        MaxToki.from_pretrained("org/tiny", cache_dir=tmp_path / "hub", local_files_only=True)
    with pytest.raises(FileNotFoundError, match=r"no config\.json in its folder 'stage2'"):
        MaxToki.from_pretrained(
            "org/tiny", subfolder="stage2", cache_dir=tmp_path / "hub", local_files_only=True
        )


def test_a_subfolder_of_a_local_folder(tmp_path):
    model, _ = _saved(tmp_path / "repo", "stage2")
    loaded = MaxToki.from_pretrained(tmp_path / "repo", subfolder="stage2", device="cpu")
    _assert_same(loaded, model)
    with pytest.raises(FileNotFoundError, match="no folder 'stage3'"):
        MaxToki.from_pretrained(tmp_path / "repo", subfolder="stage3")
    with pytest.raises(ValueError, match="revision='v1' applies to Hub repos"):
        MaxToki.from_pretrained(tmp_path / "repo", subfolder="stage2", revision="v1")
    for bad in ("../elsewhere", "/abs/path"):
        with pytest.raises(ValueError, match="relative path inside"):
            MaxToki.from_pretrained(tmp_path / "repo", subfolder=bad)


def test_revisions_pick_their_snapshot(tmp_path):
    old, old_files = _saved(tmp_path, "v1", seed=1)
    new, new_files = _saved(tmp_path, "v2", seed=2)
    hub = tmp_path / "hub"
    _cache(hub, "org/tiny", COMMIT_A, old_files, refs=("v1",))
    _cache(hub, "org/tiny", COMMIT_B, new_files, refs=("main",))
    kw = dict(cache_dir=hub, local_files_only=True, device="cpu")
    _assert_same(MaxToki.from_pretrained("org/tiny", **kw), new)
    _assert_same(MaxToki.from_pretrained("org/tiny", revision="main", **kw), new)
    _assert_same(MaxToki.from_pretrained("org/tiny", revision="v1", **kw), old)
    _assert_same(MaxToki.from_pretrained("org/tiny", revision=COMMIT_A, **kw), old)
    with pytest.raises(FileNotFoundError, match="at revision 'v3' is not a local folder"):
        MaxToki.from_pretrained("org/tiny", revision="v3", **kw)


def test_sharded_weights_in_the_cache(tmp_path):
    from safetensors.torch import load_file, save_file

    model, files = _saved(tmp_path, "saved")
    state = load_file(files / "model.safetensors")
    (files / "model.safetensors").unlink()
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[:4], names[4:])):
        save_file({n: state[n] for n in part}, files / f"model-0000{i + 1}-of-00002.safetensors")
        weight_map.update({n: f"model-0000{i + 1}-of-00002.safetensors" for n in part})
    (files / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _cache(tmp_path / "hub", "org/sharded", COMMIT_A, files)
    loaded = MaxToki.from_pretrained(
        "org/sharded", cache_dir=tmp_path / "hub", local_files_only=True, device="cpu"
    )
    _assert_same(loaded, model)


def test_missing_from_the_cache_says_how_to_fix_it(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    with pytest.raises(FileNotFoundError) as error:
        MaxToki.from_pretrained("org/absent", cache_dir=hub, local_files_only=True)
    message = str(error.value)
    assert "'org/absent' is not a local folder and not (completely) in the Hugging Face" in message
    assert "local_files_only=True" in message and "hf download org/absent" in message
    assert str(hub) in message and "cache_dir=" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1 rules out a download"):
        MaxToki.from_pretrained("org/absent", cache_dir=hub)


@pytest.mark.parametrize("bad", ["not a repo!", "org/na--me", "org/name."])
def test_a_bad_repo_id(tmp_path, bad):
    with pytest.raises(ValueError, match="neither a local folder nor a valid Hugging Face Hub"):
        MaxToki.from_pretrained(bad, cache_dir=tmp_path, local_files_only=True)


@pytest.mark.parametrize("path", ["./missing", "/no/such/folder", "a/b/c"])
def test_a_missing_path_is_not_taken_for_a_repo_id(tmp_path, path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        MaxToki.from_pretrained(path, cache_dir=tmp_path, local_files_only=True)
    with pytest.raises(TypeError, match="model folder or a Hub repo id"):
        MaxToki.from_pretrained(3)


def test_pickle_weights_are_refused_and_never_read(tmp_path):
    _, files = _saved(tmp_path, "saved")
    (files / "model.safetensors").unlink()
    (files / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    _cache(tmp_path / "hub", "org/pickled", COMMIT_A, files)
    with pytest.raises(ValueError, match=r"no safetensors weights.*never fetches pickle weights"):
        MaxToki.from_pretrained("org/pickled", cache_dir=tmp_path / "hub", local_files_only=True)


def test_remote_code_is_refused(tmp_path):
    _, files = _saved(tmp_path, "saved")
    config = json.loads((files / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (files / "config.json").write_text(json.dumps(config))
    (files / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    _cache(tmp_path / "hub", "org/evil", COMMIT_A, files)
    with pytest.raises(ValueError, match="never runs code"):
        MaxToki.from_pretrained("org/evil", cache_dir=tmp_path / "hub", local_files_only=True)


def test_only_the_model_files_are_asked_for(tmp_path, monkeypatch):
    asked = {}

    def fake_download(repo_id, **kwargs):
        asked.update(kwargs, repo_id=repo_id)
        raise huggingface_hub.errors.LocalEntryNotFoundError("stop here")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    with pytest.raises(FileNotFoundError):
        MaxToki.from_pretrained("org/tiny", subfolder="s", local_files_only=True)
    patterns = asked["allow_patterns"]
    assert all(p.startswith("s/") for p in patterns)
    names = ["config.json", "model.safetensors", "model-00001-of-00002.safetensors"]
    names += ["model.safetensors.index.json", "token_dictionary.json"]
    names += ["gene_median_dictionary.json"]
    refused = ["modeling_llama.py", "pytorch_model.bin", "model.pt", "tokenizer.pkl", "run.sh"]
    allowed = huggingface_hub.utils.filter_repo_objects(
        [f"s/{n}" for n in names + refused], allow_patterns=patterns
    )
    assert sorted(allowed) == sorted(f"s/{n}" for n in names)
    assert asked["local_files_only"] is True and asked["revision"] is None


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"pip install 'maxtoki\[hub\]'"):
        MaxToki.from_pretrained("org/tiny")


def test_build_model_takes_a_repo_id_from_the_default_cache(tmp_path, monkeypatch):
    model, files = _saved(tmp_path, "saved")
    _cache(tmp_path / "hub", "org/tiny", COMMIT_A, files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    built = mt.train.build_model("org/tiny", vocab=VOCAB)
    _assert_same(built, model)
    assert mt.train.build_model("tiny", vocab=VOCAB, overrides=SIZES).config.hidden_size == 16
