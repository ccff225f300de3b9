"""Models: the MaxToki decoder in pure torch (no AnnData, no distributed code)."""

from ._collate import Collator
from ._config import MaxTokiConfig
from ._decoder import MaxToki, MaxTokiOutput
from ._kv_cache import KVCache
from ._runner import BatchRunner
from ._time import init_time_token_embeddings, predict_timelapse, timelapse_loss

__all__ = [
    "BatchRunner",
    "Collator",
    "KVCache",
    "MaxToki",
    "MaxTokiConfig",
    "MaxTokiOutput",
    "init_time_token_embeddings",
    "predict_timelapse",
    "timelapse_loss",
]
