from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import logging as logg
from .._anndata import check_vocab, positive_int, require_cells, resolve_modality

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab
    from ..train import TrainConfig


def train(
    adata: AnnData,
    *,
    vocab: GeneVocab,
    model: MaxToki | str | None = None,
    prompts: pd.DataFrame | None = None,
    stage: Literal[1, 2] = 2,
    steps: int = 500,
    time_key: str = "age_months",
    group_by: str | Sequence[str] | None = ("cell_type", "sex"),
    holdout: Mapping[str, Any] | np.ndarray | None = None,
    n_context: int | tuple[int, int] = (2, 3),
    task: str | Sequence[str] = ("TimeBetweenCells", "NextCell"),
    n_prompts: int | None = None,
    max_genes_per_cell: int | None = 64,
    model_overrides: Mapping[str, Any] | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    out_dir: str | None = None,
    device: str = "auto",
    rng: int = 0,
    quiet: bool = False,
    mod: str = "rna",
) -> tuple[MaxToki, pd.DataFrame]:
    """Train a MaxToki model on the tokenized cells of an AnnData (notebook entry point).

    Stage 2 (default) trains on temporal prompts: those given, or ones built with
    :func:`maxtoki.pp.trajectories` (eval prompts, from ``holdout``, are the validation set;
    without them 5% of the prompts are). Stage 1 trains next-gene prediction on single cells.
    The training loop is :class:`maxtoki.train.Trainer`; for corpora and many GPUs use the
    ``maxtoki train`` command. Nothing is written into ``adata``.

    Parameters
    ----------
    adata
        AnnData (or MuData) tokenized by :func:`maxtoki.pp.tokenize` with ``vocab``.
    vocab
        The :class:`~maxtoki.pp.GeneVocab` of the tokens (with time tokens for stage 2).
    model
        ``None`` or a preset name (``"tiny"``…) builds a new model sized for ``vocab``
        (time-token embeddings start smooth in their month value); a model folder or a
        :class:`~maxtoki.models.MaxToki` continues training that model (in place).
    prompts
        A table from :func:`maxtoki.pp.trajectories`; ``None`` builds one from the arguments
        below.
    stage
        ``2`` temporal prompts, ``1`` single-cell next-gene pretraining.
    steps
        Optimizer steps.
    time_key, group_by, holdout, n_context, task, n_prompts
        Passed to :func:`maxtoki.pp.trajectories` when ``prompts`` is ``None``.
    max_genes_per_cell
        Keep each cell's top-ranked genes only (64 trains a small model on a CPU in minutes).
    model_overrides
        :class:`~maxtoki.models.MaxTokiConfig` fields of a new model, e.g.
        ``{"hidden_size": 128, "num_hidden_layers": 4}``.
    config
        Further :class:`~maxtoki.train.TrainConfig` fields (batch sizes, lr, eval interval…).
    out_dir
        Folder for checkpoints and ``metrics.jsonl`` (``None``: nothing is written).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    rng
        Seed of the prompts, the model init and the data order.
    quiet
        No progress bar.
    mod
        Modality of a MuData.

    Returns
    -------
    model
        The trained :class:`~maxtoki.models.MaxToki` (in eval mode).
    history
        One row per training log and validation: ``kind`` (``"train"``/``"eval"``), ``step``,
        ``loss``, ``ce``, ``time_loss``, ``mae_months``, ``median_ae_months``, ``tokens_per_s``…
    """
    import pandas as pd

    from ..train import TrainConfig, Trainer, build_model
    from ..train._prompts import build_datasets

    adata, _ = resolve_modality(adata, mod)
    require_cells(adata)
    check_vocab(vocab)
    steps = positive_int("steps", steps)
    if config is not None and not isinstance(config, (TrainConfig, Mapping)):
        raise TypeError(
            f"config must be a TrainConfig or a dict of its fields, got {type(config).__name__}"
        )
    if prompts is not None and not isinstance(prompts, pd.DataFrame):
        raise TypeError(
            "prompts must be the DataFrame of `mt.pp.trajectories` (or None to build one), got "
            f"{type(prompts).__name__}"
        )
    if stage == 2 and not vocab.has_time_tokens:
        raise ValueError(
            "stage 2 trains on temporal prompts and needs a vocabulary with time tokens; use "
            "`vocab.with_time_tokens()` (and re-tokenize) or pass `stage=1`"
        )
    tokens = _token_source(adata, vocab)
    start = logg.info(f"training a MaxToki model (stage {stage}) on {adata.n_obs} cells")

    values: dict[str, Any] = {
        "max_genes_per_cell": max_genes_per_cell,
        "val_fraction": 0.05,
        "eval_interval": max(steps // 10, 1),
        "log_interval": max(steps // 50, 1),
        "warmup_steps": min(100, max(steps // 10, 1)),
    }
    if isinstance(config, TrainConfig):
        values.update(config.to_dict())
    elif config is not None:
        values.update(dict(config))
    values.update(steps=steps, stage=stage, out_dir=out_dir, device=device, seed=rng, quiet=quiet)
    cfg = TrainConfig.from_dict(values)

    net = build_model(
        "tiny" if model is None else model,
        vocab=vocab,
        overrides=dict(model_overrides or {}),
        seed=rng,
    )
    if stage == 2 and prompts is None:
        from ..pp import trajectories

        prompts = trajectories(
            adata,
            time_key=time_key,
            group_by=group_by,
            holdout=holdout,
            n_context=n_context,
            task=task,
            n_prompts=n_prompts,
            rng=rng,
            time_range=vocab.time_range,
        )
    max_length = cfg.max_length or net.config.max_position_embeddings
    train_ds, val_ds = build_datasets(cfg, tokens, vocab, max_length=max_length, prompts=prompts)
    # saved with the model and read by the mt.tl tools, which cut cells to as many genes
    net.config.max_genes_per_cell = max_genes_per_cell
    trainer = Trainer(net, train_ds, val_ds, cfg, vocab=vocab)
    history = trainer.fit()
    net.eval()
    logg.info("    finished training", time=start)
    return net, history


def _token_source(adata, vocab):
    from ..pp._tokenize import check_tokens
    from ..train import ArrayTokens

    matrix = check_tokens(adata, vocab)
    if "maxtoki_n_tokens" not in adata.obs:
        raise ValueError("obs['maxtoki_n_tokens'] not found; run `mt.pp.tokenize` first")
    return ArrayTokens(
        np.asarray(matrix), adata.obs["maxtoki_n_tokens"].to_numpy(), names=adata.obs_names
    )
