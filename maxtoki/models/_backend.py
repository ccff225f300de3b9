"""The one place that decides which attention kernel runs."""

from __future__ import annotations

import functools

import torch

from .. import logging as logg

_LOGGED: set[str] = set()
_FLASH_MAX_HEAD_DIM = 256


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
