"""What a forward pass returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MaxTokiOutput:
    """Output of :class:`~maxtoki.models.MaxToki`.

    Attributes
    ----------
    logits
        ``(B, T, vocab)``, or only the positions asked for with ``logits_positions``.
    hidden_states
        With ``output_hidden_states=True``: ``num_hidden_layers + 1`` tensors ``(B, T, hidden)``,
        the embeddings, the output of each layer and, last, the final-normed output (the HF
        convention).
    attentions
        With ``output_attentions=True``: one ``(B, heads, T, S)`` tensor of attention
        probabilities per layer (eager backend).
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
