"""Devices and the little that training and inference need from ``torch.distributed``.

:func:`resolve_device` is the one device default of every command: CUDA when available, else the
CPU; a named device must exist. Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a
run joins a process group (gloo on CPU, NCCL on GPU); otherwise everything here is a no-op.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mask2anomaly.errors import UserError

_DEVICE = re.compile(r"^(cpu|cuda)(:(\d+))?$")


def resolve_device(name: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """The device called ``name`` (``cpu``, ``cuda``, ``cuda:N``), or by default ``cuda:LOCAL_RANK``
    when CUDA is available and the CPU otherwise.

    Raises:
        UserError: an unknown device name, or a CUDA device this machine does not have.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    match = _DEVICE.match(name.strip())
    if match is None:
        raise UserError(f"--device {name!r}: unknown device (expected cpu, cuda or cuda:N)")
    if match.group(1) == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        index = int(match.group(3) or local_rank)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")


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


def setup(device: str | torch.device | None = None) -> Process:
    """Join the process group when launched by ``torchrun``; pick the device (:func:`resolve_device`)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    chosen = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
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


def gather(value: object, process: Process) -> list[object]:
    """Every process's ``value``, in rank order (``[value]`` in a single process)."""
    if not process.distributed:
        return [value]
    everything: list[object] = [None] * process.world_size
    dist.all_gather_object(everything, value)
    return everything


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()


def teardown(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()
