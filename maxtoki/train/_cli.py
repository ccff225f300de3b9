"""``maxtoki train config.yaml [key=value …]``: train from a token store and a prompt table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._config import TrainConfig

_EPILOG = """\
The YAML file holds TrainConfig keys, for example:

  model: tiny
  model_overrides: {hidden_size: 128, num_hidden_layers: 4, num_attention_heads: 4}
  tokens: store/             # mt.pp.tokenize_corpus output (relative to this file)
  prompts: prompts.csv       # mt.pp.trajectories(...).to_csv(); split == "eval" rows validate
  max_genes_per_cell: 64
  steps: 2000
  global_batch_size: 64
  micro_batch_size: 16
  lr: 1e-3
  out_dir: run/
  checkpoint_interval: 200
  resume: true
  distributed: ddp           # or fsdp2, under torchrun

Many GPUs: torchrun --nproc-per-node 8 -m maxtoki.train config.yaml
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``maxtoki train`` and ``python -m maxtoki.train``.

    Parameters
    ----------
    argv
        ``[config.yaml, key=value, …]``; ``None`` reads ``sys.argv``.

    Returns
    -------
    The exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="maxtoki train",
        description="Train a MaxToki model (stage 1 or 2); under torchrun with DDP or FSDP2.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML file of TrainConfig keys")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (values in YAML syntax)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = TrainConfig.from_yaml(args.config, args.overrides)
    except (ValueError, TypeError, FileNotFoundError) as e:
        parser.error(str(e))
    run(config)
    return 0


def run(config: TrainConfig):
    """Build the data and model a config describes, train, and save ``out_dir/model``.

    Returns
    -------
    ``(trainer, history)``.
    """
    from .. import logging as logg
    from .._settings import settings
    from ._distributed import destroy_distributed, init_distributed
    from ._model import build_model
    from ._prompts import build_datasets
    from ._trainer import Trainer

    if config.tokens is None:
        raise ValueError(
            "the config needs `tokens:` (a token store folder from mt.pp.tokenize_corpus)"
        )
    info = init_distributed(config.device)
    # one rank speaks; the others keep warnings and errors
    verbosity = settings.verbosity if info.is_main else min(settings.verbosity, 1)
    try:
        with settings.override(verbosity=verbosity):
            from ..pp import GeneVocab, TokenStore

            store = TokenStore(config.tokens)
            vocab = GeneVocab.load(config.vocab) if config.vocab else store.vocab
            model = build_model(
                config.init_from or config.model,
                vocab=vocab,
                overrides=config.model_overrides,
                seed=config.seed,
                context_length=config.max_length,
                rope_factor=config.rope_factor,
            )
            if config.max_genes_per_cell is not None:  # saved with the model for the mt.tl tools
                model.config.max_genes_per_cell = config.max_genes_per_cell
            max_length = config.max_length or model.config.max_position_embeddings
            train, val = build_datasets(config, store, vocab, max_length=max_length)
            trainer = Trainer(model, train, val, config, vocab=vocab)
            history = trainer.fit()
            if config.out_dir:
                trainer.save_model(Path(config.out_dir) / "model")
            evals = history[history["kind"] == "eval"] if len(history) else history
            if len(evals):
                last = evals.iloc[-1]
                where = f"; model in {Path(config.out_dir) / 'model'}" if config.out_dir else ""
                logg.info(
                    f"finished at step {int(last['step'])}: val loss {last['loss']:.4f}, "
                    f"time MAE {last['mae_months']:.1f} months{where}"
                )
            return trainer, history
    finally:
        destroy_distributed(info)
