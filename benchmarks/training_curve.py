"""Training curve on the simulated atlas: held-out timelapse error vs step, and tokens/s.

A small MaxToki (d 128, 4 layers, 4 heads; ``--quick``: d 64, 2 layers) learns TimeBetweenCells on
the control cells of ``mt.datasets.aging_atlas()``, cells cut to their top 64 genes, two context
cells per prompt; the atlas's held-out cell type is never trained on and answers the validation
prompts. Each validation row compares the median absolute Δt error with the naive predictor (the
median training timelapse for every query); the last rows compare the final validation loss with
the loss at step 0 and report the training throughput.

Run: ``python -m benchmarks.training_curve [--quick]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

BENCHMARK = "training_curve"


def _setting(quick: bool) -> dict:
    if quick:
        return {
            "atlas": {"n_donors": 16, "n_cells_per_donor": 30, "n_genes": 300, "n_cell_types": 4},
            "model": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 4,
            },
            "genes": 24,
            "steps": 60,
            "eval_interval": 20,
            "batch": 16,
        }
    return {
        "atlas": {},
        "model": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        },
        "genes": 64,
        "steps": 750,
        "eval_interval": 75,
        "batch": 32,
    }


def run(quick: bool = False) -> list[dict]:
    """Train and report the curve; rows ``benchmark, setting, ours, baseline, unit, ratio``."""
    import torch

    import maxtoki as mt

    s = _setting(quick)
    torch.manual_seed(0)
    adata = mt.datasets.aging_atlas(seed=0, **s["atlas"])
    adata = adata[adata.obs["condition"] == "control"].copy()
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    held = list(adata.uns["aging_atlas"]["heldout_cell_types"])
    prompts = mt.pp.trajectories(
        adata,
        n_context=2,
        task="TimeBetweenCells",
        holdout={"cell_type": held},
        n_prompts=s["steps"] * s["batch"],
        random_state=0,
    )
    train, ev = prompts[prompts.split == "train"], prompts[prompts.split == "eval"]
    naive = float(np.median(np.abs(ev["dt_query"] - train["dt_query"].median())))

    start = time.perf_counter()
    model, history = mt.tl.train(
        adata,
        vocab=vocab,
        prompts=prompts,
        steps=s["steps"],
        max_genes_per_cell=s["genes"],
        model_overrides=s["model"],
        random_state=0,
        quiet=True,
        config={
            "global_batch_size": s["batch"],
            "micro_batch_size": s["batch"],
            "lr": 2e-3,
            "eval_interval": s["eval_interval"],
            "log_interval": 10,
            "warmup_steps": 20,
        },
    )
    wall = time.perf_counter() - start
    n_params = model.num_parameters()
    tag = f"{n_params / 1e6:.1f}M params, held-out {', '.join(held)}"
    evals = history[history["kind"] == "eval"].reset_index(drop=True)
    trains = history[history["kind"] == "train"]
    rows = []
    for r in evals.itertuples():
        elapsed = 0.0 if np.isnan(r.elapsed_s) else r.elapsed_s
        rows.append(
            _row(
                f"step {r.step} ({elapsed:.0f}s), median abs. Δt error, {tag}",
                r.median_ae_months,
                naive,
                "months",
            )
        )
    first, last = evals.iloc[0], evals.iloc[-1]
    rows.append(
        _row(
            f"step {int(last.step)}: mean abs. Δt error vs step 0",
            last.mae_months,
            first.mae_months,
            "months",
        )
    )
    rows.append(
        _row(f"step {int(last.step)}: validation loss vs step 0", last.loss, first.loss, "loss")
    )
    tps = float(trains["tokens_per_s"].median())
    rows.append(
        {
            "benchmark": BENCHMARK,
            "setting": f"training throughput ({wall:.0f}s wall, CPU threads "
            f"{torch.get_num_threads()})",
            "ours": tps,
            "baseline": None,
            "unit": "tokens/s",
            "ratio": None,
        }
    )
    return rows


def _row(setting: str, ours: float, baseline: float, unit: str) -> dict:
    ratio = baseline / ours if ours and np.isfinite(ours) and np.isfinite(baseline) else None
    return {
        "benchmark": BENCHMARK,
        "setting": setting,
        "ours": float(ours),
        "baseline": float(baseline),
        "unit": unit,
        "ratio": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the result as a markdown table."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
