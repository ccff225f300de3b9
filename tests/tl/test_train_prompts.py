"""mt.tl.train draws a fresh prompt per training example; every stage-2 path warns about tables
that repeat.

With one prompt per cell and 900 steps, the demo's model learned its ~1,500 prompts by heart
(training timelapse loss 0.01 against 0.5–0.7 on new prompts of the same cells); fresh prompts
lowered the held-out ages' and donors' errors in every seed (docs/benchmarks.md).
"""

from __future__ import annotations

import re

import pytest
from bad_input import TINY

import maxtoki as mt
from maxtoki.train import ArrayTokens, TrainConfig, build_datasets
from maxtoki.train._prompts import MAX_PROMPT_READS


@pytest.fixture(scope="module")
def cells():
    adata = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=4, n_genes=200, seed=0)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    return adata, vocab


def _warnings(caplog, adata, vocab, **kw) -> list[str]:
    caplog.clear()
    with caplog.at_level("INFO", logger="maxtoki"):
        mt.tl.train(
            adata, vocab=vocab, model_overrides=TINY, max_genes_per_cell=8, device="cpu",
            quiet=True, random_state=0, groupby="cell_type",
            config={"global_batch_size": 8, "micro_batch_size": 8, "eval_interval": 100}, **kw,
        )  # fmt: skip
    return [r.getMessage() for r in caplog.records if "by heart" in r.getMessage()]


def _drawn(caplog) -> int:
    """How many prompts mt.pp.trajectories drew (training and validation), from its log."""
    (line,) = [r.getMessage() for r in caplog.records if "eval prompts over" in r.getMessage()]
    found = re.search(r"(\d[\d,]*) training and (\d[\d,]*) eval prompts", line)
    return sum(int(n.replace(",", "")) for n in found.groups())


def test_fresh_prompts_by_default_and_a_warning_for_repeated_ones(cells, caplog):
    adata, vocab = cells
    n_train = round(adata.n_obs * 0.95)  # one prompt per cell: 5% kept for validation
    steps = MAX_PROMPT_READS * n_train // 8 + 2  # just over MAX_PROMPT_READS reads per prompt
    assert _warnings(caplog, adata, vocab, steps=steps) == []
    assert _drawn(caplog) == steps * 8  # one per training example (8 a step), not per cell
    (message,) = _warnings(caplog, adata, vocab, steps=steps, n_prompts=adata.n_obs)
    assert f"n_prompts={steps * 8}" in message and f"{n_train:,} training prompts" in message
    few = MAX_PROMPT_READS * n_train // 8 - 1
    assert _warnings(caplog, adata, vocab, steps=few, n_prompts=adata.n_obs) == []
    assert _warnings(caplog, adata, vocab, steps=steps, stage=1) == []  # cells, not prompts


def test_a_prompt_table_read_by_the_trainer_warns_too(cells, caplog):
    """`maxtoki train config.yaml` and torchrun read their CSV through build_datasets."""
    adata, vocab = cells
    tokens, lengths = adata.obsm["maxtoki_tokens"], adata.obs["maxtoki_n_tokens"].to_numpy()
    source = ArrayTokens(tokens, lengths, names=adata.obs_names)
    prompts = mt.pp.trajectories(adata, groupby="cell_type", n_context=2, n_prompts=40,
                                 time_range=vocab.time_range, random_state=0)  # fmt: skip
    n_train = len(prompts)  # no validation prompts: val_fraction=0 below

    def warned(steps: int) -> list[str]:
        caplog.clear()
        config = TrainConfig(
            stage=2, steps=steps, global_batch_size=8, micro_batch_size=8, val_fraction=0.0
        )
        with caplog.at_level("INFO", logger="maxtoki"):
            train, _ = build_datasets(config, source, vocab, max_length=256, prompts=prompts)
        assert len(train) == n_train
        return [r.getMessage() for r in caplog.records if "by heart" in r.getMessage()]

    reads = MAX_PROMPT_READS * n_train
    (message,) = warned(reads // 8 + 1)
    assert f"--n-prompts {(reads // 8 + 1) * 8}" in message
    assert warned(reads // 8) == []
