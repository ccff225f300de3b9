"""Model FLOPs utilisation of the 217M config on a GPU: flash-attn vs torch SDPA (bf16).

One training step (forward + backward of the next-token loss) on a micro-batch of 4 sequences of
4,096 tokens, timed with CUDA events over 10 steps after 3 warm-up steps, for each attention
backend. FLOPs per token are counted as ``6 N + 6 L d S`` (``N``: parameters of the matrix
multiplications, i.e. all but the input embedding; ``L`` layers, width ``d``, sequence ``S``;
the attention term counts the causal half of ``QK^T`` and ``PV``, as flash-attn does). MFU =
achieved FLOP/s ÷ the GPU's dense bf16 peak (``MAXTOKI_PEAK_TFLOPS`` overrides the built-in
table). ``ratio`` = flash-attn MFU / SDPA MFU. Without a CUDA GPU (or without flash-attn) the
rows say so and carry no numbers.

Run: ``python -m benchmarks.mfu [--quick]``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from maxtoki.models import MaxToki, MaxTokiConfig

# dense bf16 peak TFLOP/s by device name fragment (vendor data sheets, SXM parts)
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU (``MAXTOKI_PEAK_TFLOPS`` overrides); ``None`` when unknown."""
    if os.environ.get("MAXTOKI_PEAK_TFLOPS"):
        return float(os.environ["MAXTOKI_PEAK_TFLOPS"])
    for fragment, peak in PEAK_TFLOPS.items():
        if fragment in device_name:
            return peak
    return None


def flops_per_token(model: MaxToki, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 6 L d S`` (see the module doc)."""
    c = model.config
    n_matmul = model.num_parameters() - c.vocab_size * c.hidden_size  # the embedding is a lookup
    return 6.0 * n_matmul + 6.0 * c.num_hidden_layers * c.hidden_size * seq_len


def step_seconds(
    model: MaxToki,
    batch: int,
    seq_len: int,
    *,
    n_warmup: int = 3,
    n_steps: int = 10,
    autocast: bool | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """Median seconds of one forward + backward on ``batch × seq_len`` random tokens.

    ``autocast``: bf16 autocast (default: on CUDA only); ``optimizer``: also take its step.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, model.config.vocab_size, (batch, seq_len), generator=generator)
    ids = ids.to(device)
    cuda = device.type == "cuda"
    autocast = cuda if autocast is None else autocast
    times = []
    for i in range(n_warmup + n_steps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            import time

            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(ids).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)
        if cuda:
            end.record()
            torch.cuda.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            seconds = time.perf_counter() - t0
        if i >= n_warmup:
            times.append(seconds)
    return sorted(times)[len(times) // 2]


def run(quick: bool = False) -> list[dict]:
    """MFU rows for flash-attn and SDPA (empty numbers without a GPU)."""
    setting = "217M config, micro-batch 4 × 4,096 tokens, bf16, fwd+bwd"
    if not torch.cuda.is_available():
        return [{"benchmark": "mfu", "setting": setting, "ours": None, "baseline": None,
                 "unit": "MFU (flash-attn vs SDPA)", "ratio": None,
                 "note": "not measured: no CUDA GPU on this machine"}]
    from maxtoki.models._attention import _flash_attn_available as flash_attn_available

    name = torch.cuda.get_device_name(0)
    peak = peak_tflops(name)
    batch, seq_len = (1, 1024) if quick else (4, 4096)
    mfu = {}
    for backend in ("flash", "sdpa"):
        if backend == "flash" and not flash_attn_available():
            continue
        config = MaxTokiConfig.preset("217M", temporal=True, attn_backend=backend,
                                      max_position_embeddings=seq_len)
        torch.manual_seed(0)
        model = MaxToki(config).to("cuda").train()
        seconds = step_seconds(model, batch, seq_len)
        achieved = flops_per_token(model, seq_len) * batch * seq_len / seconds / 1e12
        mfu[backend] = (achieved / peak if peak else None, achieved, batch * seq_len / seconds)
        del model
        torch.cuda.empty_cache()
    flash, sdpa = mfu.get("flash"), mfu["sdpa"]
    note = f"{name}, peak {peak} TFLOP/s; SDPA {sdpa[1]:.0f} TFLOP/s, {sdpa[2]:,.0f} tokens/s"
    if flash:
        note += f"; flash-attn {flash[1]:.0f} TFLOP/s, {flash[2]:,.0f} tokens/s"
    else:
        note += "; flash-attn not installed (pip install 'maxtoki[gpu]')"
    ratio = flash[0] / sdpa[0] if flash and flash[0] and sdpa[0] else None
    return [{"benchmark": "mfu", "setting": setting.replace("4 × 4,096", f"{batch} × {seq_len:,}"),
             "ours": flash[0] if flash else None, "baseline": sdpa[0],
             "unit": "MFU (flash-attn vs SDPA)", "ratio": ratio, "note": note}]


def main() -> int:
    """Print the benchmark table."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
