"""Shared set-up of the ``tests/test_tl_*.py`` modules: one small model, trained once per session.

The simulated atlas is tokenized and a small MaxToki model is trained with ``mt.tl.train`` the way
the paper trains MaxToki: stage 1 (next-gene pretraining, no ages) on every cell of the training
cell types, disease donors included, so the model knows every gene; then stage 2 on the healthy
controls only, TimeBetweenCells first and then both tasks (so it can also generate cells). Held
out of stage 2: the held-out cell types, and every other adult control donor, which serve as the
age-matched healthy reference of the age-acceleration test (queries the model never saw, like
the disease queries). The trained model is cached on disk under
``.pytest_cache/maxtoki_tl/<key>``; the key hashes the recipe and the sources of
``maxtoki/models``, ``maxtoki/train``, ``maxtoki/pp`` and ``maxtoki/datasets``, so any change there
retrains. Set ``MAXTOKI_TL_NO_CACHE=1`` to always retrain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import maxtoki as mt

ROOT = Path(__file__).resolve().parents[1]
ATLAS = {
    "n_donors": 80,
    "n_cells_per_donor": 40,
    "n_genes": 400,
    "disease_fraction": 0.45,
    "seed": 0,
}
MAX_GENES = 24
ARCH = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
}
PHASES = (  # (stage, tasks, steps, lr)
    (1, (), 300, 3e-3),
    (2, ("TimeBetweenCells",), 1200, 3e-3),
    (2, ("TimeBetweenCells", "NextCell"), 800, 2e-3),
)
TRAIN_SECONDS: dict[str, float] = {}


def _key(vocab_hash: str) -> str:
    h = hashlib.sha256(json.dumps([ATLAS, MAX_GENES, ARCH, PHASES, vocab_hash]).encode())
    for sub in ("models", "train", "pp", "datasets"):
        for path in sorted((ROOT / "maxtoki" / sub).glob("*.py")):
            h.update(path.read_bytes())
    h.update((ROOT / "maxtoki" / "tl" / "_train.py").read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def atlas():
    """The tokenized atlas and its vocabulary (shared: tests copy before writing).

    ``obs['role']``: ``'train'`` (control cells of stage 2), ``'reference'`` (held-out control
    donors), ``'heldout_type'`` (control cells of held-out cell types) or ``'disease'``.
    """
    adata = mt.datasets.aging_atlas(**ATLAS)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    obs = adata.obs
    donors = obs.groupby("donor", observed=True)[["age_months", "condition"]].first()
    adult = donors[(donors["condition"] == "control") & (donors["age_months"] >= 0.55 * 12 * 95)]
    reference = adult.sort_values("age_months").index[1::2]
    control = (obs["condition"] == "control").to_numpy()
    role = np.where(control, "train", "disease").astype(object)
    role[control & obs["donor"].isin(reference).to_numpy()] = "reference"
    role[control & obs["heldout_cell_type"].to_numpy()] = "heldout_type"
    obs["role"] = pd.Categorical(role)
    return adata, vocab


@functools.lru_cache(maxsize=1)
def trained():
    """``(adata, vocab, model)``: the atlas and the model trained on it (see the module doc)."""
    torch.set_num_threads(1)
    adata, vocab = atlas()
    cache = ROOT / ".pytest_cache" / "maxtoki_tl" / _key(vocab.hash)
    if (cache / "config.json").is_file() and not os.environ.get("MAXTOKI_TL_NO_CACHE"):
        model = mt.models.MaxToki.from_pretrained(cache, device="cpu")
        return adata, vocab, model
    role = adata.obs["role"].to_numpy()
    pretrain = adata[role != "heldout_type"].copy()
    temporal = adata[role == "train"].copy()
    model = None
    start = time.perf_counter()
    for i, (stage, task, steps, lr) in enumerate(PHASES):
        model, _ = mt.tl.train(
            pretrain if stage == 1 else temporal,
            vocab=vocab,
            model=model,
            stage=stage,
            steps=steps,
            task=task or "TimeBetweenCells",
            n_context=2,
            n_prompts=16 * steps,
            max_genes_per_cell=MAX_GENES,
            model_overrides=ARCH,
            config={
                "global_batch_size": 16,
                "micro_batch_size": 16,
                "lr": lr,
                "warmup_steps": 20 if i < 2 else 10,
                "val_fraction": 0.01,
                "eval_at_start": False,
                "eval_interval": 10**6,
                "eval_batches": 1,
                "log_interval": 10**6,
            },
            quiet=True,
            device="cpu",
            random_state=i,
        )
    TRAIN_SECONDS["train"] = time.perf_counter() - start
    try:
        model.save_pretrained(cache)
    except OSError:
        pass
    return adata, vocab, model


@functools.lru_cache(maxsize=1)
def predicted():
    """Fibroblasts and microglia of the disease and reference donors, aged against controls."""
    adata, vocab, model = trained()
    types = ["fibroblast", "microglia"]
    keep = adata.obs["cell_type"].isin(types) & adata.obs["role"].isin(["disease", "reference"])
    sub = adata[keep.to_numpy()].copy()
    context = adata[(adata.obs["condition"] == "control").to_numpy()]
    mt.tl.predict_time(
        sub, model=model, vocab=vocab, context=context, n_contexts=3, max_genes=MAX_GENES,
        random_state=0,
    )
    return sub


def controls(adata):
    """The control cells (a view): the healthy context."""
    return adata[(adata.obs["condition"] == "control").to_numpy()]


def mudata_of(adata):
    """A MuData with ``adata`` as its ``'rna'`` modality and a small second modality."""
    import mudata
    from anndata import AnnData

    other = AnnData(np.zeros((adata.n_obs, 2), dtype=np.float32))
    other.obs_names = adata.obs_names
    with mudata.set_options(pull_on_update=False):
        return mudata.MuData({"rna": adata, "prot": other})


def snapshot(adata) -> dict:
    """What a failed or ``copy=True`` call must leave unchanged."""
    return {
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": sorted(adata.obsm),
        "varm": sorted(adata.varm),
        "uns": sorted(adata.uns),
    }


def unchanged(adata, before: dict) -> bool:
    return (
        adata.obs.equals(before["obs"])
        and adata.var.equals(before["var"])
        and sorted(adata.obsm) == before["obsm"]
        and sorted(adata.varm) == before["varm"]
        and sorted(adata.uns) == before["uns"]
    )


def roundtrip(adata, tmp_path):
    """``adata`` written to and read back from h5ad."""
    import anndata

    path = tmp_path / "roundtrip.h5ad"
    adata.write_h5ad(path)
    return anndata.read_h5ad(path)


def subset(adata, n: int, seed: int = 0):
    """``n`` random cells (a copy), in obs order."""
    rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, n, replace=False))
    return adata[rows].copy()


def fake_reference(n_donors: int, per_donor: int, groups=("a", "b"), seed: int = 0):
    """Reference cells whose single token encodes their row, ages 0–1000 months; the groups
    alternate cell by cell."""
    from maxtoki.tl._contexts import Reference

    gen = np.random.default_rng(seed)
    n = n_donors * per_donor
    donors = np.repeat([f"d{i}" for i in range(n_donors)], per_donor)
    times = np.rint(gen.uniform(0, 1000, n))
    cells = [np.array([1000 + i]) for i in range(n)]
    return Reference(cells, times, np.resize(np.asarray(groups), n), donors, np.arange(n), None)
