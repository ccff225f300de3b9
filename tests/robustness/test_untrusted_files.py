"""Untrusted files: nothing maxtoki reads can run code or lead it outside its folder.

Extends ``test_models_io.py`` (plain model folders: pickle-only weights, ``auto_map``, index
shards with ``..``/absolute paths) to the whole package: a static scan of the source, training
checkpoints, token stores, ``TrainConfig`` paths and symlinks. Every malicious pickle here would
create a marker file when unpickled; the marker must never appear.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import maxtoki as mt
from maxtoki.models import MaxToki, MaxTokiConfig
from maxtoki.pp import GeneVocab, TokenStore
from maxtoki.train import TrainConfig, Trainer, build_model
from maxtoki.train import _checkpoint as ck

TESTS = Path(__file__).resolve().parents[1]
PACKAGE = TESTS.parent / "maxtoki"
import train_data as data  # noqa: E402

# --- a static scan of the package --------------------------------------------------------------
#: calls that deserialise code or run strings, by fully qualified name
FORBIDDEN = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
    "cPickle.load", "cPickle.loads", "dill.load", "dill.loads", "cloudpickle.load",
    "cloudpickle.loads", "joblib.load", "marshal.load", "marshal.loads", "shelve.open",
    "pandas.read_pickle", "numpy.lib.format.read_array_header_1_0", "yaml.unsafe_load",
    "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all", "torch.jit.load",
    "torch.package.PackageImporter", "builtins.eval", "builtins.exec", "builtins.compile",
    "code.interact", "runpy.run_path", "runpy.run_module",
}  # fmt: skip
#: dynamic imports of a computed name are allowed only where it comes from a fixed list
IMPORT_MODULE_ALLOWED = {"__init__.py", "_optional.py"}


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    if node.id in aliases:
        head = aliases[node.id]
    elif node.id in ("eval", "exec", "compile", "__import__"):
        head = f"builtins.{node.id}"
    else:
        head = node.id
    return ".".join([head, *reversed(parts)])


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan(source: str, filename: str = "<src>") -> list[str]:
    """Unsafe deserialisation or code execution in ``source``: ``["file:line: why", …]``."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[(a.asname or a.name).split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _qualified(node.func, aliases)
        if name is None:
            continue
        where = f"{filename}:{node.lineno}"
        if name in FORBIDDEN:
            found.append(f"{where}: {name}")
        elif name == "torch.load" and not _is_const(_kw(node, "weights_only"), True):
            found.append(f"{where}: torch.load without weights_only=True")
        elif name in ("numpy.load", "numpy.lib.npyio.load"):
            allow = _kw(node, "allow_pickle")
            if allow is not None and not _is_const(allow, False):
                found.append(f"{where}: numpy.load with allow_pickle")
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            text = ast.unparse(loader) if loader is not None else ""
            if not text.endswith("SafeLoader"):
                found.append(f"{where}: {name} without SafeLoader")
        elif (
            name in ("importlib.import_module", "builtins.__import__")
            and not (node.args and isinstance(node.args[0], ast.Constant))
            and Path(filename).name not in IMPORT_MODULE_ALLOWED
        ):
            found.append(f"{where}: {name} of a computed name")
        elif any(_is_const(k.value, True) for k in node.keywords if k.arg == "trust_remote_code"):
            found.append(f"{where}: trust_remote_code=True")
    return found


def test_scanner_catches_what_it_should():
    bad = """
import pickle, yaml, torch, importlib
import numpy as np
from torch import load as tload
import pandas as pd
pickle.loads(b"")
eval("1")
exec("x = 1")
torch.load("f")
torch.load("f", weights_only=False)
tload("f")
np.load("f", allow_pickle=True)
yaml.load("a: 1")
yaml.load("a: 1", Loader=yaml.FullLoader)
yaml.unsafe_load("a: 1")
pd.read_pickle("f")
importlib.import_module(name)
__import__(name)
AutoModel.from_pretrained("x", trust_remote_code=True)
"""
    good = """
import torch, yaml, importlib
import numpy as np
torch.load("f", map_location="cpu", weights_only=True)
np.load("f", mmap_mode="r")
np.load("f", allow_pickle=False)
yaml.safe_load("a: 1")
yaml.load("a: 1", Loader=yaml.SafeLoader)
__import__("types")
importlib.import_module("json")
model.eval()
torch.compile(model)
"""
    assert len(scan(bad)) == 14, scan(bad)
    assert scan(good) == []


def test_package_never_unpickles_or_executes_strings():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    found = [hit for f in files for hit in scan(f.read_text(), str(f.relative_to(PACKAGE)))]
    assert found == []
    # the one dynamic import takes its name from a fixed tuple of subpackages
    init = (PACKAGE / "__init__.py").read_text()
    assert "if name in _SUBPACKAGES:\n        module = importlib.import_module" in init
    # and the optional-package helper only imports the names of its fixed table
    optional = (PACKAGE / "_optional.py").read_text()
    assert "if name not in _OPTIONAL:\n        raise ValueError" in optional


# --- malicious pickles -------------------------------------------------------------------------
class _Payload:
    """Unpickling it creates ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payloads(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    marker = tmp_path / "PWNED"
    raw = pickle.dumps(_Payload(marker))
    torch.save(_Payload(marker), tmp_path / "payload.pt")  # torch's zip format
    zipped = (tmp_path / "payload.pt").read_bytes()
    (tmp_path / "payload.pt").unlink()
    # positive control: these bytes do run code when unpickled
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()
    return marker, {"pickle": raw, "torch-zip": zipped}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real one-step training checkpoint (``step_000001``)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    config = TrainConfig(
        steps=1, global_batch_size=2, micro_batch_size=2, quiet=True, warmup_steps=0,
        eval_at_start=False, device="cpu", out_dir=str(out),
    )  # fmt: skip
    Trainer(model, data.dataset(8), None, config).fit()
    return out / "step_000001"


def _resume(path: Path):
    torch.set_num_threads(1)
    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    config = TrainConfig(
        steps=2, global_batch_size=2, micro_batch_size=2, quiet=True, warmup_steps=0,
        eval_at_start=False, device="cpu", resume=str(path),
    )  # fmt: skip
    return Trainer(model, data.dataset(8), None, config).fit()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_malicious_trainer_state_is_refused_never_run(tmp_path, checkpoint, kind):
    marker, payloads = _payloads(tmp_path)
    folder = tmp_path / "step_000001"
    shutil.copytree(checkpoint, folder)
    (folder / ck.STATE_FILE).write_bytes(payloads[kind])
    with pytest.raises(ValueError, match=r"trainer_state\.pt is not a maxtoki trainer state"):
        ck.load_trainer_state(folder)
    with pytest.raises(ValueError, match="never unpickled"):
        _resume(folder)
    with pytest.raises(ValueError, match="never unpickled"):
        _resume(tmp_path)  # as the run folder's newest checkpoint
    assert not marker.exists()


def test_pickle_only_checkpoint_is_refused(tmp_path, checkpoint):
    marker, payloads = _payloads(tmp_path)
    folder = tmp_path / "step_000001"
    shutil.copytree(checkpoint, folder)
    (folder / "model.safetensors").unlink()
    for name in ("pytorch_model.bin", "model.pt", "model.ckpt", "weights.pkl"):
        (folder / name).write_bytes(payloads["torch-zip"])
    with pytest.raises(ValueError, match="only pickle weights"):
        _resume(folder)
    with pytest.raises(ValueError, match="only pickle weights"):
        build_model(str(folder))  # init_from
    assert not marker.exists()


def test_unexpected_files_beside_safetensors_are_ignored(tmp_path, checkpoint):
    marker, payloads = _payloads(tmp_path)
    folder = tmp_path / "step_000001"
    shutil.copytree(checkpoint, folder)
    (folder / "pytorch_model.bin").write_bytes(payloads["torch-zip"])
    (folder / "optimizer.pt").write_bytes(payloads["pickle"])
    (folder / "rng_state.pkl").write_bytes(payloads["pickle"])
    (folder / "modeling_maxtoki.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (folder / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    history = _resume(folder)  # the safetensors weights and the plain trainer state are read
    assert history["step"].max() == 2
    reference = MaxToki.from_pretrained(checkpoint, device="cpu").state_dict()
    loaded = MaxToki.from_pretrained(folder, device="cpu").state_dict()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)
    assert not marker.exists()


def test_pickle_disguised_as_safetensors(tmp_path, checkpoint):
    marker, payloads = _payloads(tmp_path)
    folder = tmp_path / "step_000001"
    shutil.copytree(checkpoint, folder)
    for payload in payloads.values():
        (folder / "model.safetensors").write_bytes(payload)
        with pytest.raises(ValueError, match="not a readable safetensors file"):
            _resume(folder)
    # … or listed as a shard of an index
    state = load_file(checkpoint / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    save_file({n: state[n] for n in names[1:]}, folder / "part1.safetensors")
    (folder / "part0.safetensors").write_bytes(payloads["pickle"])
    weight_map = {n: "part1.safetensors" for n in names[1:]} | {names[0]: "part0.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        MaxToki.from_pretrained(folder, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"auto_map": {"AutoModelForCausalLM": "modeling_maxtoki.Evil"}},
        {"trust_remote_code": True},
        {"auto_map": {}},
    ],
    ids=["auto_map", "trust_remote_code", "empty_auto_map"],
)
def test_remote_code_configs_are_refused_everywhere(tmp_path, checkpoint, change):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "step_000001"
    shutil.copytree(checkpoint, folder)
    (folder / "modeling_maxtoki.py").write_text(f"open({str(marker)!r}, 'w')\n")
    config = json.loads((folder / "config.json").read_text()) | change
    (folder / "config.json").write_text(json.dumps(config))
    for load in (
        lambda: MaxTokiConfig.load(folder),
        lambda: MaxTokiConfig.from_dict(config),
        lambda: MaxToki.from_pretrained(folder, device="cpu"),
        lambda: build_model(str(folder)),
        lambda: _resume(folder),
    ):
        with pytest.raises(ValueError, match="remote code"):
            load()
    assert not marker.exists()


# --- token stores ------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    ids = [f"ENSG{i:011d}" for i in range(12)]
    vocab = GeneVocab.from_genes(dict.fromkeys(ids, 1.0), time_range=None)
    X = np.random.default_rng(0).poisson(1.0, (30, 12)).astype(np.float32)
    a = ad.AnnData(sp.csr_matrix(X), var=pd.DataFrame({"ensembl_id": ids}, index=ids))
    a.write_h5ad(tmp_path / "a.h5ad")
    mt.settings.verbosity = 0
    try:
        mt.pp.tokenize_corpus(tmp_path / "a.h5ad", tmp_path / "store", vocab=vocab, chunk_size=10)
    finally:
        mt.settings.verbosity = 2
    return tmp_path / "store"


@pytest.mark.parametrize("name", ["tokens.npy", "offsets.npy"])
def test_pickled_arrays_in_a_token_store_are_refused(tmp_path, store, name):
    marker = tmp_path / "PWNED"
    shard = sorted((store / "shards").iterdir())[0]
    with (shard / name).open("wb") as f:
        np.save(f, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=f"{name}.*not a plain .*damaged"):
        TokenStore(store)[0]
    assert not marker.exists()
    np.save(shard / name, np.zeros(3, dtype=np.float64))  # a plain array of the wrong type
    with pytest.raises(ValueError, match="expected 1-D"):
        TokenStore(store)[0]


@pytest.mark.parametrize("name", ["../../outside", "/etc", "f00000-r000000000000/../../x"])
def test_token_store_shard_names_cannot_escape(store, name):
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["shards"][0]["name"] = name
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="invalid names"):
        TokenStore(store)


# --- paths in TrainConfig YAML -----------------------------------------------------------------
PATH_FIELDS = ["tokens", "prompts", "vocab", "out_dir", "init_from", "resume"]


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "cfg" / "data").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "cfg" / "escape")  # a link out of the folder
    os.symlink(tmp_path / "cfg" / "data", tmp_path / "cfg" / "inner")  # a link within it
    return tmp_path / "cfg"


@pytest.mark.parametrize("field", PATH_FIELDS)
@pytest.mark.parametrize(
    "value",
    ["../outside", "data/../../outside", "{abs}", "escape", "escape/store", "~/store"],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "under-symlink", "home"],
)
def test_restrict_paths_keeps_every_path_inside(config_dir, field, value):
    value = value.format(abs=config_dir.parent / "outside")
    path = config_dir / "train.yaml"
    path.write_text(f"restrict_paths: true\n{field}: {json.dumps(value)}\n")
    with pytest.raises(ValueError, match=f"{field}=.*outside the config folder"):
        TrainConfig.from_yaml(path)
    # a command-line override is held to the same rule
    path.write_text("restrict_paths: true\n")
    with pytest.raises(ValueError, match="outside the config folder"):
        TrainConfig.from_yaml(path, [f"{field}={json.dumps(value)}"])


@pytest.mark.parametrize("field", PATH_FIELDS)
def test_restrict_paths_allows_the_inside(config_dir, field):
    path = config_dir / "train.yaml"
    for value in ("data", "inner/x", "data/../data/y", str(config_dir / "data")):
        path.write_text(f"restrict_paths: true\n{field}: {json.dumps(value)}\n")
        got = Path(getattr(TrainConfig.from_yaml(path), field))
        assert got.is_relative_to(config_dir.resolve())


def test_paths_are_free_without_restrict_paths(config_dir):
    """By design (documented): without ``restrict_paths`` a config may name any folder."""
    path = config_dir / "train.yaml"
    path.write_text("tokens: ../outside\nout_dir: /tmp/run\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.tokens == str((config_dir.parent / "outside").resolve())
    assert cfg.out_dir == str(Path("/tmp/run").resolve())


def test_symlinked_index_shard_cannot_escape(tmp_path, checkpoint):
    marker, _ = _payloads(tmp_path)
    folder = tmp_path / "model"
    shutil.copytree(checkpoint, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    save_file({n: state[n] for n in names}, tmp_path / "outside.safetensors")
    os.symlink(tmp_path / "outside.safetensors", folder / "part0.safetensors")
    weight_map = dict.fromkeys(names, "part0.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="points outside"):
        MaxToki.from_pretrained(folder, device="cpu")
    # a ".." that comes back inside is refused too (the rule is: no "..", no absolute paths)
    (folder / "part0.safetensors").unlink()
    save_file({n: state[n] for n in names}, folder / "part0.safetensors")
    weight_map = dict.fromkeys(names, "sub/../part0.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="points outside"):
        MaxToki.from_pretrained(folder, device="cpu")
    weight_map = dict.fromkeys(names, "part0.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    MaxToki.from_pretrained(folder, device="cpu")
    assert not marker.exists()
