"""Models: the MaxToki decoder in pure torch (no AnnData, no distributed code)."""

from ._config import MaxTokiConfig
from ._decoder import MaxToki
from ._kv_cache import KVCache
from ._output import MaxTokiOutput
from ._time_embeddings import init_time_token_embeddings
from ._time_regression import predict_timelapse
from ._timelapse_loss import timelapse_loss

__all__ = [
    "KVCache",
    "MaxToki",
    "MaxTokiConfig",
    "MaxTokiOutput",
    "init_time_token_embeddings",
    "predict_timelapse",
    "timelapse_loss",
]
