"""A new model for a vocabulary: preset + overrides, smooth time-token init."""

from __future__ import annotations

import os
from typing import Any

import torch


def build_model(
    model: Any = "tiny",
    *,
    vocab=None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    context_length: int | None = None,
    rope_factor: float = 4.0,
):
    """Return a :class:`~maxtoki.models.MaxToki` to train.

    A trained model (a folder or a ``MaxToki``) is brought to what the training asks for, as
    the official stage 2 does, each step logged: a stage-1 model gets the time tokens
    (:meth:`~maxtoki.models.MaxToki.add_time_tokens`) when ``vocab`` is its temporal extension,
    and a longer ``context_length`` than it was trained for extends its context
    (:meth:`~maxtoki.models.MaxToki.extend_context`, llama3 RoPE scaling by ``rope_factor``).

    Parameters
    ----------
    model
        A preset name (``"tiny"``, ``"217M"``, ``"1B"``), a model folder (``save_pretrained``
        output), a Hugging Face Hub repo id (``"org/name"``, see
        :meth:`~maxtoki.models.MaxToki.from_pretrained`) or a ``MaxToki`` (returned as is after
        checking it against ``vocab``).
    vocab
        The :class:`~maxtoki.pp.GeneVocab` of the training tokens: a new model takes its size and
        special/time token ids from :meth:`~maxtoki.pp.GeneVocab.model_config_fields`. The model
        returned carries it (``model.vocab``); a model that has its own must agree with it.
    overrides
        :class:`~maxtoki.models.MaxTokiConfig` fields for a new model (e.g. ``hidden_size``); for
        a trained model only ``max_position_embeddings`` (a longer context) and ``attn_backend``.
    seed
        Seed of the weight initialisation (and of the new time-token rows).
    context_length
        Tokens per training example; above the model's context, the context is extended.
    rope_factor
        The llama3 RoPE scaling factor of an extension (4 in the official training example).
    """
    from ..models import MaxToki, MaxTokiConfig

    if isinstance(model, os.PathLike) or (
        isinstance(model, str) and (os.path.isdir(model) or "/" in model)
    ):
        model = MaxToki.from_pretrained(model, device="cpu")  # a folder or a Hub repo id
    if isinstance(model, MaxToki):
        built = model
        _adapt(built, vocab, dict(overrides or {}), seed, context_length, rope_factor)
    elif isinstance(model, str):
        fields = dict(vocab.model_config_fields()) if vocab is not None else {}
        fields.update(overrides or {})
        config = MaxTokiConfig.preset(model, **fields)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            built = MaxToki(config)
            if config.has_time_tokens:
                _smooth_time_tokens(built, seed)
    else:
        raise TypeError(
            f"model must be a preset name, a model folder or a MaxToki, got {type(model).__name__}"
        )
    if vocab is not None and built.config.vocab_size != len(vocab):
        raise ValueError(
            f"the model has {built.config.vocab_size} tokens but the vocabulary has {len(vocab)}; "
            "train with the vocabulary the model was built for, or build a new model from this "
            "vocabulary (pass a preset name)"
        )
    attach_vocab(built, vocab)
    return built


def _adapt(model, vocab, overrides, seed, context_length, rope_factor) -> None:
    """Stage-2 steps a trained model needs for this training: time tokens, a longer context."""
    from .. import logging as logg

    changes = {k: v for k, v in overrides.items() if getattr(model.config, k, None) != v}
    fixed = sorted(set(changes) - {"max_position_embeddings", "attn_backend"})
    if fixed:
        raise ValueError(
            f"model_overrides {fixed} cannot change a trained model (its weights have that "
            "shape); only `max_position_embeddings` (extends the context) and `attn_backend` can"
        )
    if "attn_backend" in changes:
        import dataclasses

        model.config = dataclasses.replace(model.config, attn_backend=overrides["attn_backend"])
    stage_1 = not model.config.has_time_tokens
    if vocab is not None and stage_1 and vocab.has_time_tokens:
        if len(vocab) != model.config.vocab_size + model.config.n_time_tokens + 2:
            raise ValueError(
                f"the model has {model.config.vocab_size} tokens and no time tokens; the "
                f"vocabulary ({len(vocab)} tokens) is not its temporal extension"
            )
        logg.info("the stage-1 model gets the time tokens of the temporal vocabulary")
        model.add_time_tokens(random_state=seed)
    length = max(context_length or 0, changes.get("max_position_embeddings") or 0)
    if length > model.config.max_position_embeddings:
        logg.info(f"the training examples need {length:,} tokens: extending the context")
        model.extend_context(length, factor=rope_factor)


def attach_vocab(model, vocab) -> None:
    """Give ``model`` the vocabulary of its training tokens, or check the one it has.

    A model without a vocabulary takes ``vocab`` (``model.vocab``'s setter raises a
    ``ValueError`` naming every config field that disagrees). A model with its own must agree
    with ``vocab``: the same :attr:`~maxtoki.pp.GeneVocab.hash`, or the same
    :attr:`~maxtoki.pp.GeneVocab.encoding_hash` and matching config fields.
    """
    if vocab is None or not hasattr(model, "vocab"):
        return
    own = model.vocab
    if own is None:
        model.vocab = vocab
        return
    if own.hash == vocab.hash:
        return
    wrong = sorted(
        name
        for name, value in vocab.model_config_fields().items()
        if getattr(model.config, name) != value
    )
    if own.encoding_hash != vocab.encoding_hash or wrong:
        detail = f"config fields {wrong}" if wrong else "the genes, their token ids or medians"
        raise ValueError(
            f"the model's own vocabulary ({own!r}) disagrees with the given one ({vocab!r}) in "
            f"{detail}; train with the vocabulary the model was built for"
        )


def _smooth_time_tokens(model, seed: int) -> None:
    from ..models import init_time_token_embeddings

    init_time_token_embeddings(model, random_state=seed)
