"""Which token ids are genes."""

from __future__ import annotations

import torch

from ._config import MaxTokiConfig

_N_SPECIAL = 4  # <pad>, <mask>, <bos>, <eos> in the official vocabularies


def non_gene_tokens(config: MaxTokiConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(vocab_size,)`` bool, ``True`` at every token that is not a gene.

    Those are ids below 4 (``<pad> <mask> <bos> <eos>``), the configured pad/bos/eos ids, the
    time tokens, ``<boq>`` and ``<eoq>``.
    """
    mask = torch.zeros(config.vocab_size, dtype=torch.bool, device=device)
    mask[: min(_N_SPECIAL, config.vocab_size)] = True
    for token in (
        config.pad_token_id,
        config.bos_token_id,
        config.eos_token_id,
        config.boq_token_id,
        config.eoq_token_id,
    ):
        if token is not None:
            mask[token] = True
    if config.time_token_start_id is not None:
        mask[config.time_token_start_id : config.time_token_start_id + config.n_time_tokens] = True
    return mask
