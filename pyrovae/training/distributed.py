"""What changes under ``torch.distributed`` (for example when launched by ``torchrun``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.processes import world
from pyrovae.inference.svi import ELBOLoss


def process_device(dev: torch.device, rank: int, size: int) -> torch.device:
    """One GPU per process when the device names no index."""
    if size > 1 and dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", rank % torch.cuda.device_count())
    return dev


def loss_module(owner: Any, loss: Any, model: Callable, guide: Callable, dev, batch_size: int):
    """The loss as a ``DistributedDataParallel`` module, or None in a single process."""
    _, size = world()
    if size == 1:
        return None
    if not isinstance(owner, nn.Module) or batch_size < size:
        raise PyrovaeError(
            "distributed training needs a VAE (an nn.Module owning the parameters) and ",
            Param("batch_size"),
            f" >= the {size} processes",
        )
    return nn.parallel.DistributedDataParallel(
        ELBOLoss(owner, loss, model, guide),
        device_ids=[dev.index] if dev.type == "cuda" else None,
    )


def all_reduce(total: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes (in place); itself in a single process."""
    if world()[1] > 1:
        torch.distributed.all_reduce(total)
    return total


def max_over_processes(value: int, dev: torch.device) -> int:
    """The largest of the processes' values (a tiny all-reduce); itself in one process."""
    if world()[1] == 1:
        return value
    flag = torch.tensor(value, dtype=torch.int32, device=dev)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag)


def should_stop(callback: Callable | None, state: Any, dev: torch.device) -> bool:
    """Call the callback on rank 0; every process learns whether it asked to stop."""
    rank, size = world()
    stop = torch.zeros((), dtype=torch.int32, device=dev)
    if rank == 0 and callback is not None and callback(state) is False:
        stop.fill_(1)
    if size > 1:
        torch.distributed.broadcast(stop, 0)
    return bool(stop)


def barrier() -> None:
    """No process leaves while another may still be receiving from it."""
    if world()[1] > 1:
        torch.distributed.barrier()
