"""The model configuration: a validated dataclass that reads and writes HF ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .. import logging as logg

AttnBackend = Literal["auto", "flash", "sdpa", "eager"]
_BACKENDS = ("auto", "flash", "sdpa", "eager")
_N_SPECIAL = 4  # <pad>, <mask>, <bos>, <eos> in the official vocabularies
_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")

# HF keys that never change the maths of a Llama decoder: read and ignored.
# fmt: off
_IGNORED_HF_KEYS = frozenset({
    "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "use_cache",
    "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward",
    "is_encoder_decoder", "id2label", "label2id", "problem_type", "tokenizer_class",
    "_name_or_path", "name_or_path", "tf_legacy_loss", "use_bfloat16", "pruned_heads",
    "torchscript", "add_cross_attention", "cross_attention_hidden_size", "is_decoder",
    "finetuning_task", "prefix", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    "_attn_implementation", "_attn_implementation_autoset", "_commit_hash", "num_labels",
})
# fmt: on
# HF keys we accept only at the value a plain Llama decoder has.
_REQUIRED_HF_VALUES = {
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "pretraining_tp": 1,
    "attention_dropout": 0.0,
    "partial_rotary_factor": 1.0,
    "model_type": "llama",
}

_TEMPORAL = {
    "vocab_size": 23_277,
    "time_token_start_id": 20_275,
    "n_time_tokens": 3_000,
    "time_min_months": -1_500,
    "boq_token_id": 23_275,
    "eoq_token_id": 23_276,
}
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        **_TEMPORAL,
    },
    "217M": {
        "vocab_size": 20_275,
        "hidden_size": 1232,
        "intermediate_size": 2464,
        "num_hidden_layers": 11,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
    },
    "1B": {
        "vocab_size": 20_275,
        "hidden_size": 2304,
        "intermediate_size": 4608,
        "num_hidden_layers": 20,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
    },
}


@dataclass
class MaxTokiConfig:
    """Configuration of a MaxToki decoder, field-compatible with HF ``LlamaConfig``.

    The defaults are the released 217M model (stage 1, vocabulary of 20,275 tokens). Use
    :meth:`preset` for ``"tiny"``, ``"217M"`` and ``"1B"``, and :meth:`load` for a ``config.json``.

    Attributes
    ----------
    vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads
        Sizes of the decoder, as in ``LlamaConfig``.
    num_key_value_heads
        Key/value heads for grouped-query attention; ``None`` means ``num_attention_heads``.
    head_dim
        Size of one attention head; ``None`` means ``hidden_size // num_attention_heads``
        (see :attr:`attention_head_dim`).
    max_position_embeddings
        Context length the model was trained for.
    rms_norm_eps, rope_theta, initializer_range, tie_word_embeddings
        As in ``LlamaConfig``.
    rope_scaling
        ``None`` or a Llama-3.1 dict: ``{"rope_type": "llama3", "factor", "low_freq_factor",
        "high_freq_factor", "original_max_position_embeddings"}``.
    pad_token_id, bos_token_id, eos_token_id
        Special tokens (0, 2, 3 in the official vocabulary).
    time_token_start_id
        Id of the smallest time token (20275 in the temporal vocabulary), ``None`` without one.
    n_time_tokens, time_min_months
        Number of time tokens and the month of the first one: token id
        ``time_token_start_id + (months - time_min_months)``.
    boq_token_id, eoq_token_id
        ``<boq>`` and ``<eoq>`` (23275 and 23276), ``None`` without a temporal vocabulary.
    time_scale
        Months per unit of the time-token values in the TimeBetweenCells read-out: the
        prediction is ``time_scale × E[v]`` months, ``E[v]`` the expected token value (−1500…1499)
        under the softmax at ``<eoq>`` restricted to the time tokens. ``200`` is the official
        convention (``label_scalar``: the model learns ``Δt / 200``); ``1`` reads ``E[v]`` itself
        as months (models trained by maxtoki 0.1, whose ``config.json`` has no such key).
    label_scale, non_time_penalty
        The timelapse loss: ``((pred - target) / label_scale)²`` (months) plus
        ``non_time_penalty`` times the probability mass on non-time tokens; with
        ``time_scale = label_scale = 200`` this is the official ``(E[v] - Δt / 200)² + 10 ×``
        non-time mass.
    attn_backend
        ``"auto"`` (flash-attn on CUDA in fp16/bf16 when installed, else SDPA), ``"flash"``,
        ``"sdpa"`` or ``"eager"``.
    max_genes_per_cell
        Genes per cell the model was trained with (set by the trainers; saved in ``config.json``):
        the ``mt.tl`` tools cut cells to this many top-ranked genes. ``None``: not recorded.
    """

    vocab_size: int = 20_275
    hidden_size: int = 1232
    intermediate_size: int = 2464
    num_hidden_layers: int = 11
    num_attention_heads: int = 8
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10_000.0
    rope_scaling: dict[str, Any] | None = None
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    time_token_start_id: int | None = None
    n_time_tokens: int = 3000
    time_min_months: int = -1500
    boq_token_id: int | None = None
    eoq_token_id: int | None = None
    time_scale: float = 200.0
    label_scale: float = 200.0
    non_time_penalty: float = 10.0
    attn_backend: AttnBackend = "auto"
    max_genes_per_cell: int | None = None

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
            "n_time_tokens",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("time_min_months", self.time_min_months)
        if self.max_genes_per_cell is not None:
            _check_int("max_genes_per_cell", self.max_genes_per_cell, minimum=1)
        if self.head_dim is not None:
            _check_int("head_dim", self.head_dim, minimum=2)
        elif self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); or set head_dim explicitly."
            )
        if self.attention_head_dim % 2:
            raise ValueError(
                f"the attention head dim must be even for RoPE, got {self.attention_head_dim}."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})."
            )
        for name in ("rms_norm_eps", "rope_theta", "label_scale", "time_scale"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("initializer_range", "non_time_penalty"):
            _check_float(name, getattr(self, name), positive=False)
        if not isinstance(self.tie_word_embeddings, bool):
            raise TypeError(
                f"tie_word_embeddings must be a bool, got {self.tie_word_embeddings!r}."
            )
        if self.attn_backend not in _BACKENDS:
            raise ValueError(f"attn_backend must be one of {_BACKENDS}, got {self.attn_backend!r}.")
        self.rope_scaling = _check_rope_scaling(self.rope_scaling)
        for name in (
            "pad_token_id",
            "bos_token_id",
            "eos_token_id",
            "time_token_start_id",
            "boq_token_id",
            "eoq_token_id",
        ):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, minimum=0)
                if value >= self.vocab_size:
                    raise ValueError(
                        f"{name}={value} is outside the vocabulary (vocab_size={self.vocab_size})."
                    )
        if self.time_token_start_id is not None:
            end = self.time_token_start_id + self.n_time_tokens
            if end > self.vocab_size:
                raise ValueError(
                    f"time tokens {self.time_token_start_id}..{end - 1} (time_token_start_id + "
                    f"n_time_tokens) do not fit in vocab_size={self.vocab_size}."
                )
            for name in ("boq_token_id", "eoq_token_id", "eos_token_id", "bos_token_id"):
                value = getattr(self, name)
                if value is not None and self.time_token_start_id <= value < end:
                    raise ValueError(f"{name}={value} falls inside the time-token range.")

    # -- derived values ---------------------------------------------------------------------
    @property
    def attention_head_dim(self) -> int:
        """Size of one attention head (``head_dim`` or ``hidden_size // num_attention_heads``)."""
        return (
            self.head_dim
            if self.head_dim is not None
            else self.hidden_size // self.num_attention_heads
        )

    @property
    def has_time_tokens(self) -> bool:
        """Whether the vocabulary has time tokens (a temporal, stage-2 vocabulary)."""
        return self.time_token_start_id is not None

    @property
    def time_token_range(self) -> range:
        """Ids of the time tokens; raises ``ValueError`` without a temporal vocabulary."""
        self._require_time_tokens()
        return range(self.time_token_start_id, self.time_token_start_id + self.n_time_tokens)

    def time_token_id(self, months: int) -> int:
        """Token id of a timelapse in months: ``time_token_start_id + months - time_min_months``."""
        self._require_time_tokens()
        offset = int(months) - self.time_min_months
        if not 0 <= offset < self.n_time_tokens:
            raise ValueError(
                f"{months} months is outside the time tokens "
                f"[{self.time_min_months}, {self.time_min_months + self.n_time_tokens - 1}]."
            )
        return self.time_token_start_id + offset

    def non_gene_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(vocab_size,)`` bool, ``True`` at every token that is not a gene.

        Those are ids below 4 (``<pad> <mask> <bos> <eos>``), the configured pad/bos/eos ids, the
        time tokens, ``<boq>`` and ``<eoq>``.
        """
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device=device)
        mask[: min(_N_SPECIAL, self.vocab_size)] = True
        for token in (
            self.pad_token_id,
            self.bos_token_id,
            self.eos_token_id,
            self.boq_token_id,
            self.eoq_token_id,
        ):
            if token is not None:
                mask[token] = True
        if self.time_token_start_id is not None:
            mask[self.time_token_start_id : self.time_token_start_id + self.n_time_tokens] = True
        return mask

    def _require_time_tokens(self) -> None:
        if self.time_token_start_id is None:
            raise ValueError(
                "this config has no time tokens (time_token_start_id is None); TimeBetweenCells "
                "and NextCell need the temporal vocabulary: use a temporal checkpoint or call "
                "`model.add_time_tokens()`."
            )

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def preset(
        cls, name: Literal["tiny", "217M", "1B"], *, temporal: bool | None = None, **overrides: Any
    ) -> MaxTokiConfig:
        """A named configuration.

        Parameters
        ----------
        name
            ``"tiny"`` (CPU tests, temporal vocabulary), ``"217M"`` (the released model), ``"1B"``.
        temporal
            Use the temporal vocabulary (23,277 tokens with time tokens, ``<boq>``, ``<eoq>``).
            ``None`` keeps the preset's own vocabulary.
        **overrides
            Fields to change.
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(_PRESETS)}.")
        values = dict(_PRESETS[name])
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(
                f"unknown MaxTokiConfig fields {unknown}; valid fields: "
                f"{[f.name for f in dataclasses.fields(cls)]}"
            )
        if temporal:
            values.update(_TEMPORAL)
        elif temporal is False:
            values.update(
                vocab_size=20_275, time_token_start_id=None, boq_token_id=None, eoq_token_id=None
            )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MaxTokiConfig:
        """Build from :meth:`to_dict` output or an HF ``LlamaConfig`` dict (``config.json``)."""
        if not isinstance(values, dict):
            raise TypeError(f"expected a dict, got {type(values).__name__}.")
        values = dict(values)
        if "auto_map" in values or values.get("trust_remote_code"):
            raise ValueError(
                "this config asks for remote code (auto_map / trust_remote_code); maxtoki only "
                "reads plain LlamaForCausalLM checkpoints and never runs code from a model folder."
            )
        for key, allowed in _REQUIRED_HF_VALUES.items():
            if key in values:
                value = values.pop(key)
                if value != allowed and not (key == "attention_dropout" and value in (0, None)):
                    raise ValueError(
                        f"unsupported {key}={value!r}: the MaxToki decoder supports only "
                        f"{key}={allowed!r} (a plain Llama decoder)."
                    )
        rope_parameters = values.pop("rope_parameters", None)
        if rope_parameters is not None:  # transformers >= 5 layout
            if not isinstance(rope_parameters, dict):
                raise TypeError(f"rope_parameters must be a dict, got {rope_parameters!r}.")
            rope_parameters = dict(rope_parameters)
            if "rope_theta" in rope_parameters:
                values["rope_theta"] = rope_parameters.pop("rope_theta")
            if (
                rope_parameters.get("rope_type", rope_parameters.get("type", "default"))
                != "default"
            ):
                values["rope_scaling"] = rope_parameters
        if isinstance(values.get("rope_scaling"), dict):
            scaling = dict(values["rope_scaling"])
            scaling.pop("rope_theta", None)
            if scaling.get("rope_type", scaling.get("type")) == "default":
                scaling = None
            values["rope_scaling"] = scaling
        if isinstance(values.get("eos_token_id"), list):
            eos = values["eos_token_id"]
            if len(eos) != 1:
                raise ValueError(f"eos_token_id must be a single id, got {eos}.")
            values["eos_token_id"] = eos[0]
        heads, hidden = values.get("num_attention_heads"), values.get("hidden_size")
        if isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
            if values.get("head_dim") == hidden // heads and hidden % heads == 0:
                values["head_dim"] = None  # the default, written out by transformers >= 4.45
        _infer_temporal_fields(values)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - _IGNORED_HF_KEYS)
        if unknown:
            logg.warning(f"MaxTokiConfig: ignoring unknown config keys {unknown}.")
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Fields as a JSON-safe dict (the inverse of :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["rope_scaling"] = None if self.rope_scaling is None else dict(self.rope_scaling)
        return out

    def to_hf_dict(self, *, torch_dtype: str | None = None) -> dict[str, Any]:
        """``config.json`` content that ``transformers.LlamaForCausalLM`` reads.

        MaxToki fields are kept under their names (transformers ignores unknown keys).
        """
        out: dict[str, Any] = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
        out.update(self.to_dict())
        if self.head_dim is None or self.head_dim == self.hidden_size // self.num_attention_heads:
            out.pop("head_dim")
        out.update(attention_bias=False, attention_dropout=0.0, hidden_act="silu", mlp_bias=False)
        out.update(pretraining_tp=1, use_cache=True)
        if torch_dtype is not None:
            out["torch_dtype"] = torch_dtype
        return dict(sorted(out.items()))

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_hf_dict` as JSON to ``path`` (atomically)."""
        _atomic_write_text(Path(path), json.dumps(self.to_hf_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> MaxTokiConfig:
        """Read a ``config.json`` file, or the ``config.json`` in a model folder."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}.")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(values)

    from_json = load


def _infer_temporal_fields(values: dict[str, Any]) -> None:
    """Fill what a ``config.json`` written elsewhere leaves out: the time-token layout and scale.

    A config of the official temporal vocabulary size (23,277) without time-token fields (a
    released temporal checkpoint) gets the released layout. A config without ``time_scale``
    gets 1 when maxtoki 0.1 wrote it (it has ``label_scale``; that version read ``E[v]`` as
    months) and the official 200 otherwise; both are logged when the model has time tokens.
    """
    if values.get("vocab_size") == _TEMPORAL["vocab_size"] and "time_token_start_id" not in values:
        values.update(_TEMPORAL)
        logg.info(
            "config.json: vocab_size 23,277 without time-token fields: the released temporal "
            "layout (time tokens 20,275–23,274 = −1500…1499 months, <boq> 23,275, <eoq> 23,276)"
        )
    if "time_scale" in values:
        return
    old = "label_scale" in values
    values["time_scale"] = 1.0 if old else 200.0
    if values.get("time_token_start_id") is not None:
        why = (
            "written by maxtoki 0.1, which read the expected token value as months"
            if old
            else "the official convention (label_scalar = 200)"
        )
        logg.info(
            f"config.json has no time_scale: timelapses are read as {values['time_scale']:g} × "
            f"the expected time-token value ({why}); set `model.config.time_scale` to change it"
        )


def _check_int(name: str, value: Any, *, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")


def _check_float(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}.")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}.")


def _check_rope_scaling(scaling: Any) -> dict[str, Any] | None:
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise TypeError(f"rope_scaling must be None or a dict, got {scaling!r}.")
    scaling = dict(scaling)
    rope_type = scaling.pop("rope_type", None) or scaling.pop("type", None)
    scaling.pop("type", None)
    if rope_type != "llama3":
        raise ValueError(
            "rope_scaling: only rope_type='llama3' (Llama-3.1 scaling) is supported, "
            f"got {rope_type!r}."
        )
    missing = [k for k in _ROPE_KEYS if k not in scaling]
    extra = sorted(set(scaling) - set(_ROPE_KEYS))
    if missing or extra:
        raise ValueError(
            f"rope_scaling needs exactly the keys {list(_ROPE_KEYS)} besides rope_type; "
            f"missing {missing}, unexpected {extra}."
        )
    for key in ("factor", "low_freq_factor", "high_freq_factor"):
        _check_float(f"rope_scaling['{key}']", scaling[key], positive=True)
    _check_int(
        "rope_scaling['original_max_position_embeddings']",
        scaling["original_max_position_embeddings"],
        minimum=1,
    )
    if scaling["factor"] < 1:
        raise ValueError(f"rope_scaling['factor'] must be >= 1, got {scaling['factor']}.")
    if scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise ValueError("rope_scaling['high_freq_factor'] must be greater than 'low_freq_factor'.")
    return {
        "rope_type": "llama3",
        "factor": float(scaling["factor"]),
        "low_freq_factor": float(scaling["low_freq_factor"]),
        "high_freq_factor": float(scaling["high_freq_factor"]),
        "original_max_position_embeddings": scaling["original_max_position_embeddings"],
    }


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
