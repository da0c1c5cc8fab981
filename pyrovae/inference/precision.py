"""Training precision: one setting, ``"auto"``, ``"float32"`` or ``"bfloat16"``.

``"bfloat16"`` is mixed precision: the model and the guide run under
``torch.autocast(dtype=torch.bfloat16)``, so their networks' matrix products run in
bfloat16, while every density and the loss stay in float32:

* the ELBO's log-densities are computed outside the programs, where autocast is off;
* :class:`FullPrecisionSites` casts any bfloat16 parameter of a sample site's
  distribution (a network's output handed straight to ``dist.Normal``, say) to
  float32 before the site is drawn or scored, so a user's own program gets float32
  densities without changing a line; :class:`~pyrovae.VAE` casts its networks'
  outputs itself.

``"auto"`` picks bfloat16 where the hardware multiplies bfloat16 natively (a CUDA GPU
of compute capability 8.0 or newer; a CPU with ``avx512_bf16`` or AMX, or an ARM CPU
with the BF16 extension) *and* the programs say they are safe in it, float32 otherwise.
A program is safe when it builds its distributions from float32 values: the object whose
``model`` and ``guide`` are trained declares ``mixed_precision_safe = True``
(:mod:`pyrovae.models.protocol`), as :class:`~pyrovae.models.vae.VAE` does (it casts its
networks' outputs back to float32). A user's own program builds its distributions inside
its own code, before :class:`FullPrecisionSites` sees them, and Pyro's argument checks
there can fail on half-precision values (a softmax computed in bfloat16 does not sum to
1 within 1e-6), so ``"auto"`` keeps it in float32; ask for ``"bfloat16"`` explicitly, or
set the attribute, once it casts its networks' outputs with ``.float()``. Emulated
bfloat16 is slower than float32, hence float32 on other hardware. Evaluation (log p(x),
validation) always runs in float32.
"""

from __future__ import annotations

import copy
import functools
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pyro.poutine.messenger import Messenger
from torch.distributions import Distribution

from pyrovae.errors import Param, PyrovaeError

#: CPU feature flags (``/proc/cpuinfo``) that mean native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
_HALF = (torch.bfloat16, torch.float16)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, so float32
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        flags = _cpu_flags()
        if platform.machine().lower() in ("aarch64", "arm64"):
            return "bf16" in flags
        return any(flag in flags for flag in BF16_CPU_FLAGS[:2])
    return False


def resolve_precision(precision: str, device: torch.device, safe: bool = True) -> str:
    """``"float32"`` or ``"bfloat16"``: ``precision`` with ``"auto"`` decided.

    ``"auto"`` is bfloat16 when ``device`` multiplies it natively and the programs are
    ``safe`` in it (see the module docstring), float32 otherwise.
    """
    if precision not in PRECISIONS:
        raise PyrovaeError(
            "unknown ", Param("precision", precision), f"; choose one of: {', '.join(PRECISIONS)}"
        )
    if precision == "auto":
        return "bfloat16" if safe and native_bfloat16(device) else "float32"
    return precision


def _to_float32(fn: Distribution) -> Distribution:
    """``fn`` with every half-precision tensor attribute cast to float32 (a shallow copy)."""
    cast: dict[str, Any] = {}
    for name, value in vars(fn).items():
        if isinstance(value, torch.Tensor) and value.dtype in _HALF:
            cast[name] = value.float()
        elif isinstance(value, Distribution):
            inner = _to_float32(value)
            if inner is not value:
                cast[name] = inner
    if not cast:
        return fn
    new = copy.copy(fn)
    vars(new).update(cast)
    return new


class FullPrecisionSites(Messenger):
    """Cast half-precision parameters of every sample site's distribution to float32.

    Wrapped around a program run under autocast, this keeps sampling and every
    density in float32 whatever dtype the networks returned.
    """

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and isinstance(msg["fn"], Distribution):
            msg["fn"] = _to_float32(msg["fn"])


def mixed_precision(program: Callable, device: torch.device) -> Callable:
    """``program`` run under bfloat16 autocast on ``device``, its sites in float32."""

    @functools.wraps(program)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device.type, dtype=torch.bfloat16), FullPrecisionSites():
            return program(*args, **kwargs)

    return run


def _as_is(program: Callable, device: torch.device) -> Callable:
    return program


#: What each precision does to a program: the registry ``"auto"`` resolves into.
PROGRAMS_AT: dict[str, Callable[[Callable, torch.device], Callable]] = {
    "float32": _as_is,
    "bfloat16": mixed_precision,
}
#: The values ``precision`` may take.
PRECISIONS = ("auto", *PROGRAMS_AT)


def for_precision(program: Callable, precision: str, device: torch.device) -> Callable:
    """``program`` as it runs at a resolved ``precision`` (itself in float32)."""
    return PROGRAMS_AT[precision](program, device)
