"""Experiment trackers for the trainer: TensorBoard or MLflow beside ``metrics.jsonl``.

A tracker is any object with ``log_params(params)``, ``log_metrics(metrics, step)`` and
``close()`` (:class:`Tracker`). ``TrainConfig(tracker="tensorboard" | "mlflow")`` builds one of
the two bundled ones; ``Trainer(..., tracker=obj)`` takes a user's own (e.g. Weights & Biases).
Only rank 0 reports. Metrics are named ``"<kind>/<name>"`` (``"train/loss"``, ``"eval/loss"``,
``"eval/mae_months"``); non-finite values (e.g. MFU on a CPU) are left out.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import logging as logg

if TYPE_CHECKING:
    from ._config import TrainConfig

TRACKERS = ("none", "tensorboard", "mlflow")
#: the module each tracker needs, and the extra that installs it
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
TENSORBOARD_DIR = "tensorboard"


@runtime_checkable
class Tracker(Protocol):
    """What the :class:`~maxtoki.train.Trainer` reports to (rank 0 only).

    Implement these three methods to send the training metrics anywhere; pass the object as
    ``Trainer(..., tracker=obj)``.
    """

    def log_params(self, params: dict[str, Any]) -> None:
        """The run's :class:`~maxtoki.train.TrainConfig` as a flat ``{name: value}`` dict."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """One metrics row at an optimizer step, e.g. ``{"train/loss": 2.3, "train/lr": 1e-3}``."""

    def close(self) -> None:
        """Flush and release (called once, when :meth:`~maxtoki.train.Trainer.fit` ends)."""


def check_tracker(name: str) -> None:
    """Raise a ``ValueError`` naming the extra to install when ``name``'s package is missing."""
    if name not in _NEEDS:
        return
    module, extra = _NEEDS[name]
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"tracker={name!r} needs the {module!r} package: pip install 'maxtoki[{extra}]' "
            f"(or pip install {module}), or set tracker='none'"
        )


def make_tracker(config: TrainConfig, *, resumed_at: int | None) -> Tracker | None:
    """The tracker ``config.tracker`` names (``None`` for ``"none"``)."""
    if config.tracker == "none":
        return None
    check_tracker(config.tracker)
    if config.tracker == "tensorboard":
        return TensorBoardTracker(Path(config.out_dir) / TENSORBOARD_DIR, resumed_at=resumed_at)
    return MLflowTracker()


def tracker_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row as ``{"<kind>/<name>": value}``, finite numbers only."""
    kind = row.get("kind", "train")
    out = {}
    for key, value in row.items():
        if key in ("kind", "step") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or hasattr(value, "__float__"):
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                out[f"{kind}/{key}"] = value
    return out


def flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model_overrides": {"hidden_size": 8}}`` → ``{"model_overrides.hidden_size": 8}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoardTracker:
    """Scalars to TensorBoard event files in ``log_dir`` (``out_dir/tensorboard``).

    A resumed run drops the events logged after its checkpoint (``purge_step``), as
    ``metrics.jsonl`` drops its rows.
    """

    def __init__(self, log_dir: Path, *, resumed_at: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

    def log_params(self, params: dict[str, Any]) -> None:
        text = json.dumps(params, indent=2, default=str)
        self.writer.add_text("config", f"```\n{text}\n```", global_step=0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class MLflowTracker:
    """Params and metrics to MLflow's active run (started here when there is none).

    Where the run goes follows MLflow's own settings (``MLFLOW_TRACKING_URI``,
    ``mlflow.set_experiment``); a run started here is ended by :meth:`close`.
    """

    def __init__(self):
        import mlflow

        self.mlflow = mlflow
        self.started = mlflow.active_run() is None
        if self.started:
            mlflow.start_run()

    def log_params(self, params: dict[str, Any]) -> None:
        values = {k: str(v)[:500] for k, v in params.items()}
        try:
            self.mlflow.log_params(values)
        except Exception as e:  # e.g. a resumed run in one MLflow run with a changed value
            logg.warning(f"MLflow did not take the run's parameters: {e}")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        if self.started:
            self.mlflow.end_run()
