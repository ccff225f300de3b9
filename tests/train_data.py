"""Small random token data shared by the training tests and their torchrun scripts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from maxtoki.models import MaxTokiConfig
from maxtoki.pp import GeneVocab
from maxtoki.train import ArrayTokens, PromptDataset

N_CELLS, N_GENES = 60, 40
VOCAB = GeneVocab.from_genes({f"G{i}": 1.0 for i in range(N_GENES)}, time_range=(-100, 100))
#: A tiny model config with 20 time tokens (ids 40–59, values −10…9) and the question
#: tokens, for the tests of the time read-out and its losses.
TIME_CONFIG = MaxTokiConfig(
    vocab_size=80, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, time_token_start_id=40, n_time_tokens=20, time_min_months=-10,
    boq_token_id=60, eoq_token_id=61,
)  # fmt: skip
TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def tokens(seed: int = 0) -> ArrayTokens:
    rng = np.random.default_rng(seed)
    mat = np.zeros((N_CELLS, 12), dtype=np.int32)
    lengths = np.zeros(N_CELLS, dtype=np.int64)
    for i in range(N_CELLS):
        k = int(rng.integers(3, 10))
        mat[i, 0], mat[i, k + 1] = 2, 3
        mat[i, 1 : k + 1] = rng.choice(np.arange(4, 4 + N_GENES), k, replace=False)
        lengths[i] = k + 2
    return ArrayTokens(mat, lengths, names=[f"c{i}" for i in range(N_CELLS)])


def prompts(n: int = 64, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n):
        a, b, q = rng.choice(N_CELLS, 3, replace=False)
        rows.append(
            {
                "task": ("TimeBetweenCells", "NextCell")[j % 2],
                "n_context": 2,
                "ctx0": f"c{a}",
                "ctx1": f"c{b}",
                "dt0": int(rng.integers(-50, 50)),
                "query": f"c{q}",
                "dt_query": int(rng.integers(-50, 50)),
            }
        )
    return pd.DataFrame(rows)


def dataset(n: int = 64, seed: int = 0) -> PromptDataset:
    return PromptDataset(prompts(n, seed), tokens(seed), vocab=VOCAB, max_length=64)
