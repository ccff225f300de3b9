"""torchrun support: the process group from the environment, and one ``parallelize(model, …)``.

The model files hold no distributed code; everything that wraps, shards, compiles or
checkpoints a model for training lives here (as in torchtitan).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import torch
from torch import nn

Strategy = Literal["ddp", "fsdp2", "none"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that logs and writes)."""
        return self.rank == 0


def init_distributed(device: str = "auto", timeout: timedelta | None = None) -> DistInfo:
    """Join the process group that torchrun describes in the environment (else a single process).

    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` select the rank; the backend is NCCL on CUDA and
    gloo on CPU; each rank uses ``cuda:LOCAL_RANK``. ``timeout`` bounds the rendezvous and every
    collective (``None``: torch's default).
    """
    from .._settings import settings

    resolved = settings.resolve_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device=torch.device(resolved))
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(
            "torchrun set RANK/WORLD_SIZE but this torch build has no torch.distributed"
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if resolved.startswith("cuda"):
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device(resolved), "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev, initialized=True)


def destroy_distributed(info: DistInfo) -> None:
    """Leave the process group joined by :func:`init_distributed`."""
    if info.initialized:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder's transformer blocks, as the model itself lists them (``model.blocks()``)."""
    blocks = getattr(model, "blocks", None)
    if not callable(blocks):
        raise TypeError(
            f"{type(model).__name__} has no blocks() method listing its decoder blocks; "
            "parallelize a MaxToki"
        )
    return blocks()


def _checkpoint_forward(block: nn.Module) -> None:
    from torch.utils.checkpoint import checkpoint

    forward = block.forward

    def checkpointed(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed  # instance attribute: parameter names stay unchanged


def parallelize(
    model: nn.Module,
    *,
    info: DistInfo,
    strategy: Strategy = "ddp",
    compile: bool = False,
    activation_checkpointing: bool = False,
    mixed_precision: bool = False,
) -> nn.Module:
    """Prepare a model for training: activation checkpointing, compile, then DDP or FSDP2.

    Parameters
    ----------
    model
        The plain model, already on ``info.device``.
    info
        From :func:`init_distributed`; with one process no wrapper is applied.
    strategy
        ``"ddp"`` (replicate, all-reduce gradients) or ``"fsdp2"`` (``fully_shard`` per decoder
        block and the root).
    compile
        ``torch.compile`` each decoder block (in place; parameter names unchanged).
    activation_checkpointing
        Recompute each block's activations in the backward pass.
    mixed_precision
        FSDP2 only: bf16 parameters in compute, fp32 gradient reduction.

    Returns
    -------
    The module to call in the training loop (the wrapper, or ``model`` itself).
    """
    blocks = _blocks(model) if (compile or activation_checkpointing or strategy == "fsdp2") else []
    if activation_checkpointing:
        for block in blocks:
            _checkpoint_forward(block)
    if compile:
        for block in blocks:
            block.compile()
    if not info.initialized or (info.world_size == 1 and strategy == "none"):
        return model
    if strategy == "none":
        raise ValueError(
            f"distributed='none' but torchrun started {info.world_size} processes; set "
            "distributed to 'ddp' or 'fsdp2'"
        )
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if strategy == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if mixed_precision
            else MixedPrecisionPolicy()
        )
        for block in blocks:
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        return model
    raise ValueError(f"distributed must be 'ddp', 'fsdp2' or 'none', got {strategy!r}")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (FSDP2 shards in place: the model itself)."""
    return (
        model.module
        if hasattr(model, "module") and hasattr(model, "require_backward_grad_sync")
        else model
    )


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 sharded this model's parameters (DTensors)."""
    if "torch.distributed.tensor" not in sys.modules:  # never imported: nothing is sharded
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (identity with one process)."""
    if info.initialized and info.world_size > 1:
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_list(values: list, info: DistInfo) -> list:
    """Concatenate small Python lists from every rank (identity with one process)."""
    if info.initialized and info.world_size > 1:
        import torch.distributed as dist

        out: list = [None] * info.world_size
        dist.all_gather_object(out, values)
        return [v for part in out for v in part]
    return values


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op with one process)."""
    if info.initialized and info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(value, info: DistInfo):
    """Rank 0's value on every rank."""
    if info.initialized and info.world_size > 1:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def full_model_state_dict(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor] | None:
    """The full, unsharded model state dict on CPU, on rank 0 (``None`` elsewhere).

    Every rank must call it (FSDP2 gathers the shards).
    """
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        return sd if info.is_main else None
    if not info.is_main:
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def load_model_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full state dict into a plain, DDP or FSDP2 model (every rank passes the same dict)."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        return
    unwrap(model).load_state_dict(state)


def optimizer_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo
) -> dict | None:
    """The optimizer state on rank 0 (gathered under FSDP2); every rank must call it."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        sd = get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        return sd if info.is_main else None
    return optimizer.state_dict() if info.is_main else None


def load_optimizer_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Load what :func:`optimizer_state_dict` returned (every rank passes the same dict)."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            model, optimizer, state, options=StateDictOptions(full_state_dict=True)
        )
        return
    optimizer.load_state_dict(state)
