"""Peak memory of a piece of work, on the GPU or (Linux) in the process's resident set."""

from __future__ import annotations

from pathlib import Path

import torch


def _vm(key: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def start(device: torch.device) -> int:
    """Reset the peak mark; return the memory in use now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux)
    return _vm("VmRSS")


def peak(device: torch.device) -> int:
    """The peak since :func:`start`: allocated by torch on a GPU, resident on the CPU."""
    return torch.cuda.max_memory_allocated() if device.type == "cuda" else _vm("VmHWM")
