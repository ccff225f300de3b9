"""Accessors: AnnData slots written by maxtoki → tidy DataFrames."""

from ._age_acceleration import age_acceleration
from ._attention import attention_heads
from ._evaluate import evaluate
from ._perturb import perturb
from ._tokens import tokens

__all__ = [
    "age_acceleration",
    "attention_heads",
    "evaluate",
    "perturb",
    "tokens",
]
