from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import logging as logg
from .._anndata import positive_int, require_cells, resolve_modality
from .._docs import inject_docs
from .._keys import TOKENS_KEY, read_tokens
from .._settings import settings
from .._vocab import GeneVocab

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from ..models import MaxToki
    from ..train import TrainConfig


@inject_docs
def train(
    adata: AnnData,
    *,
    vocab: GeneVocab | None = None,
    model: MaxToki | str | None = None,
    prompts: pd.DataFrame | None = None,
    stage: Literal[1, 2] = 2,
    steps: int = 500,
    time_key: str = "age_months",
    groupby: str | Sequence[str] | None = ("cell_type", "sex"),
    holdout: Mapping[str, Any] | np.ndarray | None = None,
    n_context: int | tuple[int, int] = (2, 3),
    task: str | Sequence[str] = ("TimeBetweenCells", "NextCell"),
    n_prompts: int | None = None,
    max_genes_per_cell: int | None = 64,
    model_overrides: Mapping[str, Any] | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    out_dir: str | None = None,
    device: str | None = None,
    random_state: int = 0,
    processes: int = 1,
    quiet: bool = False,
    tokens_key: str = TOKENS_KEY,
    mod: str = "rna",
) -> tuple[MaxToki, pd.DataFrame]:
    """Train a MaxToki model on the tokenized cells of an AnnData (notebook entry point).

    Stage 2 (default) trains on temporal prompts: those given, or ones built with
    :func:`maxtoki.pp.trajectories` (eval prompts, from ``holdout``, are the validation set;
    without them 5% of the prompts are). Stage 1 trains next-gene prediction on single cells.
    The training loop is :class:`maxtoki.train.Trainer`; for corpora and many GPUs use the
    ``maxtoki train`` command. Nothing is written into ``adata``. The trained model carries its
    vocabulary (``model.vocab``), which ``save_pretrained`` writes next to the weights.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) tokenized by :func:`maxtoki.pp.tokenize`.
    vocab
        The :class:`~maxtoki.pp.GeneVocab` of the tokens (with time tokens for stage 2).
        ``None``: the vocabulary of ``model`` when it is a model or a model folder.
    model
        ``None`` or a preset name (``"tiny"``…) builds a new model sized for ``vocab``
        (time-token embeddings start smooth in their month value); a model folder, a Hugging
        Face Hub repo id (``"org/name"``) or a :class:`~maxtoki.models.MaxToki` continues
        training that model (a given ``MaxToki`` in place).
    prompts
        A table from :func:`maxtoki.pp.trajectories`; ``None`` builds one from the arguments
        below.
    stage
        ``2`` temporal prompts, ``1`` single-cell next-gene pretraining.
    steps
        Optimizer steps.
    time_key, groupby, holdout, n_context, task, n_prompts
        Passed to :func:`maxtoki.pp.trajectories` when ``prompts`` is ``None``. ``n_prompts=None``
        draws one prompt per training cell, or one per training example (``steps ×
        global_batch_size``) where that is more: a prompt read many times over is learned by
        heart (docs/benchmarks.md), and a prompt table that repeats so is warned about.
    max_genes_per_cell
        Keep each cell's top-ranked genes only (64 trains a small model on a CPU in minutes).
    model_overrides
        :class:`~maxtoki.models.MaxTokiConfig` fields of a new model, e.g.
        ``{"hidden_size": 128, "num_hidden_layers": 4}``.
    config
        Further :class:`~maxtoki.train.TrainConfig` fields (batch sizes, lr, eval interval…).
    out_dir
        Folder for checkpoints and ``metrics.jsonl`` (``None``: nothing is written).
    {device}
    {random_state}
        It seeds the prompts, the model's initialisation and the data order.
    processes
        On a CPU, train as this many processes of one thread each (DDP ranks, spawned; each
        optimizer step sees the same examples as in one process). On a small model they can use
        the cores better than threads (2 cores: 1.3–1.7× one core vs 1.4–1.5×); their progress
        goes to the console that started Python. Scripts need an ``if __name__ == "__main__":``
        guard.
    quiet
        No progress bar.
    {tokens_key}
    {mod}

    Returns
    -------
    model
        The trained :class:`~maxtoki.models.MaxToki` (in eval mode), carrying ``vocab``.
    history
        One row per training log and validation: ``kind`` (``"train"``/``"eval"``), ``step``,
        ``loss``, ``ce``, ``time_loss`` (plus any two-hot term), ``median_ae_months``…;
        validation rows of stage 2 also ``timelapse_r`` (Pearson r of predicted and true
        timelapses; a warning is logged when the last one is under 0.9) and
        ``timelapse_ce_gain``: how much the NextCell answers' CE rises when their timelapses are
        swapped (nats per gene; ~0: generation ignores the timelapse).
    """
    from ..train import ArrayTokens, Trainer, build_datasets, build_model, fit_on_cpu_ranks

    adata, _ = resolve_modality(adata, mod)
    require_cells(adata)
    steps = positive_int("steps", steps)
    processes = positive_int("processes", processes)
    _check_types(config, prompts, vocab)
    overrides = {
        "steps": steps,
        "stage": stage,
        "out_dir": out_dir,
        "seed": random_state,
        "quiet": quiet,
        "device": settings.device if device is None else device,
    }
    cfg = _config(config, steps, max_genes_per_cell, overrides)
    net = build_model(
        "tiny" if model is None else model, vocab=vocab, overrides=dict(model_overrides or {}),
        seed=random_state, context_length=cfg.max_length, rope_factor=cfg.rope_factor,
    )  # fmt: skip
    if stage == 2 and vocab is None and not net.config.has_time_tokens and net.vocab is not None:
        logg.info("stage 2 from a stage-1 model: it gets the time tokens")
        net.add_time_tokens(random_state=random_state)
    vocab = net.vocab
    if vocab is None:
        raise ValueError(
            "pass `vocab=` (the GeneVocab the cells were tokenized with): a new model takes its "
            "size and token ids from it"
        )
    if stage == 2 and not vocab.has_time_tokens:
        raise ValueError(
            "stage 2 trains on temporal prompts and needs a vocabulary with time tokens; use "
            "`vocab.with_time_tokens()` (and re-tokenize) or pass `stage=1`"
        )
    tokens = read_tokens(adata, tokens_key, vocab)
    source = ArrayTokens(tokens.matrix, tokens.lengths, names=adata.obs_names)
    start = logg.info(f"training a MaxToki model (stage {stage}) on {adata.n_obs} cells")
    if stage == 2 and prompts is None:
        from ..pp import trajectories

        prompts = trajectories(
            adata, time_key=time_key, groupby=groupby, holdout=holdout, n_context=n_context,
            task=task, n_prompts=_n_prompts(n_prompts, adata.n_obs, cfg),
            random_state=random_state, time_range=vocab.time_range, mod=mod,
        )  # fmt: skip
    max_length = cfg.max_length or net.config.max_position_embeddings
    train_ds, val_ds = build_datasets(cfg, source, vocab, max_length=max_length, prompts=prompts)
    # saved with the model and read by the mt.tl tools, which cut cells to as many genes
    net.config.max_genes_per_cell = max_genes_per_cell
    if processes == 1:
        history = Trainer(net, train_ds, val_ds, cfg, vocab=vocab).fit()
    else:
        history = fit_on_cpu_ranks(net, train_ds, val_ds, cfg, vocab=vocab, processes=processes)
    net.eval()
    logg.info("    finished training", time=start)
    _warn_if_time_unread(history)
    return net, history


#: A stage-2 run whose last validation timelapses correlate less than this with the true ones
#: (over at least :data:`MIN_TIME_PROMPTS` prompts) is reported as reading time poorly: the
#: demo's trained models reach 0.97-0.99, runs that left a plateau at the mean late 0.66 and
#: 0.78 (docs/benchmarks.md).
MIN_TIMELAPSE_R = 0.9
MIN_TIME_PROMPTS = 10


def _warn_if_time_unread(history: pd.DataFrame) -> None:
    """Warn when the last validation's timelapses follow the true ones poorly.

    A run can end with its time read-out stuck near the mean timelapse (the demo on 160
    donors, seed 0: its ages then correlated r = −0.07 with the truth; docs/benchmarks.md);
    the user is told rather than left to find out from the ages.
    """
    if "timelapse_r" not in history:
        return
    evals = history[(history["kind"] == "eval") & (history["n_time_prompts"] >= MIN_TIME_PROMPTS)]
    if evals.empty:
        return
    last = evals.iloc[-1]
    if last["timelapse_r"] >= MIN_TIMELAPSE_R:
        return
    logg.warning(
        f"after {int(last['step'])} steps the predicted timelapses of the "
        f"{int(last['n_time_prompts'])} validation prompts correlate r = "
        f"{last['timelapse_r']:.2f} with the true ones (trained demo models: 0.97-0.99): the "
        "model reads time poorly. Train longer, or, if the validation time loss stopped "
        "falling near the mean timelapse's, add the two-hot time loss "
        "(config={'time_class_weight': 1.0}) or try another random_state"
    )


def _check_types(config, prompts, vocab) -> None:
    """TypeError for a ``config``, ``prompts`` or ``vocab`` of the wrong kind."""
    import pandas as pd

    from ..train import TrainConfig

    if config is not None and not isinstance(config, (TrainConfig, Mapping)):
        raise TypeError(
            f"config must be a TrainConfig or a dict of its fields, got {type(config).__name__}"
        )
    if prompts is not None and not isinstance(prompts, pd.DataFrame):
        raise TypeError(
            "prompts must be the DataFrame of `mt.pp.trajectories` (or None to build one), got "
            f"{type(prompts).__name__}"
        )
    if vocab is not None and not isinstance(vocab, GeneVocab):
        raise TypeError(
            f"vocab must be a maxtoki.pp.GeneVocab (the tokens' vocabulary) or None, got "
            f"{type(vocab).__name__}"
        )


def _n_prompts(n_prompts: int | None, n_cells: int, cfg: TrainConfig) -> int | None:
    """``n_prompts``, or (``None``) one per training example where there are more than cells."""
    if n_prompts is not None or cfg.n_examples <= n_cells:
        return n_prompts
    return cfg.n_examples


def _config(config, steps: int, max_genes_per_cell, overrides: dict[str, Any]):
    """The run's TrainConfig: defaults scaled to ``steps``, then ``config``, then ``overrides``."""
    from ..train import TrainConfig

    values: dict[str, Any] = {
        "max_genes_per_cell": max_genes_per_cell,
        "val_fraction": 0.05,
        "eval_interval": max(steps // 10, 1),
        "log_interval": max(steps // 50, 1),
        "warmup_steps": min(100, max(steps // 10, 1)),
    }
    values.update(config.to_dict() if isinstance(config, TrainConfig) else dict(config or {}))
    return TrainConfig.from_dict({**values, **overrides})
