"""Shared real outputs for the mt.pl tests: a small atlas and one tiny model, built once.

Not a test module of its own: ``test_pl_*.py`` and ``test_explore.py`` import :func:`outputs`,
which trains the model once per session (cached) and runs every tool the plots draw.
"""

from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")


@functools.cache
def outputs() -> SimpleNamespace:
    """Atlas → tokens → tiny model (30 steps) → predict_time, age_acceleration, attention…"""
    import maxtoki as mt

    old = mt.settings.verbosity
    mt.settings.verbosity = 1
    try:
        adata = mt.datasets.aging_atlas(
            n_donors=16, n_cells_per_donor=20, n_genes=300, n_cell_types=3, seed=0
        )
        vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
        mt.pp.tokenize(adata, vocab=vocab)
        model, history = mt.tl.train(
            adata,
            vocab=vocab,
            steps=30,
            max_genes_per_cell=32,
            model_overrides={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
            quiet=True,
            device="cpu",
        )
        mt.tl.predict_time(adata, model=model, vocab=vocab, n_contexts=2, device="cpu")
        mt.tl.age_acceleration(adata, n_boot=200)
        mt.tl.attention(adata, model=model, vocab=vocab, n_cells=60, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            prompts = mt.pp.trajectories(adata, n_context=2, n_prompts=20, task="TimeBetweenCells")
        generated = mt.tl.generate(
            adata, model=model, vocab=vocab, n_cells=24, timelapse=60, device="cpu"
        )
        evaluation = mt.tl.evaluate(
            adata, model=model, vocab=vocab, n_cells=40, n_contexts=2, device="cpu"
        )
    finally:
        mt.settings.verbosity = old
    return SimpleNamespace(
        adata=adata,
        vocab=vocab,
        model=model,
        history=history,
        prompts=prompts,
        generated=generated,
        evaluation=evaluation,
    )
