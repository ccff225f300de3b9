"""Grouped-query self-attention with RoPE, a KV cache and head-dim padding for fused kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attend import attend
from ._config import MaxTokiConfig
from ._kv_cache import KVCache
from ._mask import AttentionMask
from ._rope import _apply_rope


class Attention(nn.Module):
    """Self-attention named like HF ``LlamaAttention`` (``q_proj`` … ``o_proj``)."""

    def __init__(self, config: MaxTokiConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.attention_head_dim
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, hidden, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        *,
        mask: AttentionMask,
        backend: str,
        kv_cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` ``(B, T, hidden)``; return the output and optional probabilities."""
        batch, steps, _ = x.shape
        q = self.q_proj(x).view(batch, steps, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(batch, steps, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(batch, steps, self.n_kv_heads, self.head_dim)
        # (under autocast the projections are half precision while cos/sin are not: keep v's dtype)
        q, k = _apply_rope(q, cos, sin).to(v.dtype), _apply_rope(k, cos, sin).to(v.dtype)
        padded = _padded_head_dim(self.head_dim, x.device)
        if padded != self.head_dim:
            # zero columns add nothing to q·k and give zero output columns: the same result
            # with the softmax scale of the true head dim, on kernels that need a multiple of 8
            q, k, v = (F.pad(t, (0, padded - self.head_dim)) for t in (q, k, v))
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        out, probs = attend(
            q,
            k,
            v,
            mask=mask,
            backend=backend,
            scale=self.head_dim**-0.5,
            need_weights=need_weights,
        )
        if padded != self.head_dim:
            out = out[..., : self.head_dim]
        out = out.reshape(batch, steps, self.n_heads * self.head_dim)
        return self.o_proj(out), probs


def _padded_head_dim(head_dim: int, device: torch.device) -> int:
    """Head dim the kernels run at: on CUDA the next multiple of 8, elsewhere ``head_dim``.

    flash-attn and the fused CUDA SDPA kernels refuse other sizes (e.g. 154 of the 217M model).
    The choice is the same on every backend, so a KV cache can be shared between them.
    """
    if device.type == "cuda":
        return -(-head_dim // 8) * 8
    return head_dim
