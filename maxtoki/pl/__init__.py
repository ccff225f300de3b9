"""Plotting: figures of :mod:`maxtoki.tl` results in scanpy's conventions, and an explorer app."""

from ._age_acceleration import age_acceleration
from ._attention_genes import attention_genes
from ._attention_heads import attention_heads
from ._evaluation import evaluation
from ._explore import explore
from ._generated_vs_real import generated_vs_real
from ._perturb import perturb
from ._predicted_age import predicted_age
from ._savefig import savefig
from ._training_curves import training_curves
from ._trajectory import trajectory

__all__ = [
    "age_acceleration",
    "attention_genes",
    "attention_heads",
    "evaluation",
    "explore",
    "generated_vs_real",
    "perturb",
    "predicted_age",
    "savefig",
    "training_curves",
    "trajectory",
]
