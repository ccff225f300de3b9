"""Draw the documentation figures of ``mt.pl`` from one realistic run on the simulated atlas.

A small MaxToki is trained (TimeBetweenCells and NextCell) on the healthy (control) cells of
:func:`maxtoki.datasets.aging_atlas` (the atlas's held-out cell type is never trained on), then
every tool whose result ``mt.pl``
draws runs on it: ``predict_time`` on all cells (controls as reference), ``age_acceleration``
per cell type, ``attention``, ``generate`` and ``evaluate`` (with ablations and the doublet
check). The figures go to ``docs/_static/figures/``:

``predicted_age.png``, ``age_acceleration.png``, ``attention_heads.png``,
``attention_genes.png``, ``trajectory.png``, ``training_curves.png``, ``evaluation.png``,
``generated_vs_real.png``.

Run from the repository root: ``python docs/make_figures.py`` (about 5–15 minutes on a laptop
CPU; ``--quick`` for a smoke run in about a minute, whose figures are not meaningful).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

OUT = Path(__file__).resolve().parent / "_static" / "figures"


def _setting(quick: bool) -> dict:
    if quick:
        return {
            "atlas": {"n_donors": 16, "n_cells_per_donor": 20, "n_genes": 300, "n_cell_types": 3},
            "model": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
            "genes": 32,
            "steps": 30,
            "batch": 16,
            "eval_interval": 10,
            "n_generate": 30,
            "n_eval": 60,
        }
    return {
        "atlas": {"n_donors": 40, "n_cells_per_donor": 50, "n_genes": 800},
        "model": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        },
        "genes": 32,
        "steps": 500,
        "batch": 32,
        "eval_interval": 50,
        "n_generate": 150,
        "n_eval": 300,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the figures")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    import maxtoki as mt

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mt.settings.figdir = args.out
    mt.settings.verbosity = "info"
    s = _setting(args.quick)
    t0 = time.perf_counter()

    def step(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    # --- data and model ---------------------------------------------------------------------
    adata = mt.datasets.aging_atlas(seed=0, **s["atlas"])
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    held = [str(t) for t in adata.uns["aging_atlas"]["heldout_cell_types"]]
    control = adata[(adata.obs["condition"] == "control").to_numpy()].copy()
    prompts = mt.pp.trajectories(
        control,
        n_context=2,
        task=("TimeBetweenCells", "NextCell"),
        holdout={"cell_type": held} if held else None,
        n_prompts=s["steps"] * s["batch"],
        random_state=0,
    )
    step(f"atlas {adata.shape}, {len(prompts)} prompts; training")
    with tempfile.TemporaryDirectory() as run_dir:
        model, _ = mt.tl.train(
            control,
            vocab=vocab,
            prompts=prompts,
            steps=s["steps"],
            max_genes_per_cell=s["genes"],
            model_overrides=s["model"],
            config={
                "global_batch_size": s["batch"],
                "micro_batch_size": s["batch"],
                "lr": 3e-3,
                "warmup_steps": max(s["steps"] // 20, 1),
                "eval_interval": s["eval_interval"],
                "eval_batches": 4,
                "log_interval": max(s["steps"] // 100, 1),
            },
            out_dir=run_dir,
            quiet=True,
        )
        fig = mt.pl.training_curves(Path(run_dir) / "metrics.jsonl", unit="years", show=False)
        mt.pl.savefig(fig, "training_curves.png", close=True)
    step("trained; predicting ages")

    # --- tools ------------------------------------------------------------------------------
    mt.tl.predict_time(adata, model=model, vocab=vocab, n_contexts=3, max_genes=s["genes"])
    mt.tl.age_acceleration(adata, stratify_by="cell_type", n_boot=1000)
    step("attention")
    mt.tl.attention(adata, model=model, vocab=vocab, n_cells=300, max_genes=s["genes"])
    step("generating")
    generated = mt.tl.generate(
        control, model=model, vocab=vocab, n_cells=s["n_generate"], timelapse=120,
        max_genes=s["genes"],
    )  # fmt: skip
    step("evaluating")
    table = mt.tl.evaluate(
        adata, model=model, vocab=vocab, heldout_cell_types=held, n_cells=s["n_eval"],
        n_contexts=3, ablations=True, generated=generated, max_genes=s["genes"],
    )  # fmt: skip
    print(table.to_string())

    # --- figures ----------------------------------------------------------------------------
    step("drawing")
    ctrl = adata[(adata.obs["condition"] == "control").to_numpy()]
    ax = mt.pl.predicted_age(ctrl, color="cell_type", show=False)
    mt.pl.savefig(ax, "predicted_age.png", close=True)

    acc = mt.get.age_acceleration(adata)
    print(acc.to_string())
    stratum = "fibroblast" if "fibroblast" in set(acc["stratum"]) else None
    fig = mt.pl.age_acceleration(adata, stratum=stratum, show=False)
    mt.pl.savefig(fig, "age_acceleration.png", close=True)

    mt.pl.savefig(mt.pl.attention_heads(adata, show=False), "attention_heads.png", close=True)
    fig = mt.pl.attention_genes(adata, n_genes=12, show=False)
    mt.pl.savefig(fig, "attention_genes.png", close=True)

    tbc = prompts[(prompts["split"] == "train") & (prompts["task"] == "TimeBetweenCells")]
    rows = list(np.random.default_rng(1).choice(len(tbc), 3, replace=False))
    ax = mt.pl.trajectory(adata, tbc, row=rows, generated=generated, show=False)
    mt.pl.savefig(ax, "trajectory.png", close=True)

    ax = mt.pl.evaluation(table, show=False)
    mt.pl.savefig(ax, "evaluation.png", close=True)

    ax = mt.pl.generated_vs_real(control, generated, color="cell_type", show=False)
    mt.pl.savefig(ax, "generated_vs_real.png", close=True)
    plt.close("all")
    step(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
