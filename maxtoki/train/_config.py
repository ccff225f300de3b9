"""The training configuration: one validated dataclass, loadable from YAML with overrides."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

_PATH_FIELDS = ("tokens", "prompts", "vocab", "out_dir", "init_from")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the model and data objects.

    The same fields are the keys of a ``maxtoki train`` YAML file; ``key=value`` arguments
    override them (``model_overrides.hidden_size=128`` sets one entry of a dict field).

    Attributes
    ----------
    model
        Preset name (``"tiny"``, ``"217M"``, ``"1B"``) of a new model (CLI only).
    model_overrides
        :class:`~maxtoki.models.MaxTokiConfig` fields that change the preset, e.g.
        ``{"hidden_size": 128, "num_hidden_layers": 4}`` (CLI only; the vocabulary fields come
        from the vocabulary).
    init_from
        A model folder (``save_pretrained`` output) to start from instead of a preset (CLI only).
    tokens
        A :class:`maxtoki.pp.TokenStore` folder (CLI only).
    prompts
        A prompt CSV from ``mt.pp.trajectories(...).to_csv()``; rows with ``split == "eval"``
        are the validation set. Without prompts the run is stage 1 (CLI only).
    vocab
        A vocabulary folder; by default the token store's vocabulary (CLI only).
    restrict_paths
        Refuse paths in the YAML file that resolve outside the folder of the file.
    stage
        ``1`` next-gene pretraining on single cells, ``2`` temporal prompts.
    max_length
        Context length of one example (default: the model's ``max_position_embeddings``); longer
        than a trained model's context, the context is extended (llama3 RoPE scaling).
    rope_factor
        The llama3 scaling factor of such an extension (4 in the official training example, 8 as
        the official inference default).
    max_genes_per_cell
        Keep at most this many top-ranked genes per cell.
    truncate
        Truncate the first context cell of prompts longer than ``max_length`` (else an error).
    task_mix
        ``None`` keeps the tasks of the prompt table; a fraction re-assigns that share of the
        prompts to TimeBetweenCells (the rest NextCell).
    time_readout_start
        Stage 2: when the time head's output rows are new (most of the time mass at ``<eoq>`` on
        time tokens no answer can reach, as after ``add_time_tokens``), push those rows down
        before the first step (:func:`~maxtoki.train.start_time_readout`). Validation is then
        in scale from step 0 instead of after ~150 steps; the final errors of the demo were
        level (docs/benchmarks.md), so it is off by default.
    pack
        Pack several prompts into one row (document masks; flash-attn varlen on GPUs).
    val_fraction
        Share of examples kept for validation when the data has no eval split.
    steps
        Optimizer steps.
    time_budget
        Wall-clock seconds for the whole run (training, validations, checkpoints): after a tenth
        of ``steps`` (at most 20), the steps that fit in the rest of the budget, measured (the
        first half of those steps left out as warm-up), become the run's steps (never more than
        ``steps``) and the LR schedule ends there; a run that still overruns stops when the
        budget is spent. ``None``: exactly ``steps``.
    global_batch_size, micro_batch_size
        Examples per optimizer step over all ranks, and per forward pass on one rank; gradient
        accumulation is ``global / (micro × world size)`` steps.
    lr, min_lr_ratio, warmup_steps, weight_decay, betas, eps, grad_clip
        AdamW with linear warm-up then cosine decay to ``lr × min_lr_ratio``; gradient-norm
        clipping (``0`` disables it).
    ce_weight, time_weight
        Loss = ``ce_weight`` × CE on NextCell answers (or stage-1 genes) + ``time_weight`` ×
        timelapse loss on TimeBetweenCells prompts.
    time_class_weight
        Stage 2: add this many times a two-hot cross-entropy on the time tokens at ``<eoq>``
        (the two tokens around ``Δt / time_scale``) to the timelapse loss. It trains the same
        read-out; ``0`` (default) keeps the official objective.
    eval_interval, eval_batches, eval_at_start
        Validate every this many steps (and at the end, and before the first step), on at most
        ``eval_batches`` micro-batches per rank (``None``: all).
    early_stopping_patience
        Stop when the validation loss has not improved for this many evaluations in a row
        (``None``: never stop early). The evaluation before the first step counts; the stop is
        logged and checkpointed, and a resumed run stops where the uninterrupted one would.
    early_stopping_min_delta
        An evaluation improves when its loss is below the best so far minus this.
    log_interval
        Log training metrics every this many steps.
    tracker
        Also report the metrics to ``"tensorboard"`` (event files in ``out_dir/tensorboard``;
        ``pip install 'maxtoki[tensorboard]'``) or ``"mlflow"`` (MLflow's active run or a new
        one; ``pip install 'maxtoki[mlflow]'``); ``metrics.jsonl`` is written either way.
    quiet
        No progress bar and no per-validation lines (the start and resume lines remain,
        subject to ``mt.settings.verbosity``).
    peak_flops
        Peak FLOP/s of one accelerator for MFU; ``None`` guesses for known GPUs (NaN on CPU).
    out_dir
        Folder for checkpoints, ``metrics.jsonl`` and the final model; ``None`` writes nothing.
    checkpoint_interval
        Write a checkpoint every this many steps (``None``: only at the end, when
        ``out_dir`` is set).
    keep_last
        Checkpoints kept (older ones are deleted).
    resume
        ``True`` continues from ``out_dir``'s latest checkpoint (if any), or a checkpoint folder.
    seed
        Seed of the model init (CLI), data order and every RNG.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``…; under torchrun each rank uses ``cuda:LOCAL_RANK``.
    precision
        ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` or ``"fp32"``.
    compile
        ``torch.compile`` each decoder block.
    activation_checkpointing
        Recompute each decoder block's activations in the backward pass.
    distributed
        ``"ddp"`` or ``"fsdp2"`` under torchrun (``"none"`` refuses to run with several ranks).
    on_nan
        ``"raise"`` stops with an error naming the step and batch; ``"skip"`` skips the
        optimizer step whose batch had a non-finite loss or gradient norm.
    num_workers
        DataLoader worker processes (0 loads in the main process).
    """

    # model (CLI)
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    # data (CLI)
    tokens: str | None = None
    prompts: str | None = None
    vocab: str | None = None
    restrict_paths: bool = False
    # examples
    stage: Literal[1, 2] = 2
    max_length: int | None = None
    rope_factor: float = 4.0
    max_genes_per_cell: int | None = None
    truncate: bool = True
    task_mix: float | None = None
    time_readout_start: bool = False
    pack: bool = False
    val_fraction: float = 0.05
    # optimisation
    steps: int = 1000
    time_budget: float | None = None
    global_batch_size: int = 32
    micro_batch_size: int = 8
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    ce_weight: float = 0.5
    time_weight: float = 0.5
    time_class_weight: float = 0.0
    # evaluation and logging
    eval_interval: int = 100
    eval_batches: int | None = None
    eval_at_start: bool = True
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    log_interval: int = 10
    tracker: Literal["none", "tensorboard", "mlflow"] = "none"
    quiet: bool = False
    peak_flops: float | None = None
    # checkpoints
    out_dir: str | None = None
    checkpoint_interval: int | None = None
    keep_last: int = 3
    resume: bool | str = False
    # run
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    distributed: Literal["ddp", "fsdp2", "none"] = "ddp"
    on_nan: Literal["raise", "skip"] = "raise"
    num_workers: int = 0

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            value = _coerce(f.name, value, hints[f.name])
            setattr(self, f.name, value)
        for name in (
            "steps",
            "global_batch_size",
            "micro_batch_size",
            "log_interval",
            "eval_interval",
            "keep_last",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "checkpoint_interval",
            "eval_batches",
            "max_genes_per_cell",
            "early_stopping_patience",
        ):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        if self.rope_factor < 1:
            raise ValueError(f"rope_factor must be >= 1, got {self.rope_factor}")
        if self.max_length is not None and self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 or None, got {self.max_length}")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of "
                f"micro_batch_size ({self.micro_batch_size})"
            )
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be > 0 and min_lr_ratio in [0, 1]")
        if self.task_mix is not None and not 0 <= self.task_mix <= 1:
            raise ValueError(f"task_mix must lie in [0, 1] or be None, got {self.task_mix}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.ce_weight < 0 or self.time_weight < 0 or self.ce_weight + self.time_weight == 0:
            raise ValueError("ce_weight and time_weight must be >= 0 and not both 0")
        if self.time_class_weight < 0:
            raise ValueError(f"time_class_weight must be >= 0, got {self.time_class_weight}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be > 0 seconds or None, got {self.time_budget}")
        if self.peak_flops is not None and self.peak_flops <= 0:
            raise ValueError(f"peak_flops must be > 0 or None, got {self.peak_flops}")
        if self.early_stopping_min_delta < 0:
            raise ValueError(
                f"early_stopping_min_delta must be >= 0, got {self.early_stopping_min_delta}"
            )
        if self.tracker == "tensorboard" and self.out_dir is None:
            raise ValueError(
                "tracker='tensorboard' writes its event files into out_dir/tensorboard: set out_dir"
            )
        from ._tracking import check_tracker

        check_tracker(self.tracker)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        """All valid keys."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise a ``ValueError`` listing the valid ones."""
        if not isinstance(values, dict):
            raise TypeError(
                "a training config must be a mapping of keys to values, got "
                f"{type(values).__name__}"
            )
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown training config keys {unknown}; valid keys are {cls.field_names()}"
            )
        return cls(**values)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike, overrides: list[str] | dict[str, Any] | None = None
    ) -> TrainConfig:
        """Read a YAML file, apply ``key=value`` overrides and resolve paths against its folder.

        Relative paths (``tokens``, ``prompts``, ``vocab``, ``out_dir``, ``init_from``) are relative
        to the YAML file. With ``restrict_paths: true`` every path must stay inside that folder.
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {str(path)!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise ValueError(
                f"{path} must hold a mapping of config keys, got {type(values).__name__}"
            )
        values = apply_overrides(values, overrides or [])
        config = cls.from_dict(values)
        base = path.resolve().parent
        for name in _PATH_FIELDS:
            value = getattr(config, name)
            if value is not None:
                setattr(config, name, _resolve_path(value, base, name, config.restrict_paths))
        if isinstance(config.resume, str):
            config.resume = _resolve_path(config.resume, base, "resume", config.restrict_paths)
        return config

    @property
    def n_examples(self) -> int:
        """Training examples the run reads: ``steps × global_batch_size``."""
        return self.steps * self.global_batch_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe values."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"unknown training config keys {unknown}; valid keys are {self.field_names()}"
            )
        return dataclasses.replace(self, **changes)


def apply_overrides(
    values: dict[str, Any], overrides: list[str] | dict[str, Any]
) -> dict[str, Any]:
    """Apply ``["key=value", "dict_key.sub=value"]`` (values parsed as YAML) to a config dict."""
    import yaml

    values = dict(values)
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} must look like key=value")
            key, raw = item.split("=", 1)
            try:
                parsed.append((key.strip(), yaml.safe_load(raw)))
            except yaml.YAMLError as e:
                raise ValueError(f"cannot parse the value of override {item!r}: {e}") from None
        items = parsed
    names = TrainConfig.field_names()
    for key, value in items:
        head, _, sub = key.partition(".")
        if head not in names:
            raise ValueError(
                f"unknown training config key {head!r} in override; valid keys are {names}"
            )
        if sub:
            inner = dict(values.get(head) or {})
            inner[sub] = value
            values[head] = inner
        else:
            values[head] = value
    return values


def _resolve_path(value: str, base: Path, name: str, restrict: bool) -> str:
    p = Path(os.path.expanduser(str(value)))
    resolved = (p if p.is_absolute() else base / p).resolve()
    if restrict and not resolved.is_relative_to(base):
        raise ValueError(
            f"{name}={value!r} resolves to {resolved}, outside the config folder {base}; "
            "restrict_paths is on, so keep data and outputs inside that folder"
        )
    return str(resolved)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple type hint; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:  # the value and its type: True == 1 and 1.0 == 1 are not stage 1
        if value not in args or not any(type(value) is type(a) for a in args):
            raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(name, value, arg)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError(f"{name} must be {_describe(hint)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise TypeError(f"{name} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(name, v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                raise TypeError(f"{name} must be a finite number, got {value!r}") from None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise TypeError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return os.fspath(value)
    return value


def _describe(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    names = [getattr(a, "__name__", str(a)) for a in args]
    opt = " or null" if type(None) in typing.get_args(hint) else ""
    return " or ".join(names) + opt
