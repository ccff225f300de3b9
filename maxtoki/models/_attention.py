"""Attention in one place: the module, its mask, the kernels and the choice among them.

:class:`Attention` (grouped-query self-attention with RoPE, a KV cache and head-dim padding for
fused kernels) describes which keys each query may see with an :class:`AttentionMask` and runs
:func:`attend` on the kernel that :func:`resolve_backend` chose: flash-attn 2 (varlen for
padding and packed prompts), torch SDPA, or an eager, chunked path (the only one that returns
attention weights).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .. import logging as logg
from ._config import MaxTokiConfig
from ._kv_cache import KVCache
from ._rope import _apply_rope

_EAGER_BLOCK_ELEMENTS = 2**26  # scores per query block: 256 MB in float32
_SDPA_GQA = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa
_FLASH_MAX_HEAD_DIM = 256
_LOGGED: set[str] = set()


# --- the module -----------------------------------------------------------------------------------
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


# --- the mask -------------------------------------------------------------------------------------
@dataclass
class AttentionMask:
    """A description of the attention pattern, turned into what each backend needs.

    Query ``t`` sits at key slot ``q_offset + t`` (``q_offset`` is the KV-cache length) and sees
    key ``s`` when ``s <= q_offset + t``, key ``s`` is not padding and both belong to the same
    document. A query always sees itself, so padded queries never have an empty softmax row.

    Parameters
    ----------
    q_len, k_len
        Number of queries and keys.
    q_offset
        Key slot of the first query.
    key_valid
        ``(B, k_len)`` bool, ``False`` at padding; ``None`` when every key is real.
    query_valid
        ``(B, q_len)`` bool, ``False`` at padding; ``None`` when every query is real.
    seq_ids
        ``(B, q_len)`` document ids of packed prompts (only without a cache); ``None`` for one
        document per row.
    """

    q_len: int
    k_len: int
    q_offset: int = 0
    key_valid: torch.Tensor | None = None
    query_valid: torch.Tensor | None = None
    seq_ids: torch.Tensor | None = None
    _dense: torch.Tensor | None = field(default=None, repr=False)
    _varlen: tuple | None = field(default=None, repr=False)

    @property
    def is_causal_only(self) -> bool:
        """No padding and no documents: a plain (bottom-right aligned) causal mask."""
        return self.key_valid is None and self.seq_ids is None

    def dense(self, device: torch.device) -> torch.Tensor:
        """``(B or 1, 1, q_len, k_len)`` bool, ``True`` where attention is allowed."""
        if self._dense is None:
            q_pos = torch.arange(self.q_len, device=device) + self.q_offset
            k_pos = torch.arange(self.k_len, device=device)
            allowed = (k_pos[None, :] <= q_pos[:, None])[None]
            if self.key_valid is not None:
                allowed = allowed & self.key_valid[:, None, :]
            if self.seq_ids is not None:
                allowed = allowed & (self.seq_ids[:, :, None] == self.seq_ids[:, None, :])
            allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None]
            self._dense = allowed[:, None]
        return self._dense

    def varlen(self, device: torch.device) -> tuple:
        """Unpadding for flash-attn varlen.

        Returns ``(q_index, k_index, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)``
        where the indices are ``(B, T)``/``(B, S)`` bool masks of the tokens kept. Every segment
        (a row, or a document of a row) has its queries as its last keys, so flash-attn's
        bottom-right causal alignment is right.
        """
        if self._varlen is None:
            batch = (self.key_valid if self.key_valid is not None else self.seq_ids).shape[0]
            q_keep = self.query_valid
            if q_keep is None:
                q_keep = torch.ones(batch, self.q_len, dtype=torch.bool, device=device)
            k_keep = self.key_valid
            if k_keep is None:
                k_keep = torch.ones(batch, self.k_len, dtype=torch.bool, device=device)
            if self.seq_ids is not None:  # packed documents: no cache, queries == keys
                rows = torch.arange(batch, device=device)[:, None].expand_as(self.seq_ids)[q_keep]
                docs = self.seq_ids[q_keep]
                change = (rows[1:] != rows[:-1]) | (docs[1:] != docs[:-1])
                starts = torch.cat(
                    [torch.zeros(1, dtype=torch.long, device=device), change.nonzero()[:, 0] + 1]
                )
                cu = torch.cat([starts, torch.tensor([docs.numel()], device=device)]).to(
                    torch.int32
                )
                max_len = int((cu[1:] - cu[:-1]).max())
                self._varlen = (q_keep, k_keep, cu, cu, max_len, max_len)
            else:
                n_q, n_k = q_keep.sum(1), k_keep.sum(1)
                cu_q = torch.nn.functional.pad(n_q.cumsum(0), (1, 0)).to(torch.int32)
                cu_k = torch.nn.functional.pad(n_k.cumsum(0), (1, 0)).to(torch.int32)
                self._varlen = (q_keep, k_keep, cu_q, cu_k, int(n_q.max()), int(n_k.max()))
        return self._varlen


# --- the kernels ----------------------------------------------------------------------------------
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
        ``"flash"``, ``"sdpa"`` or ``"eager"`` (from :func:`resolve_backend`).
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


# --- the choice of kernel -------------------------------------------------------------------------
@functools.cache
def _flash_attn_available() -> bool:
    """Whether the optional ``flash_attn`` package (``pip install maxtoki[gpu]``) imports."""
    try:
        import flash_attn  # noqa: F401
    except Exception:  # not installed, or built for another CUDA/torch
        return False
    return True


def resolve_backend(
    requested: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    head_dim: int,
    need_weights: bool = False,
) -> str:
    """Turn ``config.attn_backend`` into the kernel that runs: ``"flash"``, ``"sdpa"``, ``"eager"``.

    ``"auto"`` picks flash-attn 2 when it is installed, the tensors are on CUDA in fp16/bf16 and
    the (padded) head dim is at most 256; otherwise torch SDPA. Eager runs when asked for, or
    whenever attention weights are requested (fused kernels do not return them).
    """
    half = dtype in (torch.float16, torch.bfloat16)
    padded = -(-head_dim // 8) * 8
    if need_weights:
        backend, why = "eager", "attention weights requested"
    elif requested == "auto":
        if (
            device.type == "cuda"
            and half
            and padded <= _FLASH_MAX_HEAD_DIM
            and _flash_attn_available()
        ):
            backend, why = "flash", "auto: CUDA, half precision, flash-attn installed"
        else:
            backend, why = "sdpa", "auto"
    elif requested == "flash":
        problems = []
        if not _flash_attn_available():
            problems.append("flash-attn is not installed (`pip install maxtoki[gpu]`)")
        if device.type != "cuda":
            problems.append(f"the model is on {device.type}, flash-attn needs CUDA")
        if not half:
            problems.append(f"dtype is {dtype}, flash-attn needs float16 or bfloat16")
        if padded > _FLASH_MAX_HEAD_DIM:
            problems.append(f"head dim {head_dim} is above flash-attn's limit of 256")
        if problems:
            raise ValueError(
                "attn_backend='flash' cannot run: " + "; ".join(problems) + ". "
                "Use attn_backend='auto' or 'sdpa'."
            )
        backend, why = "flash", "config"
    elif requested in ("sdpa", "eager"):
        backend, why = requested, "config"
    else:
        raise ValueError(
            f"attn_backend must be 'auto', 'flash', 'sdpa' or 'eager', got {requested!r}."
        )
    if backend not in _LOGGED:
        _LOGGED.add(backend)
        logg.info(f"maxtoki attention backend: {backend} ({why}; {device.type}, {dtype})")
    return backend
