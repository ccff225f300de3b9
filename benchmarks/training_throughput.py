"""Training throughput: forward + backward tokens/s of MaxToki vs transformers.LlamaForCausalLM.

Both models have the same config (hidden 256, 4 layers, 4 heads, FFN 512, temporal vocabulary of
23,277 tokens), the same weights (ours saved, theirs loaded with ``attn_implementation="sdpa"``)
and the same batches; the loss (next-token cross-entropy on all positions) is computed the same
way outside the models. Steps of the two models are interleaved so that load changes on a shared
machine hit both alike, and timed in CPU seconds of this process (``time.process_time``), which
other jobs on a shared machine do not inflate; wall-clock numbers are in the note. The median
step is reported. ``ratio`` = ours / baseline tokens per second (higher is better, target >= 1).

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
        }
    ]


def main() -> int:
    """Print the benchmark table (one torch thread unless ``--threads``)."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
