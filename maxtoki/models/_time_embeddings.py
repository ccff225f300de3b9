"""Smooth initial embeddings of the time tokens: neighbouring months start out similar."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ._generate import _generator

if TYPE_CHECKING:
    from ._decoder import MaxToki


def init_time_token_embeddings(
    model: MaxToki,
    *,
    n_anchors: int | None = None,
    include_lm_head: bool = True,
    rng: torch.Generator | int | None = None,
) -> None:
    """Initialise the time-token rows as a smooth curve in their month value (in place).

    ``n_anchors`` random vectors, drawn with the per-dimension mean and std of the other rows,
    sit at evenly spaced months; every time token is the linear interpolation of its two
    neighbouring anchors. Neighbouring months thus start almost equal and distant months
    differ, which made the timelapse regression train much faster than random rows.

    Parameters
    ----------
    model
        A model whose config has time tokens.
    n_anchors
        Number of anchor vectors (>= 2) along the month axis; default one per ~8 time tokens,
        at most 16 (about 16 years apart in the official 3,000-month range).
    include_lm_head
        Also initialise the output rows of ``lm_head`` (so the initial time logits are smooth).
    rng
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
    generator = _generator(rng, torch.device("cpu"))
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
        where = torch.linspace(0, n_anchors - 1, len(times))
        left = where.floor().long().clamp(max=n_anchors - 2)
        frac = (where - left)[:, None]
        rows = (1 - frac) * anchors[left] + frac * anchors[left + 1]
        with torch.no_grad():
            weight[times.start : times.stop] = rows.to(weight.device, weight.dtype)
