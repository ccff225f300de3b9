"""Speed of the released 217M architecture on a GPU: the table "Expected speed" of docs/gpu.md.

Random weights of the 217M configuration with the temporal vocabulary (23,277 tokens, 4,096
positions), torch SDPA attention, bfloat16 autocast over float32 weights (the tools' default on a
GPU, ``ours``) against float32 (``baseline``); ``ratio`` = ours / baseline. flash-attn is timed
too when it is installed (in the note). The tool workloads go through
:class:`maxtoki.models.BatchRunner`, the way every ``mt.tl`` tool calls the model, on prompts
built by :class:`maxtoki.pp.PromptEncoder` from the official vocabulary's gene tokens (random
genes: speed does not depend on which):

- **predict_time**: TimeBetweenCells prompts of two context cells and the query, 1,300 genes
  each (3,913 tokens, the model's 4,096 positions nearly full), batch 32: prompts/s.
- **embed**: cells of 2,048 genes, batch 32: cells/s.
- **generate**: NextCell prompts of two context cells of 1,024 genes, then a new cell of 1,024
  genes with the KV cache (sampling, every token counted), batch 16: generated tokens/s.
- **train**: forward + backward of the next-token loss and an AdamW step on a micro-batch of
  4 × 4,096 tokens: tokens/s, and MFU as :mod:`benchmarks.mfu` counts it.

Times are wall clock around ``torch.cuda.synchronize()`` (training: CUDA events, as
:func:`benchmarks.mfu.step_seconds` times a step), the median of repeats after a warm-up;
the note gives the peak GPU memory of each setting. Without a CUDA GPU the rows say so and carry
no numbers; ``MAXTOKI_BENCH_DEVICE=cpu`` with ``--quick`` runs the code paths on the CPU (tiny
sizes, for a smoke test).

Run: ``python -m benchmarks.gpu_speed [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch

from benchmarks.mfu import flops_per_token, peak_tflops, step_seconds
from maxtoki.models import BatchRunner, MaxToki, MaxTokiConfig

#: (genes per cell, prompts, batch) of each workload; --quick shrinks them.
FULL = {"predict": (1300, 128, 32), "embed": (2048, 256, 32), "generate": (1024, 16, 16),
        "train": (4, 4096)}  # fmt: skip
QUICK = {"predict": (60, 8, 4), "embed": (100, 8, 4), "generate": (30, 4, 4), "train": (2, 256)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cells(vocab, n: int, genes: int, gen: np.random.Generator) -> list[np.ndarray]:
    """``n`` cells ``<bos> genes… <eos>`` of distinct random gene tokens."""
    ids = np.asarray(vocab.gene_token_ids, dtype=np.int64)
    return [np.concatenate([[vocab.bos_id], gen.choice(ids, genes, replace=False),
                            [vocab.eos_id]]) for _ in range(n)]  # fmt: skip


def _workloads(vocab, sizes: dict, max_length: int) -> dict[str, list[np.ndarray]]:
    """Prompts of each tool workload (see the module doc)."""
    from maxtoki.pp import PromptEncoder

    gen = np.random.default_rng(0)
    encoder = PromptEncoder(vocab, max_length=max_length)
    genes, n, _ = sizes["predict"]
    predict = [
        encoder.encode(_cells(vocab, 2, genes, gen), [60], task="TimeBetweenCells",
                       query=_cells(vocab, 1, genes, gen)[0])["input_ids"]
        for _ in range(n)
    ]  # fmt: skip
    genes, n, _ = sizes["generate"]
    nextcell = [
        encoder.encode(_cells(vocab, 2, genes, gen), [60], task="NextCell", dt_query=120)[
            "input_ids"
        ]
        for _ in range(n)
    ]
    genes, n, _ = sizes["embed"]
    return {"predict": predict, "embed": _cells(vocab, n, genes, gen), "generate": nextcell}


def _tool_speeds(runner: BatchRunner, work: dict, sizes: dict, device) -> dict[str, float]:
    """Prompts/s of ``timelapses``, cells/s of ``embeddings``, tokens/s of ``generate``."""
    out = {}
    for key, call in (("predict", runner.timelapses), ("embed", runner.embeddings)):
        runner.batch_size = sizes[key][2]
        out[key] = len(work[key]) / _timed(lambda call=call, key=key: call(work[key]), device, 3)
    runner.batch_size = sizes["generate"][2]
    made: list[int] = []

    def generate():
        cells = runner.generate(work["generate"], max_genes=sizes["generate"][0], random_state=0)
        made.append(sum(len(c) - 1 for c in cells))  # genes + <eos>: the tokens sampled

    seconds = _timed(generate, device, repeats=1)
    out["generate"] = made[-1] / seconds
    return out


def _train_seconds(model: MaxToki, batch: int, seq_len: int, autocast: bool) -> float:
    """Median seconds of a forward + backward + AdamW step on random tokens."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=model.device.type == "cuda")
    model.train()
    seconds = step_seconds(
        model, batch, seq_len, n_warmup=1, n_steps=5, autocast=autocast, optimizer=optimizer
    )
    model.eval()
    return seconds


def _measure(setting: str, sizes: dict, quick: bool, device: torch.device) -> dict[str, float]:
    """Speed of every workload in one setting: ``'bfloat16'``, ``'float32'`` or ``'flash'``."""
    import maxtoki as mt

    vocab = mt.pp.GeneVocab.official(temporal=True)
    backend = "flash" if setting == "flash" else "sdpa"
    overrides = {"attn_backend": backend}
    if quick and device.type == "cpu":  # a smoke test: the 217M vocabulary, a small trunk
        overrides |= {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 4}  # fmt: skip
    config = MaxTokiConfig.preset("217M", temporal=True, **overrides)
    torch.manual_seed(0)
    model = MaxToki(config)
    dtype = "float32" if setting == "float32" else "bfloat16"
    work = _workloads(vocab, sizes, config.max_position_embeddings)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = _tool_speeds(BatchRunner(model, device=str(device), dtype=dtype), work, sizes, device)
    batch, seq_len = sizes["train"]
    config_train = MaxTokiConfig.preset(
        "217M", temporal=True, **overrides, max_position_embeddings=seq_len
    )
    del model
    torch.manual_seed(0)
    model = MaxToki(config_train).to(device)
    seconds = _train_seconds(model, batch, seq_len, autocast=dtype == "bfloat16")
    out["train"] = batch * seq_len / seconds
    out["train_tflops"] = flops_per_token(model, seq_len) * out["train"] / 1e12
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def run(quick: bool = False) -> list[dict]:
    """Rows of bf16 autocast vs float32 for each workload (no numbers without a GPU)."""
    from maxtoki.models._attention import _flash_attn_available as flash_attn_available

    sizes = QUICK if quick else FULL
    units = {
        "predict": ("predict_time", "prompts/s"),
        "embed": ("embed", "cells/s"),
        "generate": ("generate", "generated tokens/s"),
        "train": ("training", "tokens/s"),
    }
    settings = {
        "predict": f"2 context cells + query, {sizes['predict'][0]:,} genes each, batch "
        f"{sizes['predict'][2]}",
        "embed": f"{sizes['embed'][0]:,} genes per cell, batch {sizes['embed'][2]}",
        "generate": f"2 × {sizes['generate'][0]:,}-gene prompt → {sizes['generate'][0]:,}-gene "
        f"cell, KV cache, batch {sizes['generate'][2]}",
        "train": f"micro-batch {sizes['train'][0]} × {sizes['train'][1]:,} tokens, "
        "fwd+bwd+AdamW",
    }
    wanted = os.environ.get("MAXTOKI_BENCH_DEVICE", "cuda")
    if wanted == "cuda" and not torch.cuda.is_available():
        return [{"benchmark": f"gpu_speed {units[k][0]}", "setting": settings[k], "ours": None,
                 "baseline": None, "unit": units[k][1], "ratio": None,
                 "note": "not measured: no CUDA GPU on this machine"} for k in units]  # fmt: skip
    device = torch.device(wanted)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    measured = {s: _measure(s, sizes, quick, device) for s in ("bfloat16", "float32")}
    if device.type == "cuda" and flash_attn_available():
        measured["flash"] = _measure("flash", sizes, quick, device)
    peak = peak_tflops(gpu)
    rows = []
    for key, (bench, unit) in units.items():
        bf16, fp32 = measured["bfloat16"][key], measured["float32"][key]
        note = f"{gpu}; bf16 autocast + SDPA vs float32 + SDPA"
        if "flash" in measured:
            note += f"; bf16 + flash-attn {measured['flash'][key]:,.0f} {unit}"
        else:
            note += "; flash-attn not installed"
        if key == "train" and peak:
            mfu = ", ".join(f"{s} {measured[s]['train_tflops'] / peak:.1%}" for s in measured)
            note += f"; MFU (of {peak} TFLOP/s bf16 peak) {mfu}"
        if "peak_gib" in measured["bfloat16"]:
            mem = ", ".join(f"{s} {measured[s]['peak_gib']:.1f}" for s in measured)
            note += f"; peak GPU memory (GiB, all workloads) {mem}"
        rows.append({"benchmark": f"gpu_speed {bench}", "setting": f"217M, {settings[key]}",
                     "ours": bf16, "baseline": fp32, "unit": unit, "ratio": bf16 / fp32,
                     "note": note})  # fmt: skip
    return rows


def main() -> int:
    """Print the benchmark table."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
