"""Tensor-only model computations behind :mod:`maxtoki.tl` (no AnnData; torch imported lazily).

Each helper takes a :class:`~maxtoki.models.MaxToki` and padded tensors and returns tensors, so it
works the same on prompts built by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def timelapse_at_eoq(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, eoq_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted timelapse (months) of TimeBetweenCells prompts, read at ``<eoq>``.

    Parameters
    ----------
    model
        A temporal :class:`~maxtoki.models.MaxToki`.
    input_ids, attention_mask
        ``(B, T)`` right-padded prompts and their validity mask.
    eoq_pos
        ``(B,)`` position of ``<eoq>`` in each row.

    Returns
    -------
    ``(expected, argmax, non_time_mass)``, each ``(B,)``: the expected value of the
    renormalised time-token distribution (the model's regression output), its mode, and the
    probability mass on non-time tokens.
    """
    from ..models import predict_timelapse

    out = model(
        input_ids,
        attention_mask=attention_mask,
        logits_positions=eoq_pos.view(-1, 1).to(input_ids.device),
    )
    return predict_timelapse(out.logits[:, 0].float(), model.config)


def attention_received(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Attention each token receives, per layer and head, relative to uniform attention.

    For key position ``j`` the value is the mean over the later real query positions ``i > j``
    of ``A[i, j] · (i + 1)``: the attention probability times the number of keys query ``i``
    sees, so a head attending uniformly gives 1 everywhere and the causal mask's bias towards
    early positions is removed. Uses the eager attention path (the only one returning weights).

    Parameters
    ----------
    model
        A :class:`~maxtoki.models.MaxToki`.
    input_ids, attention_mask
        ``(B, T)`` right-padded sequences and their validity mask.

    Returns
    -------
    ``(B, layers, heads, T)`` float32; ``nan`` at padding and at the last real token (no later
    query).
    """
    import torch

    out = model(
        input_ids,
        attention_mask=attention_mask,
        output_attentions=True,
        logits_positions=torch.zeros(1, dtype=torch.long, device=input_ids.device),
    )
    valid = attention_mask.to(out.attentions[0].device).bool()
    steps = input_ids.shape[1]
    pos = torch.arange(steps, device=valid.device)
    later = pos[:, None] > pos[None, :]  # (query i, key j): i > j
    weight = (later[None] & valid[:, :, None] & valid[:, None, :]).float()  # (B, T_i, T_j)
    n_later = weight.sum(1)  # (B, T_j)
    scale = (pos + 1).float()[None, :, None] * weight  # A[i, j] · (i + 1) over counted pairs
    layers = []
    for probs in out.attentions:  # (B, H, T_i, T_j)
        received = torch.einsum("bhij,bij->bhj", probs.float(), scale)
        layers.append(received / n_later[:, None, :].clamp_min(1))
    result = torch.stack(layers, dim=1)
    return result.masked_fill((n_later == 0)[:, None, None, :], float("nan"))
