"""NextCell generation: decode speed against transformers, the KV cache, batching and threads.

One small model (hidden 256, 4 layers, temporal vocabulary of 23,277 tokens, its ``<eos>`` logit
held at 0 so that greedy decoding never ends a cell early), saved and loaded into
``transformers.LlamaForCausalLM`` (``attn_implementation="sdpa"``) so both sides hold the same
weights. Every side is timed several times, interleaved, and the median is reported with the
spread (min–max) in the note: single timings swing by ±40 % on a shared machine. Times are wall
clock (``time.perf_counter``); every ratio is measured in this run, none is extrapolated.

Rows:

- **decode vs transformers** at 1k, 3k and 12k-token prompts: ms per generated token, taken as
  (time of a ``n``-token call − time of a 1-token call) / (``n`` − 1), so the prefill of the
  prompt is not counted; ours is ``MaxToki.generate(greedy=True)``, theirs
  ``LlamaForCausalLM.generate(do_sample=False)``. ``ratio`` = theirs / ours (the issue's
  target, ours ≤ 0.5 × theirs, is ratio ≥ 2).
- **KV cache vs recompute** at a 3k-token prompt: the same ms/token measure with
  ``use_cache=False`` (a full forward over the prompt and the tokens so far per new token).
- **batch 16 vs batch 1**: 16 ragged prompts of three cells (genes per cell drawn between 96
  and 256) decoded in one call, against the same prompts one at a time; generated tokens per
  second of the decode steps (prefill excluded, as above).
- **threads**: the batch-16 call on every core against one thread.

Run: ``python -m benchmarks.generation [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np
import torch

from maxtoki.models import MaxToki, MaxTokiConfig

LENGTHS_FULL = (1024, 3072, 12288)
LENGTHS_QUICK = (256, 1024)


def _models() -> tuple[MaxToki, object]:
    import transformers

    config = MaxTokiConfig.preset(
        "tiny",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=16384,
        attn_backend="sdpa",
    )
    torch.manual_seed(0)
    ours = MaxToki(config).eval()
    with torch.no_grad():
        ours.lm_head.weight[config.eos_token_id] = 0.0  # logit 0: never the greedy maximum
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        theirs = transformers.LlamaForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    return ours, theirs.eval()


def _cells(config: MaxTokiConfig, sizes, rng: np.random.Generator) -> torch.Tensor:
    """A prompt of cells of the given sizes (``<bos> genes <eos> Δt`` …, then the query)."""
    gene_ids = np.arange(4, config.time_token_start_id)
    parts = []
    for i, genes in enumerate(sizes):
        cell = rng.choice(gene_ids, size=genes, replace=False)
        parts += [[config.bos_token_id], cell, [config.eos_token_id]]
        parts.append([config.time_token_id(12 * (i + 1))])
    parts[-1] = [config.boq_token_id, config.time_token_id(60), config.eoq_token_id]
    return torch.tensor(np.concatenate(parts), dtype=torch.long)


def _timer(fn, n_tokens: int):
    def timed() -> float:
        start = time.perf_counter()
        out = fn(n_tokens)
        seconds = time.perf_counter() - start
        assert all(len(cell) == n_tokens for cell in out), "a cell ended early"
        return seconds

    return timed


def _ours(model: MaxToki, prompts: list[torch.Tensor], use_cache: bool = True):
    return lambda n: model.generate(prompts, max_new_tokens=n, greedy=True, use_cache=use_cache)


def _theirs(model, prompt: torch.Tensor):
    def generate(n: int) -> list[torch.Tensor]:
        with torch.inference_mode():
            out = model.generate(
                prompt[None],
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        return [out[0, len(prompt) :]]

    return generate


def _on_threads(fn, n: int):
    """``fn`` run on ``n`` torch threads (the setting restored after)."""

    def run(k: int):
        threads = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn(k)
        finally:
            torch.set_num_threads(threads)

    return run


def _per_token(sides: dict, n: int, repeats: int) -> dict[str, list[float]]:
    """ms per decoded token of each side: interleaved ``n``-token and 1-token calls."""
    calls = {name: (_timer(fn, n), _timer(fn, 1)) for name, fn in sides.items()}
    for _, short in calls.values():  # warm-up
        short()
    out = {name: [] for name in sides}
    for rep in range(repeats):
        order = list(calls) if rep % 2 == 0 else list(calls)[::-1]
        for name in order:
            long, short = calls[name]
            out[name].append(1e3 * (long() - short()) / (n - 1))
    return out


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _decode_rows(ours: MaxToki, theirs, quick: bool, rng) -> list[dict]:
    rows = []
    for length in LENGTHS_QUICK if quick else LENGTHS_FULL:
        prompt = _cells(ours.config, [length // 3 - 2] * 3, rng)
        repeats = 3 if quick or length > 4096 else 5
        n = 17 if quick else 33
        t = _per_token(
            {"ours": _ours(ours, [prompt]), "transformers": _theirs(theirs, prompt)}, n, repeats
        )
        mine, base = statistics.median(t["ours"]), statistics.median(t["transformers"])
        rows.append(
            {
                "benchmark": "generation",
                "setting": f"greedy decode, {len(prompt)}-token prompt, batch 1, vs transformers",
                "ours": mine,
                "baseline": base,
                "unit": "ms/token (lower is better)",
                "ratio": base / mine,
                "direction": "ratio = transformers ms/token / ours, higher is better; target 2",
                "note": (
                    f"{repeats} interleaved repeats of {n}- and 1-token calls; ours "
                    f"{_spread(t['ours'])}, transformers {_spread(t['transformers'])} ms/token; "
                    f"{torch.get_num_threads()} thread(s)"
                ),
            }
        )
    return rows


def _cache_row(ours: MaxToki, quick: bool, rng) -> dict:
    length = 1024 if quick else 3072
    prompt = _cells(ours.config, [length // 3 - 2] * 3, rng)
    n, repeats = (5, 2) if quick else (9, 3)
    t = _per_token(
        {"cache": _ours(ours, [prompt]), "recompute": _ours(ours, [prompt], use_cache=False)},
        n,
        repeats,
    )
    mine, base = statistics.median(t["cache"]), statistics.median(t["recompute"])
    return {
        "benchmark": "generation",
        "setting": f"KV cache vs recompute, {len(prompt)}-token prompt, batch 1",
        "ours": mine,
        "baseline": base,
        "unit": "ms/token (lower is better)",
        "ratio": base / mine,
        "direction": "ratio = recompute / KV cache ms per token, higher is better; target 74",
        "note": (
            f"both measured in full: {repeats} interleaved repeats of {n}- and 1-token calls; "
            f"cache {_spread(t['cache'])}, recompute {_spread(t['recompute'])} ms/token"
        ),
    }


def _batch_rows(ours: MaxToki, quick: bool, rng) -> list[dict]:
    n_prompts, n, repeats = (4, 9, 2) if quick else (16, 33, 3)
    prompts = [_cells(ours.config, rng.integers(96, 257, size=3), rng) for _ in range(n_prompts)]
    lengths = [len(p) for p in prompts]
    all_cores = os.cpu_count() or 1

    def one_at_a_time(k: int) -> list[torch.Tensor]:
        return [cell for p in prompts for cell in _ours(ours, [p])(k)]

    sides = {
        "one": _on_threads(one_at_a_time, 1),
        "batch": _on_threads(_ours(ours, prompts), 1),
        "all": _on_threads(_ours(ours, prompts), all_cores),
    }
    t = _per_token(sides, n, repeats)  # ms per decode step of all prompts
    tps = {name: 1e3 * n_prompts / statistics.median(v) for name, v in t.items()}
    setting = f"{n_prompts} ragged prompts ({min(lengths)}–{max(lengths)} tokens), greedy decode"
    note = f"decode steps only (prefill excluded), median of {repeats} interleaved repeats"
    return [
        {
            "benchmark": "generation",
            "setting": f"{setting}, batch {n_prompts} vs one at a time, 1 thread",
            "ours": tps["batch"],
            "baseline": tps["one"],
            "unit": "generated tokens/s",
            "ratio": tps["batch"] / tps["one"],
            "direction": "ratio = batched / one-at-a-time tokens/s; target 8",
            "note": note,
        },
        {
            "benchmark": "generation",
            "setting": f"{setting}, batch {n_prompts}, {all_cores} threads vs 1",
            "ours": tps["all"],
            "baseline": tps["batch"],
            "unit": "generated tokens/s",
            "ratio": tps["all"] / tps["batch"],
            "direction": "ratio = all cores / one thread tokens/s",
            "note": note,
        },
    ]


def run(quick: bool = False) -> list[dict]:
    """Time decoding against transformers, recompute, batching and threads; return rows."""
    ours, theirs = _models()
    rng = np.random.default_rng(0)
    rows = _decode_rows(ours, theirs, quick, rng)
    rows.append(_cache_row(ours, quick, rng))
    return rows + _batch_rows(ours, quick, rng)


def main() -> int:
    """Print the benchmark table (one torch thread unless ``--threads``)."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
