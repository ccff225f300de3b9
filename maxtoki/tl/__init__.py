"""Tools: a MaxToki model → annotations in AnnData (ages, generated cells, attention)."""

from ._age_acceleration import age_acceleration
from ._attention import attention
from ._embed import embed
from ._evaluate import evaluate
from ._generate import generate
from ._perturb import perturb
from ._predict_time import predict_time
from ._train import train

__all__ = [
    "age_acceleration",
    "attention",
    "embed",
    "evaluate",
    "generate",
    "perturb",
    "predict_time",
    "train",
]
