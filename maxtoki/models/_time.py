"""The time head in one: read a timelapse at ``<eoq>``, its loss, and the time-token rows.

TimeBetweenCells ("continuous numerical tokenization"): the softmax at ``<eoq>`` restricted to
the time tokens and renormalised gives the expected timelapse ``Σ p(v) · v``
(:func:`predict_timelapse`), trained with :func:`timelapse_loss`; the time-token embeddings start
as a smooth curve in their month value (:func:`init_time_token_embeddings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ._config import MaxTokiConfig
from ._generate import _generator

if TYPE_CHECKING:
    from ._decoder import MaxToki


def predict_timelapse(
    logits_at_eoq: torch.Tensor, config: MaxTokiConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read a timelapse (months) from the next-token logits at the ``<eoq>`` position.

    The softmax over the whole vocabulary is restricted to the time tokens and renormalised; the
    prediction is ``config.time_scale × Σ p(v) · v`` months, ``v`` the tokens' values
    ("continuous numerical tokenization"; the official read-out is ``200 × E[v]``).

    Parameters
    ----------
    logits_at_eoq
        ``(..., vocab_size)`` logits.
    config
        The model configuration (time-token layout).

    Returns
    -------
    expected_months
        ``(...)`` float32 expected timelapse (months).
    argmax_months
        ``(...)`` float32 value of the most likely time token, in months (times ``time_scale``).
    non_time_mass
        ``(...)`` float32 probability mass the full softmax puts on non-time tokens.
    """
    time_logits, log_time_mass = _time_logits(logits_at_eoq, config)
    expected = _expected_value(time_logits, config) * config.time_scale
    argmax = (time_logits.argmax(-1) + config.time_min_months).float() * config.time_scale
    return expected, argmax, -torch.expm1(log_time_mass)


def _expected_value(time_logits: torch.Tensor, config: MaxTokiConfig) -> torch.Tensor:
    """``E[v]``: the expected time-token value under the renormalised softmax."""
    values = torch.arange(config.n_time_tokens, device=time_logits.device, dtype=torch.float32)
    return (time_logits.softmax(-1) * (values + config.time_min_months)).sum(-1)


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


def timelapse_loss(
    logits_at_eoq: torch.Tensor, target_months: torch.Tensor, config: MaxTokiConfig
) -> torch.Tensor:
    """``mean(((pred - target) / label_scale)²) + non_time_penalty × mean non-time mass``.

    ``pred`` is the timelapse of :func:`predict_timelapse` (``time_scale × E[v]`` months); the
    penalty pushes the full softmax at ``<eoq>`` onto the time tokens. With the official
    ``time_scale = label_scale = 200`` this is ``(E[v] − Δt / 200)² + 10 ×`` non-time mass.

    Parameters
    ----------
    logits_at_eoq
        ``(B, vocab_size)`` logits at the ``<eoq>`` positions.
    target_months
        ``(B,)`` true timelapses in months.
    config
        Supplies the time-token layout, ``time_scale``, ``label_scale`` and ``non_time_penalty``.

    Returns
    -------
    The scalar loss (float32).
    """
    time_logits, log_time_mass = _time_logits(logits_at_eoq, config)
    target = torch.as_tensor(target_months, device=time_logits.device).float()
    if target.shape != time_logits.shape[:-1]:
        raise ValueError(
            f"target_months must have shape {tuple(time_logits.shape[:-1])} (one per logits row), "
            f"got {tuple(target.shape)}."
        )
    pred = _expected_value(time_logits, config) * config.time_scale
    mse = ((pred - target) / config.label_scale).pow(2).mean()
    return mse + config.non_time_penalty * (-torch.expm1(log_time_mass)).mean()


def init_time_token_embeddings(
    model: MaxToki,
    *,
    n_anchors: int | None = None,
    include_lm_head: bool = True,
    random_state: torch.Generator | int | None = None,
) -> None:
    """Initialise the time-token rows as a smooth curve in the months they stand for (in place).

    ``n_anchors`` random vectors, drawn with the per-dimension mean and std of the other rows,
    sit at evenly spaced months; every time token is the linear interpolation of its two
    neighbouring anchors. Neighbouring months thus start almost equal and distant months
    differ, which made the timelapse regression train much faster than random rows. A time
    token stands for its value in months as an input (the Δt of a prompt) and for
    ``time_scale ×`` its value as an output (the answer), so the ``lm_head`` rows follow
    ``time_scale × v`` (clipped to the range of months), and with the official scale of 200
    the answer tokens −7…7 span the whole curve instead of sitting on one anchor.

    Parameters
    ----------
    model
        A model whose config has time tokens.
    n_anchors
        Number of anchor vectors (>= 2) along the month axis; default one per ~8 time tokens,
        at most 16 (about 16 years apart in the official 3,000-month range).
    include_lm_head
        Also initialise the output rows of ``lm_head`` (so the initial time logits are smooth).
    random_state
        A :class:`torch.Generator` or a seed.
    """
    config = model.config
    times = config.time_token_range
    if n_anchors is None:
        n_anchors = max(2, min(16, len(times) // 8))
    if isinstance(n_anchors, bool) or not isinstance(n_anchors, int) or n_anchors < 2:
        raise ValueError(f"n_anchors must be an int >= 2, got {n_anchors!r}.")
    weights = [model.model.embed_tokens.weight]
    if include_lm_head and not config.tie_word_embeddings:
        weights.append(model.lm_head.weight)
    generator = _generator(random_state, torch.device("cpu"))
    values = torch.arange(len(times), dtype=torch.float32) + config.time_min_months
    lo, hi = float(values[0]), float(values[-1])
    for weight in weights:
        others = torch.ones(weight.shape[0], dtype=torch.bool)
        others[times.start : times.stop] = False
        reference = weight.detach()[others.to(weight.device)].float().cpu()
        if reference.shape[0] >= 2:
            mean, std = reference.mean(0), reference.std(0)
        else:
            mean = torch.zeros(weight.shape[1])
            std = torch.full((weight.shape[1],), config.initializer_range)
        anchors = mean + std * torch.randn(n_anchors, weight.shape[1], generator=generator)
        scale = 1.0 if weight is model.model.embed_tokens.weight else config.time_scale
        where = ((values * scale).clamp(lo, hi) - lo) / (hi - lo) * (n_anchors - 1)
        left = where.floor().long().clamp(max=n_anchors - 2)
        frac = (where - left)[:, None]
        rows = (1 - frac) * anchors[left] + frac * anchors[left + 1]
        with torch.no_grad():
            weight[times.start : times.stop] = rows.to(weight.device, weight.dtype)
