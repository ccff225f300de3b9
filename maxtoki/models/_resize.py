"""Grow a model: its vocabulary (stage 1 → the temporal tokens) and its context (RoPE scaling)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from .. import logging as logg
from ._generate import _generator
from ._time import init_time_token_embeddings

if TYPE_CHECKING:
    from ._decoder import MaxToki


def resize_token_embeddings(
    model: MaxToki,
    new_vocab_size: int,
    *,
    time_token_init: Literal["smooth", "mean"] = "smooth",
    random_state: torch.Generator | int | None = None,
) -> None:
    """Grow the vocabulary in place (see :meth:`MaxToki.resize_token_embeddings`)."""
    config = model.config
    old = config.vocab_size
    if (
        isinstance(new_vocab_size, bool)
        or not isinstance(new_vocab_size, int)
        or new_vocab_size < old
    ):
        raise ValueError(
            f"new_vocab_size must be an int >= the current vocab_size ({old}), "
            f"got {new_vocab_size!r}."
        )
    if time_token_init not in ("smooth", "mean"):
        raise ValueError(f"time_token_init must be 'smooth' or 'mean', got {time_token_init!r}.")
    if new_vocab_size == old:
        return
    changes = {"vocab_size": new_vocab_size}
    if config.time_token_start_id is None and new_vocab_size - old == config.n_time_tokens + 2:
        changes.update(
            time_token_start_id=old,
            boq_token_id=old + config.n_time_tokens,
            eoq_token_id=old + config.n_time_tokens + 1,
        )
        logg.info(
            f"resize_token_embeddings: ids {old}..{new_vocab_size - 3} are time tokens "
            f"({config.time_min_months}..{config.time_min_months + config.n_time_tokens - 1} "
            "months), "
            f"<boq>={old + config.n_time_tokens}, <eoq>={old + config.n_time_tokens + 1}"
        )
    new_config = dataclasses.replace(config, **changes)
    generator = _generator(random_state, torch.device("cpu"))

    old_embed = model.model.embed_tokens
    embed = nn.Embedding(new_vocab_size, config.hidden_size, old_embed.padding_idx)
    embed.to(old_embed.weight.device, old_embed.weight.dtype)
    with torch.no_grad():
        embed.weight.copy_(_grown(old_embed.weight, new_vocab_size, generator))
    embed.weight.requires_grad_(old_embed.weight.requires_grad)
    model.model.embed_tokens = embed
    lm_head = nn.Linear(config.hidden_size, new_vocab_size, bias=False)
    if new_config.tie_word_embeddings:
        lm_head.weight = embed.weight
    else:
        lm_head.to(model.lm_head.weight.device, model.lm_head.weight.dtype)
        with torch.no_grad():
            lm_head.weight.copy_(_grown(model.lm_head.weight, new_vocab_size, generator))
        lm_head.weight.requires_grad_(model.lm_head.weight.requires_grad)
    model.lm_head = lm_head
    vocab, model.vocab = model.vocab, None  # the old vocabulary no longer matches the rows
    model.config = new_config
    _carry_vocab(model, vocab, temporal="time_token_start_id" in changes)

    if (
        new_config.has_time_tokens
        and time_token_init == "smooth"
        and new_config.time_token_start_id >= old
    ):
        init_time_token_embeddings(model, random_state=generator)


def _carry_vocab(model: MaxToki, vocab, *, temporal: bool) -> None:
    """Extend a stage-1 vocabulary to the new temporal rows; drop it after any other resize."""
    if vocab is None:
        return
    config = model.config
    if temporal and not vocab.has_time_tokens:
        first = config.time_min_months
        model.vocab = vocab.with_time_tokens((first, first + config.n_time_tokens - 1))
        logg.info(f"resize_token_embeddings: the vocabulary gained the time tokens ({model.vocab})")
        return
    logg.warning(
        f"resize_token_embeddings: the model's vocabulary ({len(vocab)} tokens) no longer "
        f"matches its {config.vocab_size} rows; model.vocab is now None (attach a matching "
        "GeneVocab with `model.vocab = ...`)."
    )


def _grown(weight: torch.Tensor, rows: int, generator: torch.Generator | None) -> torch.Tensor:
    old = weight.detach().float().cpu()
    mean, std = old.mean(0), old.std() if old.shape[0] > 1 else torch.tensor(0.0)
    noise = torch.randn(rows - old.shape[0], old.shape[1], generator=generator) * (0.01 * std)
    return torch.cat([old, mean + noise]).to(weight.device, weight.dtype)


def extend_context(
    model: MaxToki,
    max_position_embeddings: int,
    *,
    factor: float = 4.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
) -> None:
    """Extend the context with Llama-3.1 RoPE scaling (see :meth:`MaxToki.extend_context`)."""
    from ._rope import RotaryEmbedding

    config = model.config
    if (
        isinstance(max_position_embeddings, bool)
        or not isinstance(max_position_embeddings, int)
        or max_position_embeddings <= config.max_position_embeddings
    ):
        raise ValueError(
            f"max_position_embeddings must be an int above the current context "
            f"({config.max_position_embeddings}), got {max_position_embeddings!r}"
        )
    if config.rope_scaling is not None:
        raise ValueError(
            f"the model's context was already extended (rope_scaling={config.rope_scaling}); "
            "extend it once, from the context it was pretrained with"
        )
    scaling = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low_freq_factor,
        "high_freq_factor": high_freq_factor,
        "original_max_position_embeddings": config.max_position_embeddings,
    }
    new_config = dataclasses.replace(
        config, max_position_embeddings=max_position_embeddings, rope_scaling=scaling
    )  # __post_init__ validates the scaling
    model.config = new_config
    model.model.rotary_emb = RotaryEmbedding(new_config)  # tables rebuilt from the new config
    logg.info(
        f"extend_context: {config.max_position_embeddings:,} → {max_position_embeddings:,} "
        f"tokens (llama3 RoPE scaling, factor {factor:g}, low {low_freq_factor:g}, high "
        f"{high_freq_factor:g})"
    )
