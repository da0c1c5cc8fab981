"""Where computation runs: choosing the device, and placing data on it."""

from __future__ import annotations

import torch

from pyrovae.errors import Param, PyrovaeError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else the CPU; CUDA asked for must exist."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise PyrovaeError(
            f"unknown device {device!r}; use ", Param("device", "auto"), ", 'cpu' or 'cuda'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PyrovaeError(
            "CUDA was asked for but torch finds no usable GPU here; use ",
            Param("device", "cpu"),
            " or 'auto'",
        )
    return dev


def place(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move data to the device if they fit comfortably, else keep them pinned on the host."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if x.numel() * x.element_size() > free // 2:
            return x.pin_memory()
    return x.to(device)
