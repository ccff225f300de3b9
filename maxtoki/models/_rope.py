"""Rotary position embeddings (RoPE) with optional Llama-3.1 frequency scaling."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._config import MaxTokiConfig


class RotaryEmbedding(nn.Module):
    """cos/sin tables of RoPE for given position ids, as in HF ``LlamaRotaryEmbedding``.

    With ``config.rope_scaling`` of type ``"llama3"``, low frequencies are divided by ``factor``
    and the band between ``low_freq_factor`` and ``high_freq_factor`` is interpolated smoothly,
    which extends a model trained on ``original_max_position_embeddings`` tokens.
    """

    def __init__(self, config: MaxTokiConfig) -> None:
        super().__init__()
        self.dim = config.attention_head_dim
        self.theta = config.rope_theta
        self.scaling = config.rope_scaling
        self._inv_freq: torch.Tensor | None = None  # not a buffer: recomputed on each device

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        """Inverse frequencies (``head_dim // 2``,) in float32 on ``device``."""
        if self._inv_freq is None or self._inv_freq.device != device:
            exponent = torch.arange(0, self.dim, 2, dtype=torch.int64).float() / self.dim
            inv_freq = 1.0 / (self.theta**exponent)
            if self.scaling is not None:
                inv_freq = _llama3_scale(inv_freq, self.scaling)
            self._inv_freq = inv_freq.to(device)
        return self._inv_freq

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``cos`` and signed ``sin`` tables ``(B, T, head_dim)`` for ``position_ids``.

        The first half of the ``sin`` table is negated, as :func:`_apply_rope` expects.
        """
        with torch.autocast(device_type=position_ids.device.type, enabled=False):
            freqs = position_ids[..., None].float() * self.inv_freq(position_ids.device)
            cos, sin = freqs.cos(), freqs.sin()
            cos, signed_sin = torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)
            return cos.to(dtype), signed_sin.to(dtype)


def _llama3_scale(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, smoothed, scaled)


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, T, H, D)`` by the tables of :meth:`RotaryEmbedding.forward`.

    Equals HF's ``x * cos + rotate_half(x) * sin`` bit for bit (``rotate_half(x)`` is
    ``[-x2, x1]``; here the halves are swapped with ``flip`` and the sign sits in the table),
    with fewer copies in the backward pass.
    """
    half = x.shape[-1] // 2
    swapped = x.unflatten(-1, (2, half)).flip(-2).flatten(-2)
    return x * cos.unsqueeze(2) + swapped * signed_sin.unsqueeze(2)
