"""Read and write Hugging Face ``LlamaForCausalLM`` folders, through safetensors only.

A folder holds ``config.json``, ``model.safetensors`` (or shards with an index) and, when the
model carries one, its vocabulary (``token_dictionary.json`` and ``gene_median_dictionary.json``).
A name that is not a local folder is read as a Hugging Face Hub repo id (``org/name``): only
those files are fetched (``huggingface_hub``, the optional ``maxtoki[hub]`` extra) into the
Hub's cache, never code and never pickle weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import logging as logg
from .._settings import settings
from .._vocab import GENE_MEDIANS_FILE, TOKEN_DICTIONARY_FILE, GeneVocab
from ._config import MaxTokiConfig, _atomic_write_text

if TYPE_CHECKING:
    from ._decoder import MaxToki

_SINGLE = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_IGNORED_TENSORS = ("rotary_emb.inv_freq",)  # buffers some old transformers versions saved
# the only files fetched from the Hub: no *.py (remote code), no *.bin/*.pt (pickles)
_HUB_FILES = (
    "config.json",
    _INDEX,
    "*.safetensors",
    TOKEN_DICTIONARY_FILE,
    GENE_MEDIANS_FILE,
)
_TRUE = {"1", "ON", "YES", "TRUE"}


def load_pretrained(
    cls: type[MaxToki],
    path: str | os.PathLike,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_backend: str | None = None,
) -> MaxToki:
    """Build ``cls`` from a folder (or Hub repo) with ``config.json`` and safetensors weights."""
    folder, source = _model_folder(
        path,
        subfolder=subfolder,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {source}.")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{config_file} must hold a JSON object.")
    if raw.get("architectures") not in (None, ["LlamaForCausalLM"]):
        raise ValueError(
            f"architectures={raw['architectures']} in {config_file}; expected ['LlamaForCausalLM']."
        )
    try:  # refuses remote code (auto_map / trust_remote_code) and non-Llama settings
        config = MaxTokiConfig.from_dict(raw)
    except ValueError as e:
        raise ValueError(f"{config_file}: {e}") from None
    if attn_backend is not None:
        config = MaxTokiConfig.from_dict({**config.to_dict(), "attn_backend": attn_backend})

    state = _read_tensors(folder)
    with torch.device("meta"):
        model = cls(config)
    _check_state(model, state, config)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    if (folder / TOKEN_DICTIONARY_FILE).is_file():
        try:
            model.vocab = GeneVocab.load(folder)  # checked against the config by the setter
        except ValueError as e:
            raise ValueError(f"the vocabulary in {folder} does not fit the model: {e}") from None
        vocab = f"its vocabulary ({model.vocab.hash})"
    else:
        vocab = f"no vocabulary (no {TOKEN_DICTIONARY_FILE}; model.vocab is None)"
    device = settings.resolve_device(None if device is None else str(device))
    model.to(device=device, dtype=dtype)
    model.eval()
    logg.info(
        f"loaded MaxToki from {source}: {model.num_parameters():,} parameters, "
        f"{config.num_hidden_layers} layers, vocab {config.vocab_size}, {model.dtype} on {device}, "
        f"{vocab}"
    )
    return model


def save_pretrained(model: MaxToki, path: str | os.PathLike) -> None:
    """Write ``config.json``, ``model.safetensors`` and the vocabulary into ``path``.

    Each file is written atomically; the vocabulary only when the model carries one.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # HF convention: tied weights are stored once
        state[name] = tensor.detach().to("cpu").contiguous()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{_SINGLE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt"})
        os.replace(tmp, folder / _SINGLE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stale = folder / _INDEX
    if stale.exists():  # transformers would otherwise read the old shards
        stale.unlink()
        logg.warning(f"removed the stale {stale} (the weights are now in one {_SINGLE}).")
    dtype = str(model.dtype).removeprefix("torch.")
    _atomic_write_text(
        folder / "config.json",
        json.dumps(model.config.to_hf_dict(torch_dtype=dtype), indent=2) + "\n",
    )
    if model.vocab is not None:
        model.vocab.save(folder)
    elif (folder / TOKEN_DICTIONARY_FILE).exists():
        logg.warning(
            f"{folder / TOKEN_DICTIONARY_FILE} was not written by this model (it carries no "
            "vocabulary); from_pretrained will read it and check it against the config."
        )


def _model_folder(
    path: str | os.PathLike,
    *,
    subfolder: str | None,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
) -> tuple[Path, str]:
    """The local folder to read, and how to name it in messages: a folder, or a Hub snapshot."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be a model folder or a Hub repo id (str), got {type(path).__name__}."
        )
    sub = _check_subfolder(subfolder)
    local = Path(path)
    if local.is_dir():
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to Hub repos, but {local} is a local folder; "
                "drop `revision=` (or pass the repo id)."
            )
        folder = local / sub if sub else local
        if not folder.is_dir():
            raise FileNotFoundError(f"no folder {sub!r} in {local}.")
        return folder, str(folder)
    if not isinstance(path, str) or not _looks_like_repo_id(path):
        raise FileNotFoundError(
            f"{path} is not a folder; expected a model folder with config.json (or a Hugging "
            "Face Hub repo id such as 'org/name')."
        )
    return _from_hub(path, sub, revision, cache_dir, local_files_only)


def _check_subfolder(subfolder: str | None) -> str:
    if subfolder is None or subfolder == "":
        return ""
    if not isinstance(subfolder, str):
        raise TypeError(f"subfolder must be a str, got {type(subfolder).__name__}.")
    parts = Path(subfolder).parts
    if Path(subfolder).is_absolute() or ".." in parts or "\\" in subfolder:
        raise ValueError(
            f"subfolder={subfolder!r} must be a relative path inside the model folder or repo "
            "(e.g. 'stage2'), without '..'."
        )
    return "/".join(parts)


def _looks_like_repo_id(name: str) -> bool:
    """``name`` or ``org/name``, not a path: no leading ``.``, ``/``, ``~``; one ``/`` at most."""
    return bool(name) and name[0] not in "./~\\" and name.count("/") <= 1 and "\\" not in name


def _offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) now, or when huggingface_hub read it."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return now.strip().upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def _from_hub(
    repo_id: str,
    sub: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
) -> tuple[Path, str]:
    """Fetch the model's files of ``repo_id`` (or find them in the cache); return the folder."""
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            f"{repo_id!r} is not a local folder, and loading a model from the Hugging Face Hub "
            "needs huggingface_hub: pip install 'maxtoki[hub]'"
        ) from None
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(local_files_only) or _offline()
    at = "" if revision is None else f" at revision {revision!r}"
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=offline,
            allow_patterns=[f"{sub}/{p}" if sub else p for p in _HUB_FILES],
            library_name="maxtoki",
        )
    except HFValidationError as e:
        raise ValueError(
            f"{repo_id!r} is neither a local folder nor a valid Hugging Face Hub repo id "
            f"('org/name'): {e}"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(
            f"the Hub repo {repo_id!r} has no revision {revision!r}; pass a branch, a tag or a "
            "commit hash of it."
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id!r} is not a local folder, and the Hugging Face Hub has no model repo of "
            "that name (or it is private or gated: log in with `hf auth login`)."
        ) from None
    except LocalEntryNotFoundError as e:
        cache = cache_dir if cache_dir is not None else huggingface_hub.constants.HF_HUB_CACHE
        if local_files_only:
            why = "local_files_only=True rules out a download"
        elif offline:
            why = "HF_HUB_OFFLINE=1 rules out a download"
        else:
            why = "the Hub could not be reached"
        raise FileNotFoundError(
            f"{repo_id!r}{at} is not a local folder and not (completely) in the Hugging Face "
            f"cache {cache}, and {why}. Download it once with network access "
            f"(`MaxToki.from_pretrained({repo_id!r})`, or `hf download {repo_id}`), pass the "
            f"`cache_dir=` that holds it, or pass a local model folder. ({e})"
        ) from None
    folder = Path(snapshot) / sub if sub else Path(snapshot)
    source = f"{repo_id}{'/' + sub if sub else ''} (Hub, commit {Path(snapshot).name[:10]})"
    if not (folder / "config.json").is_file():
        where = f"in its folder {sub!r}" if sub else "at its top level"
        raise FileNotFoundError(
            f"the Hub repo {repo_id!r}{at} has no config.json {where}; pass the `subfolder=` "
            "that holds the model."
        )
    if not any((folder / f).is_file() for f in (_SINGLE, _INDEX)):
        raise ValueError(
            f"{source} has no safetensors weights ({_SINGLE} or {_INDEX}); maxtoki reads "
            "safetensors only and never fetches pickle weights (pytorch_model.bin). Convert them "
            "once, in a trusted environment: `LlamaForCausalLM.from_pretrained(src)"
            ".save_pretrained(dst, safe_serialization=True)`, and load `dst`."
        )
    return folder, source


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    single, index = folder / _SINGLE, folder / _INDEX
    if single.is_file():
        shards = {single: None}
    elif index.is_file():
        shards = _read_index(folder, index)
    else:
        pickles = sorted(p.name for pattern in _PICKLE_PATTERNS for p in folder.glob(pattern))
        if pickles:
            raise ValueError(
                f"{folder} holds only pickle weights ({', '.join(pickles)}); maxtoki never "
                "unpickles files. Convert them to safetensors once, in a trusted environment: "
                "`LlamaForCausalLM.from_pretrained(src)"
                ".save_pretrained(dst, safe_serialization=True)`."
            )
        raise FileNotFoundError(f"no {_SINGLE} or {_INDEX} in {folder}.")
    state: dict[str, torch.Tensor] = {}
    for file, names in shards.items():
        try:
            handle = safe_open(str(file), framework="pt", device="cpu")
        except Exception as e:
            raise ValueError(f"{file} is not a readable safetensors file: {e}") from None
        with handle:
            available = set(handle.keys())
            wanted = available if names is None else names
            absent = sorted(set(wanted) - available)
            if absent:
                raise ValueError(
                    f"{_INDEX} lists {absent[:5]} in {file.name}, but that file lacks them."
                )
            for name in sorted(wanted):
                if name.endswith(_IGNORED_TENSORS):
                    continue
                if name in state:
                    raise ValueError(f"tensor {name!r} is stored twice.")
                state[name] = handle.get_tensor(name)
    return state


def _read_index(folder: Path, index: Path) -> dict[Path, set[str]]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(
            f"{index} is not a valid safetensors index (needs a 'weight_map'): {e}"
        ) from None
    if not isinstance(weight_map, dict):
        raise ValueError(f"'weight_map' in {index} must map tensor names to shard files.")
    shards: dict[Path, set[str]] = {}
    roots = _allowed_roots(folder)
    for name, filename in weight_map.items():
        relative = Path(str(filename))
        file = folder / relative
        if (
            relative.is_absolute()
            or ".." in relative.parts
            or not any(file.resolve().is_relative_to(root) for root in roots)
        ):
            raise ValueError(
                f"shard {filename!r} of tensor {name!r} in {index} points outside {folder}."
            )
        if not file.is_file():
            raise FileNotFoundError(f"shard {filename!r} listed in {index} is missing.")
        shards.setdefault(file, set()).add(name)
    return shards


def _allowed_roots(folder: Path) -> list[Path]:
    """Where a shard may really lie: the folder, or a Hub cache snapshot's ``blobs/``.

    In the Hugging Face cache, ``models--org--name/snapshots/<commit>/…`` holds links into
    ``models--org--name/blobs/``; a link anywhere else leaves the checkpoint.
    """
    real = folder.resolve()
    roots = [real]
    for parent in folder.absolute().parents:
        if parent.name == "snapshots" and parent.parent.name.startswith("models--"):
            roots.append((parent.parent / "blobs").resolve())
            break
    return roots


def _check_state(model: MaxToki, state: dict[str, torch.Tensor], config: MaxTokiConfig) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
        state.pop("lm_head.weight", None)
    embed = state.get("model.embed_tokens.weight")
    if embed is not None and embed.ndim == 2 and embed.shape[0] != config.vocab_size:
        raise ValueError(
            f"vocab size mismatch: config.json says vocab_size={config.vocab_size} but "
            f"model.embed_tokens.weight has {embed.shape[0]} rows."
        )
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"the checkpoint is missing {len(missing)} tensor(s): {missing[:5]}.")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ValueError(
            f"the checkpoint has {len(unexpected)} unexpected tensor(s): {unexpected[:5]}."
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ValueError(
                f"tensor {name!r} has shape {tuple(state[name].shape)} "
                f"but config.json implies {shape}."
            )
        if not state[name].dtype.is_floating_point:
            raise ValueError(
                f"tensor {name!r} has dtype {state[name].dtype}; expected floating point."
            )
