"""Random number generators: their states saved and restored, and blocks of seeded draws.

Training checkpoints the generators' states (:func:`rng_state`), a retry after a
non-finite step and a failed vectorised pass go back to one (:func:`set_rng_state`),
the estimators draw each pass from generators seeded by the pass (:func:`seeded`), and
a probe of a program draws from a forked stream that leaves the caller's as it was
(:func:`forked`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch


def cuda_devices(tensors: Iterable[Any]) -> list[torch.device]:
    """The CUDA device of the first CUDA tensor among ``tensors`` (none: an empty list)."""
    return [t.device for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda][:1]


def drawing_devices(tensors: Iterable[Any]) -> list[torch.device]:
    """The CUDA devices whose generators work on ``tensors`` may draw from."""
    devices = cuda_devices(tensors)
    if not devices and torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = [torch.device("cuda", torch.cuda.current_device())]
    return devices


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Torch's generator states: the CPU's and, for a CUDA ``device``, that GPU's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["cpu"])
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def seeded(seed: int, devices: list[torch.device]) -> Iterator[None]:
    """Draw from generators seeded with ``seed``; the caller's state is restored after."""
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for device in devices:
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def forked(tensors: Iterable[Any]) -> contextlib.AbstractContextManager:
    """Draws inside the block leave the caller's stream (CPU, and the tensors' GPU) as it was."""
    return torch.random.fork_rng(devices=cuda_devices(tensors))
