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
):
    """Return a :class:`~maxtoki.models.MaxToki` to train.

    Parameters
    ----------
    model
        A preset name (``"tiny"``, ``"217M"``, ``"1B"``), a model folder (``save_pretrained``
        output) or a ``MaxToki`` (returned as is after checking it against ``vocab``).
    vocab
        The :class:`~maxtoki.pp.GeneVocab` of the training tokens: a new model takes its size and
        special/time token ids from :meth:`~maxtoki.pp.GeneVocab.model_config_fields`. The model
        returned carries it (``model.vocab``); a model that has its own must agree with it.
    overrides
        :class:`~maxtoki.models.MaxTokiConfig` fields for a new model (e.g. ``hidden_size``).
    seed
        Seed of the weight initialisation.
    """
    from ..models import MaxToki, MaxTokiConfig

    if isinstance(model, MaxToki):
        built = model
    elif isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
        built = MaxToki.from_pretrained(model, device="cpu")
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
