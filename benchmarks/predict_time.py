"""Throughput of ``mt.tl.predict_time``: batched prompts vs one prompt at a time.

Ages query cells of ``mt.datasets.aging_atlas()`` against the control cells (``n_contexts``
trajectories of two context cells per query, cells cut to their top genes) with a randomly
initialised MaxToki (throughput does not depend on the weights): once with the default batching
(prompts sorted by length, ``mt.settings.batch_size`` per forward pass) and once with
``batch_size=1``, the one-prompt-at-a-time baseline. Reports query cells per second. A second
row runs the batched setting on every core against one thread; a third, on every core,
bfloat16 autocast against float32 (``mt.settings.dtype``; on a CPU with AMX, as the demo reads
its cells), with the largest difference of the ages read.

Run: ``python -m benchmarks.predict_time [--quick]``.
"""

from __future__ import annotations

import os
import sys
import time

BENCHMARK = "predict_time"


def _setting(quick: bool) -> dict:
    if quick:
        return {
            "atlas": {"n_donors": 16, "n_cells_per_donor": 30, "n_genes": 300, "n_cell_types": 4},
            "model": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
            "genes": 24,
            "n_query": 60,
            "n_contexts": 3,
        }
    return {
        "atlas": {},
        "model": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4},
        "genes": 64,
        "n_query": 400,
        "n_contexts": 3,
    }


def run(quick: bool = False) -> list[dict]:
    """Time both settings; rows ``benchmark, setting, ours, baseline, unit, ratio``."""
    import numpy as np
    import torch

    import maxtoki as mt

    s = _setting(quick)
    verbosity, mt.settings.verbosity = mt.settings.verbosity, 1
    try:
        adata = mt.datasets.aging_atlas(seed=0, **s["atlas"])
        vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
        mt.pp.tokenize(adata, vocab=vocab)
        config = mt.models.MaxTokiConfig.preset(
            "tiny",
            **{**vocab.model_config_fields(), "num_attention_heads": 4, "num_key_value_heads": 4},
            **s["model"],
        )
        torch.manual_seed(0)
        model = mt.models.MaxToki(config)
        rows = np.random.default_rng(0).choice(adata.n_obs, s["n_query"], replace=False)
        query = adata[np.sort(rows)].copy()
        context = adata[(adata.obs["condition"] == "control").to_numpy()]
        kw = {"model": model, "vocab": vocab, "context": context, "n_contexts": s["n_contexts"]}
        kw |= {"max_genes": s["genes"], "device": "cpu"}
        mt.tl.predict_time(query[:8].copy(), **kw)  # warm-up
        timings = {}
        threads, all_cores = torch.get_num_threads(), os.cpu_count() or 1
        runs = (("batched", None, 1, "auto"), ("one at a time", 1, 1, "auto"))
        runs += (("all cores", None, all_cores, "auto"), ("bfloat16", None, all_cores, "bfloat16"))
        ages = {}
        for name, batch, n, dtype in runs:
            q = query.copy()
            torch.set_num_threads(n)
            with mt.settings.override(dtype=dtype):
                start = time.perf_counter()
                mt.tl.predict_time(q, batch_size=batch, **kw)
                timings[name] = time.perf_counter() - start
            ages[name] = q.obs["maxtoki_age"].to_numpy()
    finally:
        torch.set_num_threads(threads)
        mt.settings.verbosity = verbosity
    ours = s["n_query"] / timings["batched"]
    base = s["n_query"] / timings["one at a time"]
    apart = np.abs(ages["bfloat16"] - ages["all cores"])  # months between the two precisions
    return [
        {
            "benchmark": BENCHMARK,
            "setting": (
                f"{s['n_query']} query cells × {s['n_contexts']} contexts, top {s['genes']} genes, "
                f"{model.num_parameters() / 1e6:.1f}M params, batch {mt.settings.batch_size} vs 1, "
                "1 CPU thread"
            ),
            "ours": ours,
            "baseline": base,
            "unit": "cells/s",
            "ratio": ours / base,
        },
        {
            "benchmark": BENCHMARK,
            "setting": f"the batched setting above, {all_cores} threads vs 1",
            "ours": s["n_query"] / timings["all cores"],
            "baseline": ours,
            "unit": "cells/s",
            "ratio": timings["batched"] / timings["all cores"],
        },
        {
            "benchmark": BENCHMARK,
            "setting": (
                f"{all_cores} threads, bfloat16 autocast vs float32; ages read within "
                f"{apart.max():.0f} months (median {np.median(apart):.1f})"
            ),
            "ours": s["n_query"] / timings["bfloat16"],
            "baseline": s["n_query"] / timings["all cores"],
            "unit": "cells/s",
            "ratio": timings["all cores"] / timings["bfloat16"],
        },
    ]


def main(argv: list[str] | None = None) -> int:
    """Print the result as a markdown table."""
    from benchmarks.__main__ import run_one

    return run_one(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
