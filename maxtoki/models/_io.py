"""Read and write Hugging Face ``LlamaForCausalLM`` folders, through safetensors only.

A folder holds ``config.json``, ``model.safetensors`` (or shards with an index) and, when the
model carries one, its vocabulary (``token_dictionary.json`` and ``gene_median_dictionary.json``).
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
from .._vocab import TOKEN_DICTIONARY_FILE, GeneVocab
from ._config import MaxTokiConfig, _atomic_write_text

if TYPE_CHECKING:
    from ._decoder import MaxToki

_SINGLE = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_IGNORED_TENSORS = ("rotary_emb.inv_freq",)  # buffers some old transformers versions saved


def load_pretrained(
    cls: type[MaxToki],
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_backend: str | None = None,
) -> MaxToki:
    """Build ``cls`` from a folder with ``config.json`` and safetensors weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is not a folder; expected a model folder with config.json."
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {folder}.")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{config_file} must hold a JSON object.")
    if "auto_map" in raw or raw.get("trust_remote_code"):
        raise ValueError(
            f"{config_file} asks for remote code (auto_map / trust_remote_code); maxtoki never "
            "runs code from a model folder. Use a plain LlamaForCausalLM checkpoint."
        )
    if raw.get("architectures") not in (None, ["LlamaForCausalLM"]):
        raise ValueError(
            f"architectures={raw['architectures']} in {config_file}; expected ['LlamaForCausalLM']."
        )
    config = MaxTokiConfig.from_dict(raw)
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
        f"loaded MaxToki from {folder}: {model.num_parameters():,} parameters, "
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
    root = folder.resolve()
    shards: dict[Path, set[str]] = {}
    for name, filename in weight_map.items():
        relative = Path(str(filename))
        file = (folder / relative).resolve()
        if relative.is_absolute() or ".." in relative.parts or not file.is_relative_to(root):
            raise ValueError(
                f"shard {filename!r} of tensor {name!r} in {index} points outside {folder}."
            )
        if not file.is_file():
            raise FileNotFoundError(f"shard {filename!r} listed in {index} is missing.")
        shards.setdefault(file, set()).add(name)
    return shards


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
