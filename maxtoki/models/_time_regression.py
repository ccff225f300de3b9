"""TimeBetweenCells: the expected timelapse from the logits at ``<eoq>``."""

from __future__ import annotations

import torch

from ._config import MaxTokiConfig


def predict_timelapse(
    logits_at_eoq: torch.Tensor, config: MaxTokiConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read a timelapse (months) from the next-token logits at the ``<eoq>`` position.

    The softmax over the whole vocabulary is restricted to the time tokens and renormalised; the
    prediction is its expected value ``Σ p(v) · v`` ("continuous numerical tokenization").

    Parameters
    ----------
    logits_at_eoq
        ``(..., vocab_size)`` logits.
    config
        The model configuration (time-token layout).

    Returns
    -------
    expected_months
        ``(...)`` float32 expected timelapse.
    argmax_months
        ``(...)`` int64 most likely time token, in months.
    non_time_mass
        ``(...)`` float32 probability mass the full softmax puts on non-time tokens.
    """
    time_logits, log_time_mass = _time_logits(logits_at_eoq, config)
    months = torch.arange(config.n_time_tokens, device=time_logits.device, dtype=torch.float32)
    months = months + config.time_min_months
    expected = (time_logits.softmax(-1) * months).sum(-1)
    argmax = time_logits.argmax(-1) + config.time_min_months
    return expected, argmax, -torch.expm1(log_time_mass)


def _time_logits(logits: torch.Tensor, config: MaxTokiConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits of the time tokens and the log of their mass under the full softmax."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}.")
    config._require_time_tokens()
    if logits.shape[-1] != config.vocab_size:
        raise ValueError(
            f"logits must end in vocab_size={config.vocab_size}, got shape {tuple(logits.shape)}; "
            "pass the full next-token logits at the <eoq> position."
        )
    logits = logits.float()
    start = config.time_token_start_id
    time_logits = logits[..., start : start + config.n_time_tokens]
    return time_logits, time_logits.logsumexp(-1) - logits.logsumexp(-1)
