"""NextCell generation: preallocated KV cache vs recomputing the whole prompt at every step.

A 3-cell context of ``g`` genes per cell (``<bos> genes <eos> Δt`` ×3, then ``<boq> Δt <eoq>``)
is followed by the generation of a ``g``-gene cell, for several ``g`` (the curve over prompt
length); the headline is ``g = 1024``. The model is small (hidden 256, 4 layers, temporal
vocabulary) so it runs on a CPU. Greedy decoding with ``<eos>`` disabled makes every cell
exactly ``g`` genes long.

Ours: one ``model.generate`` call, timed whole (prefill + every decode step). Baseline: the same
model without a cache, one full forward over the prompt and the tokens so far per new token.
Recomputing all ``g`` steps would take about half an hour at ``g = 1024``, so only a few evenly
spaced steps are timed and the total is extrapolated linearly between them (the output says
how many). Times are CPU seconds of this process (``time.process_time``), which other jobs on a
shared machine do not inflate; the note gives the wall clock of the cached run.
``ratio`` = baseline time / ours time (higher is better).

Run: ``python -m benchmarks.generation [--quick] [--threads N]``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from maxtoki.models import MaxToki, MaxTokiConfig

GENES_FULL = (128, 256, 512, 1024)
GENES_QUICK = (64, 256)


def _model() -> MaxToki:
    config = MaxTokiConfig.preset(
        "tiny",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,
        attn_backend="sdpa",
    )
    torch.manual_seed(0)
    model = MaxToki(config).eval()
    with torch.no_grad():
        model.lm_head.weight[config.eos_token_id] = 0.0  # logit 0: never the greedy maximum
    return model


def _prompt(config: MaxTokiConfig, genes: int, rng: np.random.Generator) -> torch.Tensor:
    gene_ids = np.arange(4, config.time_token_start_id)
    parts = []
    for delta in (12, 24, 36):
        cell = rng.choice(gene_ids, size=genes, replace=False)
        parts += [[config.bos_token_id], cell, [config.eos_token_id], [config.time_token_id(delta)]]
    parts[-1] = [config.boq_token_id, config.time_token_id(60), config.eoq_token_id]
    return torch.tensor(np.concatenate(parts), dtype=torch.long)


def _time_recompute_step(model: MaxToki, ids: torch.Tensor, length: int) -> float:
    last = torch.tensor([length - 1])
    with torch.inference_mode():
        start = time.process_time()
        model(ids[None, :length], logits_positions=last)
        return time.process_time() - start


def run(quick: bool = False) -> list[dict]:
    """Time cached generation against full recomputation; return benchmark rows."""
    model = _model()
    config = model.config
    rng = np.random.default_rng(0)
    rows = []
    n_timed = 3 if quick else 5
    for genes in GENES_QUICK if quick else GENES_FULL:
        prompt = _prompt(config, genes, rng)
        model.generate([prompt[:64]], max_new_tokens=4, greedy=True)  # warm-up
        start, wall = time.process_time(), time.perf_counter()
        cell = model.generate([prompt], max_new_tokens=genes, greedy=True)[0]
        ours, wall = time.process_time() - start, time.perf_counter() - wall
        assert len(cell) == genes and len(set(cell.tolist())) == genes
        # the recomputing baseline sees the prompt (+ <bos>) and the generated tokens so far
        full = torch.cat([prompt, torch.tensor([config.bos_token_id]), cell])
        base = len(prompt) + 1
        steps = np.unique(np.linspace(0, genes - 1, n_timed).round().astype(int))
        times = [_time_recompute_step(model, full, base + int(s)) for s in steps]
        baseline = float(np.interp(np.arange(genes), steps, times).sum())
        rows.append(
            {
                "benchmark": "generation",
                "setting": f"3×{genes}-gene prompt ({base} tokens) → {genes}-gene cell, CPU",
                "ours": ours,
                "baseline": baseline,
                "unit": "CPU s per cell",
                "ratio": baseline / ours,
                "direction": "ratio = recompute time / KV-cache time, higher is better",
                "note": (
                    f"KV cache: whole generate() call, {1e3 * ours / genes:.1f} CPU ms/token "
                    f"({wall:.1f} s wall, {torch.get_num_threads()} thread(s)); "
                    f"recompute extrapolated from {len(steps)} timed steps of {genes} "
                    f"({1e3 * times[0]:.0f}–{1e3 * times[-1]:.0f} CPU ms/step)"
                ),
            }
        )
    return rows


def main() -> int:
    """Print the benchmark table (one torch thread unless ``--threads``)."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
