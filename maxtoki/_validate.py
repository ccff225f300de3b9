"""Checks at the boundary of the tools: the model and its vocabulary, resolved and checked once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._vocab import GeneVocab

_MODEL_HINT = (
    "load one with `mt.models.MaxToki.from_pretrained(folder)` or train one with `mt.tl.train`"
)


def model_vocab(model: Any, vocab: Any = None, *, need_time: bool = False, what: str) -> GeneVocab:
    """The vocabulary to use with ``model``: ``vocab``, else the one the model carries.

    Checks once, at the start of a tool: that ``model`` is a MaxToki model, that a vocabulary
    is known, that a given ``vocab`` encodes cells as the model's own does and fits its config,
    and (``need_time``) that both have time tokens.
    """
    from ._vocab import GeneVocab

    config = getattr(model, "config", None)
    if config is None or not callable(model) or not hasattr(model, "generate"):
        raise TypeError(
            f"model must be a maxtoki.models.MaxToki, got {type(model).__name__}; {_MODEL_HINT}"
        )
    own = getattr(model, "vocab", None)
    if vocab is None:
        vocab = own
        if vocab is None:
            raise ValueError(
                f"{what}: the model carries no vocabulary (its folder had no token dictionary); "
                "pass `vocab=` (the GeneVocab the model was trained with) or attach it once with "
                "`model.vocab = vocab`"
            )
    elif not isinstance(vocab, GeneVocab):
        raise TypeError(
            f"vocab must be a maxtoki.pp.GeneVocab or None (the model's own), got "
            f"{type(vocab).__name__}"
        )
    elif own is not None and own.hash != vocab.hash and own.encoding_hash != vocab.encoding_hash:
        raise ValueError(
            f"{what}: `vocab` ({vocab.hash}) is not the model's vocabulary ({own.hash}); leave "
            "`vocab=None` to use the model's own"
        )
    fields = vocab.model_config_fields()
    names = ["vocab_size", "pad_token_id", "bos_token_id", "eos_token_id"]
    if need_time:
        if getattr(config, "time_token_start_id", None) is None or not vocab.has_time_tokens:
            side = "the model" if getattr(config, "time_token_start_id", None) is None else "vocab"
            raise ValueError(
                f"{side} has no time tokens, so {what} cannot read or write timelapses: pass a "
                "temporal (stage 2) model and its temporal vocabulary; a stage-1 model gets time "
                "tokens with `model.add_time_tokens()` and then needs stage-2 training "
                "(`mt.tl.train(adata, model=model)`, which adds them itself)"
            )
        names += ["time_token_start_id", "n_time_tokens", "time_min_months"]
        names += ["boq_token_id", "eoq_token_id"]
    bad = {k: (getattr(config, k, None), fields.get(k)) for k in names if k in fields}
    bad = {k: v for k, v in bad.items() if v[0] != v[1]}
    if bad:
        detail = ", ".join(f"{k}: model {m!r} vs vocab {v!r}" for k, (m, v) in bad.items())
        raise ValueError(
            f"{what}: the model and the vocabulary disagree ({detail}); pass the vocabulary the "
            "model was trained with (and tokenize with it)"
        )
    return vocab


def max_genes_of(model: Any, max_genes: Any) -> int | None:
    """``max_genes`` validated, or (``None``) the ``max_genes_per_cell`` the model recorded."""
    if max_genes is None:
        return model.config.max_genes_per_cell
    from ._anndata import positive_int

    return positive_int("max_genes", max_genes)
