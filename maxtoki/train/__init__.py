"""Training: temporal prompts → a trained MaxToki model (one process or torchrun)."""

from ..models import Collator
from ._checkpoint import latest_checkpoint, load_trainer_state
from ._cli import main
from ._config import TrainConfig
from ._cpu_ranks import fit_on_cpu_ranks
from ._distributed import destroy_distributed, init_distributed, parallelize
from ._model import build_model
from ._prompts import ArrayTokens, CellDataset, PromptDataset, build_datasets, read_prompts
from ._readout import start_time_readout
from ._tracking import Tracker
from ._trainer import NonFiniteLossError, Trainer

__all__ = [
    "ArrayTokens",
    "CellDataset",
    "Collator",
    "NonFiniteLossError",
    "PromptDataset",
    "Tracker",
    "TrainConfig",
    "Trainer",
    "build_datasets",
    "build_model",
    "destroy_distributed",
    "fit_on_cpu_ranks",
    "init_distributed",
    "latest_checkpoint",
    "load_trainer_state",
    "main",
    "parallelize",
    "read_prompts",
    "start_time_readout",
]
