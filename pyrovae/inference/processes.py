"""The processes of a ``torch.distributed`` group that share the work (under ``torchrun``).

:func:`world` says which process this is and how many there are; :func:`processes`
decides whether an estimator shares its passes among them; :func:`gather` brings every
process's results together, in order; :func:`collective_device` is the device NCCL
sends from.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from pyrovae.errors import Param, PyrovaeError


def world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def processes(distributed: bool | None = None) -> tuple[int, int]:
    """(rank, number) of the processes that share an estimator's passes.

    ``None`` shares them among the processes of the ``torch.distributed`` process group
    when one is initialised (as ``torchrun`` launches do), ``True`` insists on a group
    and ``False`` keeps every pass in this process: ``(0, 1)``.
    """
    if distributed is False:
        return 0, 1
    group = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and not group:
        raise PyrovaeError(
            Param("distributed", True),
            " needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group, or a launch by torchrun)",
        )
    return world()


def collective_device(device: torch.device | None):
    """NCCL sends objects from the current CUDA device: make it the results' device."""
    nccl = torch.distributed.get_backend() == "nccl"
    if nccl and device is not None and device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def gather(
    mine: list[tuple[int, tuple[torch.Tensor, ...]]], device: torch.device | None
) -> list[tuple[torch.Tensor, ...]]:
    """Every process's ``(pass index, results)``, in the order of the passes."""
    local = [(i, tuple(t.detach().cpu() for t in ts)) for i, ts in mine]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    with collective_device(device):
        torch.distributed.all_gather_object(gathered, local)
    merged = sorted((item for part in gathered for item in part), key=lambda item: item[0])
    return [tuple(t.to(device) for t in ts) for _, ts in merged]
