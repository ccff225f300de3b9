"""Set-up of the CLI tests: a tiny atlas in two .h5ad files, its vocabulary and tiny models.

The ``cli`` fixture carries the helpers too (``cli.run``, ``cli.tokenized`` …): conftest modules
of several test folders cannot be imported by name.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import pytest
from bad_input import TINY

import maxtoki as mt
from maxtoki._cli import main

OBS_KEYS = ["age_months", "cell_type", "sex", "donor", "condition"]
# the tiny atlas has (cell type, sex) groups with one control donor: group by cell type only
FAST = ["--groupby", "cell_type", "--max-genes", "8", "--device", "cpu"]


def run(*argv) -> int:
    """``maxtoki ARGV`` in this process, quiet."""
    return main(["--verbosity", "1", "--no-progress", *map(str, argv)])


@pytest.fixture(scope="session")
def cli(tmp_path_factory) -> SimpleNamespace:
    """Files, vocabularies and models of the CLI tests (built once; treat as read-only)."""
    from maxtoki.train import build_model

    root = tmp_path_factory.mktemp("cli")
    with mt.settings.override(verbosity=0):
        atlas = mt.datasets.aging_atlas(n_donors=8, n_cells_per_donor=10, n_genes=200, seed=0)
        medians = mt.pp.gene_medians(atlas)
        vocab = mt.pp.GeneVocab.from_genes(medians)
        genes_only = mt.pp.GeneVocab.from_genes(medians, time_range=None)
        donors = sorted(atlas.obs["donor"].unique())
        first = atlas.obs["donor"].isin(donors[:4]).to_numpy()
        files = [root / "donors_a.h5ad", root / "donors_b.h5ad"]
        atlas[first].copy().write_h5ad(files[0])
        atlas[~first].copy().write_h5ad(files[1])
        cells = ad.concat([atlas[first], atlas[~first]], merge="same")  # the store's order
        cells.write_h5ad(root / "cells.h5ad")
        vocab.save(root / "vocab")
        model = build_model("tiny", vocab=vocab, overrides=TINY)
        model.save_pretrained(root / "model")
        build_model("tiny", vocab=genes_only, overrides=TINY).save_pretrained(root / "stage1")
    store = root / "store"
    assert run("tokenize", *files, "-o", store, "--vocab", root / "vocab",
               "--obs-keys", *OBS_KEYS, "--chunk-size", "25") == 0  # fmt: skip
    return SimpleNamespace(
        root=root, files=files, cells_file=root / "cells.h5ad", cells=cells, vocab=vocab,
        model_dir=root / "model", stage1_dir=root / "stage1", store=store, run=run,
        tokenized=tokenized, model_of=model_of, FAST=FAST, OBS_KEYS=OBS_KEYS,
    )  # fmt: skip


def tokenized(adata: ad.AnnData, vocab) -> ad.AnnData:
    """A tokenized copy (the reference the CLI's results are checked against)."""
    out = adata.copy()
    with mt.settings.override(verbosity=0):
        mt.pp.tokenize(out, vocab=vocab)
    return out


def model_of(folder: Path):
    return mt.models.MaxToki.from_pretrained(folder, device="cpu")
