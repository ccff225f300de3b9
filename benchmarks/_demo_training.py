"""The demo's training for the throughput rows: its data, one ``mt.tl.train`` run, tokens/s.

``python -m benchmarks._demo_training OUT STEPS N_DONORS [PROCESSES]`` trains once on one torch
thread and writes the trainer's median tokens/s (summed over ranks) to the file OUT; with
PROCESSES > 1, ``mt.tl.train(processes=…)`` trains as that many spawned ranks of one thread each
(DDP over gloo), every rank on its share of each batch.
"""

from __future__ import annotations

import sys


def demo_data(n_donors: int):
    """Control cells of the atlas, their vocabulary and the demo's sorted-sampler prompts."""
    import maxtoki as mt
    from maxtoki._demo import SORTED_SAMPLER

    adata = mt.datasets.aging_atlas(n_donors=n_donors, n_cells_per_donor=50, seed=0)
    cells = adata[(adata.obs["condition"] == "control").to_numpy()].copy()
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(cells))
    mt.pp.tokenize(cells, vocab=vocab)
    prompts = mt.pp.trajectories(
        cells, n_context=2, time_range=vocab.time_range, random_state=0, **SORTED_SAMPLER
    )
    return cells, vocab, prompts


def tokens_per_s(cells, vocab, prompts, steps: int, processes: int = 1) -> float:
    """The trainer's median tokens/s over its log windows (the first one left out)."""
    import maxtoki as mt
    from maxtoki._demo import DEMO_SETTINGS

    cfg = DEMO_SETTINGS["full"]
    _, history = mt.tl.train(
        cells, vocab=vocab, prompts=prompts, steps=steps, n_context=2,
        max_genes_per_cell=cfg["max_genes"], model_overrides=cfg["model"],
        config={"task_mix": cfg["task_mix"], "eval_at_start": False, "log_interval": 5},
        device="cpu", random_state=0, quiet=True, processes=processes,
    )  # fmt: skip
    train = history[history["kind"] == "train"]
    return float(train["tokens_per_s"].iloc[1:].median())


def main(argv: list[str] | None = None) -> int:
    """Train once (one thread per process) and write tokens/s to the file ``argv[0]``."""
    import torch

    import maxtoki as mt

    out, steps, n_donors, *processes = argv if argv is not None else sys.argv[1:]
    torch.set_num_threads(1)
    mt.settings.verbosity = 0
    n_processes = int(processes[0]) if processes else 1
    rate = tokens_per_s(*demo_data(int(n_donors)), int(steps), n_processes)
    with open(out, "w") as f:
        f.write(f"{rate}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
