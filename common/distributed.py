"""Multi-process training under ``torchrun``: one process per device, DistributedDataParallel.

    torchrun --nproc_per_node 4 -m sr.train --config configs/sr_vdsr.yaml ...

Each process reads the environment torchrun sets (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``), takes GPU ``LOCAL_RANK`` (or the CPU, with the gloo backend)
and reads its own slice of every step's global batch (``StepSampler``), so N
processes with batch B train like one process with batch N*B. Only rank 0
writes logs, figures and checkpoints. Started without torchrun, everything
here is a no-op and training is single-process.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from unpaired_sr.common.errors import UserError


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self, batch_size: int) -> str:
        """For the run log: ``", 4 processes x batch 16"`` under torchrun, else empty."""
        return f", {self.world_size} processes x batch {batch_size}" if self.enabled else ""


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not under torchrun), before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun set up (once per process); returns the rank info and this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"rank {rank} wants GPU {local_rank}, but this machine has {torch.cuda.device_count()}; "
                "lower --nproc_per_node"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return Distributed(rank, local_rank, world_size), device


def wrap_ddp(module: nn.Module, world: Distributed, device: torch.device, **options) -> nn.Module:
    """``module`` inside DistributedDataParallel when there are several processes, else itself.

    DDP copies rank 0's parameters and buffers to every rank when it is built,
    and averages gradients across ranks during ``backward``.
    """
    if not world.enabled:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **options)


def all_gather_cat(tensor: torch.Tensor, world: Distributed) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, in rank order (the global batch)."""
    if not world.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def mean_across(values: dict[str, float | torch.Tensor], world: Distributed) -> dict[str, float]:
    """Each value averaged over the ranks (one collective; call it at logging intervals, not every step)."""
    names = list(values)
    stacked = torch.stack([torch.as_tensor(values[name], dtype=torch.float64).cpu() for name in names])
    if world.enabled:
        stacked = stacked.to(_collective_device())
        dist.all_reduce(stacked)
        stacked = stacked.cpu() / world.world_size
    return {name: float(value) for name, value in zip(names, stacked)}


def any_across(flag: bool, world: Distributed) -> bool:
    """True on every rank when it is true on any (e.g. a stop signal one rank received)."""
    if not world.enabled:
        return flag
    value = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(world: Distributed) -> None:
    if world.enabled:
        dist.barrier()


def _collective_device() -> torch.device:
    """NCCL reduces GPU tensors only; gloo, CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
