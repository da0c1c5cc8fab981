"""The torch modules behind a Pyro program, and when they need not announce themselves.

* :func:`owner_modules` and :func:`evaluating`: the ``nn.Module`` objects behind a model
  and a guide, switched to ``eval()`` for evaluation and back afterwards (BatchNorm
  uses its running statistics, dropout is off).
* :func:`params_known`: a step in which pyrovae's own modules need not announce their
  parameters to Pyro again.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from torch import nn

_PARAMS_KNOWN = contextvars.ContextVar("pyrovae_params_known", default=False)


@contextlib.contextmanager
def params_known() -> Iterator[None]:
    """A block in which no one needs the ``param`` sites of pyrovae's own modules.

    :class:`~pyrovae.inference.svi.FastSVI` opens it around a training step once its optimiser
    holds every parameter and its loss is computed by ``differentiable_loss`` (which
    reads no ``param`` site): :class:`~pyrovae.models.vae.VAE` then skips its ``pyro.param``
    calls, a sixth of the time of a small step. Anything else that traces the programs
    (Pyro's own ``SVI``, ``poutine.trace``) runs outside it and sees every site.
    """
    token = _PARAMS_KNOWN.set(True)
    try:
        yield
    finally:
        _PARAMS_KNOWN.reset(token)


def params_are_known() -> bool:
    """Whether the caller is inside :func:`params_known`."""
    return _PARAMS_KNOWN.get()


def owner_modules(*programs: Any) -> list[nn.Module]:
    """The torch modules that own the given programs (bound methods, Pyro handlers, ...).

    Follows ``__self__`` (a bound method), ``__wrapped__`` (a Pyro handler such as
    ``config_enumerate``), ``func`` (``functools.partial``) and ``fn`` (a messenger).
    """
    found: list[nn.Module] = []
    stack = list(programs)
    seen: set[int] = set()
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            if all(obj is not m for m in found):
                found.append(obj)
            continue
        if isinstance(obj, tuple | list):
            stack.extend(obj)
            continue
        for attr in ("__self__", "__wrapped__", "func", "fn"):
            stack.append(getattr(obj, attr, None))
    return found


@contextlib.contextmanager
def evaluating(*programs: Any) -> Iterator[None]:
    """Run the owners of ``programs`` in ``eval()`` mode; restore every module's mode after."""
    modes = [(m, m.training) for owner in owner_modules(*programs) for m in owner.modules()]
    for module, _ in modes:
        module.training = False
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
