"""Training throughput: forward + backward tokens/s of MaxToki vs transformers.LlamaForCausalLM.

Both models have the same config (hidden 256, 4 layers, 4 heads, FFN 512, temporal vocabulary of
23,277 tokens), the same weights (ours saved, theirs loaded with ``attn_implementation="sdpa"``)
and the same batches; the loss (next-token cross-entropy on all positions) is computed the same
way outside the models. Steps of the two models are interleaved so that load changes on a shared
machine hit both alike, and timed in CPU seconds of this process (``time.process_time``), which
other jobs on a shared machine do not inflate; wall-clock numbers are in the note. The median
step is reported. ``ratio`` = ours / baseline tokens per second (higher is better, target >= 1).

A second row trains the demo's model (``maxtoki demo``: hidden 128, 4 layers, three-cell prompts
of ``DEMO_SETTINGS["full"]["max_genes"]`` genes per cell, micro-batch 8) with ``mt.tl.train`` on
every core against one thread, the runs interleaved (1, all, 1, all, …); tokens/s is the
trainer's own median over its log windows.
A third runs the same training as ``mt.tl.train(processes=cores)`` (spawned ranks of one thread
each, DDP over gloo) against one process, and notes what independent one-thread runs side by side
get (the ceiling).

Run: ``python -m benchmarks.training_throughput [--quick] [--threads N]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from maxtoki.models import MaxToki, MaxTokiConfig


def _models():
    import transformers

    config = MaxTokiConfig.preset(
        "tiny",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        attn_backend="sdpa",
    )
    torch.manual_seed(0)
    ours = MaxToki(config).train()
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        theirs = transformers.LlamaForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    return ours, theirs.train()


def _step(model, ids: torch.Tensor) -> tuple[float, float]:
    """CPU and wall seconds of one forward + backward."""
    cpu, wall = time.process_time(), time.perf_counter()
    logits = model(ids).logits
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
    loss.backward()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    model.zero_grad(set_to_none=True)
    return cpu, wall


def run(quick: bool = False) -> list[dict]:
    """Time forward + backward of both models; return benchmark rows."""
    ours, theirs = _models()
    batch, length = (2, 256) if quick else (4, 1024)
    n_warmup, n_steps = (1, 9) if quick else (2, 10)
    generator = torch.Generator().manual_seed(0)
    vocab = ours.config.vocab_size
    batches = [
        torch.randint(4, vocab, (batch, length), generator=generator) for _ in range(n_steps)
    ]
    for _ in range(n_warmup):
        _step(ours, batches[0])
        _step(theirs, batches[0])
    times_ours, times_theirs = [], []
    for ids in batches:
        times_ours.append(_step(ours, ids))
        times_theirs.append(_step(theirs, ids))
    tokens = batch * length
    demo_rows = [_demo_threads_row(quick), _demo_ranks_row(quick)]
    ours_tps = tokens / statistics.median(t[0] for t in times_ours)
    theirs_tps = tokens / statistics.median(t[0] for t in times_theirs)
    ours_wall = tokens / statistics.median(t[1] for t in times_ours)
    theirs_wall = tokens / statistics.median(t[1] for t in times_theirs)
    return [
        {
            "benchmark": "training_throughput",
            "setting": f"fwd+bwd, batch {batch}×{length}, hidden 256, 4 layers, fp32 CPU",
            "ours": ours_tps,
            "baseline": theirs_tps,
            "unit": "tokens per CPU-second",
            "ratio": ours_tps / theirs_tps,
            "direction": "ratio = ours / transformers tokens/s, higher is better",
            "note": (
                f"median of {n_steps} interleaved steps after {n_warmup} warm-up, "
                f"{torch.get_num_threads()} thread(s); wall clock: {ours_wall:,.0f} vs "
                f"{theirs_wall:,.0f} tokens/s"
            ),
        },
        *demo_rows,
    ]


def _genes() -> str:
    """The demo's genes per cell, in words."""
    from maxtoki._demo import DEMO_SETTINGS

    return f"{DEMO_SETTINGS['full']['max_genes']} genes per cell"


def _demo_threads_row(quick: bool) -> dict:
    """Tokens/s of the demo's training on every core vs one thread, interleaved runs."""
    import os

    import maxtoki as mt
    from benchmarks._demo_training import demo_data, tokens_per_s

    verbosity, mt.settings.verbosity = mt.settings.verbosity, 0
    threads, all_cores = torch.get_num_threads(), os.cpu_count() or 1
    try:
        data = demo_data(20 if quick else 40)
        rates: dict[int, list[float]] = {1: [], all_cores: []}
        for n in [1, all_cores] * (1 if quick else 3):
            torch.set_num_threads(n)
            rates[n].append(tokens_per_s(*data, steps=10 if quick else 40))
    finally:
        torch.set_num_threads(threads)
        mt.settings.verbosity = verbosity
    ours, base = statistics.median(rates[all_cores]), statistics.median(rates[1])
    spread = {n: f"{min(v):,.0f}–{max(v):,.0f}" for n, v in rates.items()}
    return {
        "benchmark": "training_throughput",
        "setting": (
            f"mt.tl.train, the demo's model and prompts ({_genes()}), {all_cores} threads vs 1"
        ),
        "ours": ours,
        "baseline": base,
        "unit": "tokens/s (wall clock)",
        "ratio": ours / base,
        "direction": "ratio = all cores / one thread, higher is better; target 1.7 on 2 cores",
        "note": (
            f"medians of {len(rates[1])} interleaved runs each; spread {spread[all_cores]} "
            f"({all_cores} threads) vs {spread[1]} (1 thread) tokens/s"
        ),
    }


def _demo_ranks_row(quick: bool) -> dict:
    """The same training as ``mt.tl.train(processes=cores)``: ranks of one thread, vs one process.

    Interleaved with one-process runs (1, ranks, 1, ranks, …), each in a fresh interpreter; then
    as many independent one-thread runs side by side as there are cores, whose summed tokens/s is
    what the machine gives to work that shares nothing (its ceiling for this training).
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    cores = os.cpu_count() or 1
    steps, donors = ("10", "20") if quick else ("40", "40")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}

    def launch(processes: int, out: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "benchmarks._demo_training", str(out), steps, donors]
        return subprocess.Popen(
            [*cmd, str(processes)], cwd=root, env=env, stdout=subprocess.DEVNULL
        )

    def rates(runs: list[tuple[int, Path]]) -> list[float]:
        procs = [launch(processes, out) for processes, out in runs]  # side by side
        for proc in procs:
            if proc.wait(timeout=900):
                raise RuntimeError(f"a benchmark training run failed: {proc.args}")
        return [float(out.read_text()) for _, out in runs]

    with tempfile.TemporaryDirectory() as folder:
        files = (Path(folder) / f"run{i}.txt" for i in range(100))
        one, ranks = [], []
        for _ in range(1 if quick else 3):
            one += rates([(1, next(files))])
            ranks += rates([(cores, next(files))])
        alone = sum(rates([(1, next(files)) for _ in range(cores)]))
    ours, base = statistics.median(ranks), statistics.median(one)
    return {
        "benchmark": "training_throughput",
        "setting": f"mt.tl.train(processes={cores}), {_genes()}: ranks of 1 thread vs 1 process",
        "ours": ours,
        "baseline": base,
        "unit": "tokens/s (wall clock)",
        "ratio": ours / base,
        "direction": "ratio = all cores / one thread, higher is better; target 1.7 on 2 cores",
        "note": (
            f"medians of {len(one)} interleaved runs each; spread {min(ranks):,.0f}–"
            f"{max(ranks):,.0f} ({cores} ranks) vs {min(one):,.0f}–{max(one):,.0f} (1 process) "
            f"tokens/s; {cores} independent one-thread runs side by side: {alone:,.0f} tokens/s "
            f"in all ({alone / base:.2f}× one run), the machine's ceiling for this training"
        ),
    }


def main() -> int:
    """Print the benchmark table (one torch thread unless ``--threads``)."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
