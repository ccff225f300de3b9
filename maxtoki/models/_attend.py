"""Scaled dot-product attention through flash-attn 2, torch SDPA or an eager, chunked path."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._mask import AttentionMask

_EAGER_BLOCK_ELEMENTS = 2**26  # scores per query block: 256 MB in float32
_SDPA_GQA = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: AttentionMask,
    backend: str,
    scale: float,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of ``q`` ``(B, T, H, D)`` over ``k``, ``v`` ``(B, S, H_kv, D)``.

    Parameters
    ----------
    q, k, v
        Queries, keys and values; ``H`` must be a multiple of ``H_kv`` (grouped-query attention).
    mask
        The attention pattern (causal, padding, documents, cache offset).
    backend
        ``"flash"``, ``"sdpa"`` or ``"eager"`` (from :func:`~._backend.resolve_backend`).
    scale
        Softmax scale, ``1 / sqrt(head_dim)`` of the unpadded head dim.
    need_weights
        Also return the attention probabilities ``(B, H, T, S)`` (eager only).

    Returns
    -------
    The output ``(B, T, H, D)`` and the probabilities or ``None``.
    """
    if backend == "eager":
        return _eager(q, k, v, mask, scale, need_weights)
    if need_weights:
        raise ValueError("attention weights are only returned by the eager backend.")
    if backend == "sdpa":
        return _sdpa(q, k, v, mask, scale), None
    if backend == "flash":
        return _flash(q, k, v, mask, scale), None
    raise ValueError(f"unknown attention backend {backend!r}.")


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``(B, H_kv, S, D)`` → ``(B, H_kv * n_rep, S, D)``."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def _sdpa(q, k, v, mask: AttentionMask, scale: float) -> torch.Tensor:
    q_len, k_len, heads, kv_heads = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    attn_mask, is_causal = None, False
    if not mask.is_causal_only or (1 < q_len != k_len):
        attn_mask = mask.dense(q.device)
    elif q_len > 1:  # q_len == k_len: top-left and bottom-right causal coincide
        is_causal = True
    gqa = {}
    if heads != kv_heads:
        if _SDPA_GQA and (attn_mask is None or q.device.type != "cuda"):
            gqa = {"enable_gqa": True}
        else:  # the memory-efficient CUDA kernel (needed for masks) has no GQA: repeat heads
            k, v = _repeat_kv(k, heads // kv_heads), _repeat_kv(v, heads // kv_heads)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale, **gqa
    )
    return out.transpose(1, 2)


def _eager(q, k, v, mask: AttentionMask, scale: float, need_weights: bool):
    batch, q_len, heads, _ = q.shape
    k_len, kv_heads = k.shape[1], k.shape[2]
    q = q.transpose(1, 2)
    k = _repeat_kv(k.transpose(1, 2), heads // kv_heads)
    v = _repeat_kv(v.transpose(1, 2), heads // kv_heads)
    allowed = mask.dense(q.device)
    out = q.new_empty(batch, heads, q_len, v.shape[-1])
    probs_all = q.new_empty(batch, heads, q_len, k_len) if need_weights else None
    block = max(1, min(q_len, _EAGER_BLOCK_ELEMENTS // max(1, batch * heads * k_len)))
    for start in range(0, q_len, block):
        rows = slice(start, start + block)
        scores = torch.matmul(q[:, :, rows], k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~allowed[:, :, rows], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out[:, :, rows] = torch.matmul(probs, v)
        if probs_all is not None:
            probs_all[:, :, rows] = probs
    return out.transpose(1, 2), probs_all


def _flash(q, k, v, mask: AttentionMask, scale: float) -> torch.Tensor:
    # flash-attn 2: q (B, T, H, D), k/v (B, S, H_kv, D); GQA native; causal=True is aligned to the
    # bottom-right corner, so cached decoding (T < S) needs no offset.
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    if mask.is_causal_only:
        return flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=scale, causal=True)
    q_keep, k_keep, cu_q, cu_k, max_q, max_k = mask.varlen(q.device)
    out = flash_attn_varlen_func(
        q[q_keep],
        k[k_keep],
        v[k_keep],
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        max_seqlen_q=max_q,
        max_seqlen_k=max_k,
        dropout_p=0.0,
        softmax_scale=scale,
        causal=True,
    )
    full = q.new_zeros(q.shape)
    full[q_keep] = out
    return full
