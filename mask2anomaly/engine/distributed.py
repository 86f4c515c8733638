"""The little that training needs from ``torch.distributed``: who am I, and sums over processes.

Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a run uses DistributedDataParallel
with gloo on CPU and NCCL on GPU; otherwise everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    """Rank, world size and device of this process."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> Process:
    """Join the process group when launched by ``torchrun``; pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Process(rank, world_size, chosen)


def all_sum(value: torch.Tensor, process: Process) -> torch.Tensor:
    """Sum of ``value`` over all processes (``value`` itself in a single process)."""
    if process.distributed:
        value = value.clone()
        dist.all_reduce(value)
    return value


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()


def teardown(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()
