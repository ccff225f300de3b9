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
        special/time token ids from :meth:`~maxtoki.pp.GeneVocab.model_config_fields`.
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
    if vocab is not None and getattr(vocab, "has_time_tokens", False):
        fields = vocab.model_config_fields()
        wrong = {
            k: (getattr(built.config, k), v)
            for k, v in fields.items()
            if getattr(built.config, k) != v
        }
        if wrong:
            raise ValueError(
                f"the model's token ids disagree with the vocabulary (model, vocab): {wrong}"
            )
    return built


def _smooth_time_tokens(model, seed: int) -> None:
    from ..models import init_time_token_embeddings

    init_time_token_embeddings(model, rng=seed)
