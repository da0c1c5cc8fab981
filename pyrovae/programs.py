"""What pyrovae learns about a user's Pyro program before it trains or evaluates it.

* :func:`owner_modules` and :func:`evaluating`: the ``nn.Module`` objects behind a model
  and a guide, switched to ``eval()`` for evaluation and back afterwards (BatchNorm
  uses its running statistics, dropout is off).
* :func:`find_plate`: the per-datapoint plate, whatever its name.
* :func:`enumerated_sites` and :class:`FixSites`: the discrete guide sites marked for
  enumeration (``config_enumerate``), and a messenger that pins them to one value in
  both model and guide, so that log p(x) can sum over their values exactly.
* :func:`params_known`: a step in which pyrovae's own modules need not announce their
  parameters to Pyro again.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pyro import poutine
from pyro.infer.enum import _config_fn
from pyro.poutine.infer_config_messenger import InferConfigMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyrovae.errors import PyrovaeError

PARTICLE_PLATE = "particles"
#: The joint support size up to which ``discrete="auto"`` sums enumerated sites exactly.
MAX_ENUMERATED = 256


_PARAMS_KNOWN = contextvars.ContextVar("pyrovae_params_known", default=False)


@contextlib.contextmanager
def params_known() -> Iterator[None]:
    """A block in which no one needs the ``param`` sites of pyrovae's own modules.

    :class:`~pyrovae.svi.FastSVI` opens it around a training step once its optimiser
    holds every parameter and its loss is computed by ``differentiable_loss`` (which
    reads no ``param`` site): :class:`~pyrovae.VAE` then skips its ``pyro.param``
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


def sample_sites(trace, observed: bool | None = None):
    """The trace's sample sites (not plates' subsample sites, not deterministic ones)."""
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["infer"].get("_deterministic"):
            continue
        if observed is None or bool(site["is_observed"]) == observed:
            yield site


def _frame_size(site: dict, frame) -> int:
    """The size of a plate in a site: its declared size, or the site's batch shape there."""
    if frame.size is not None and frame.size > 0:
        return int(frame.size)
    shape = site["fn"].batch_shape
    return int(shape[frame.dim]) if len(shape) >= -frame.dim else 1


def find_plate(traces: list, batch_size: int, name: str | None = None) -> str:
    """The name of the per-datapoint plate of a program traced on ``batch_size`` datapoints.

    With ``name`` given, checks that such a plate exists. Otherwise the outermost plate
    (vectorised, not the particle plate) whose size is the minibatch's; a one-line error
    when none or several fit.
    """
    fits: dict[str, int] = {}
    names: set[str] = set()
    for trace in traces:
        for site in sample_sites(trace):
            for frame in site["cond_indep_stack"]:
                if not frame.vectorized or frame.name == PARTICLE_PLATE:
                    continue
                names.add(frame.name)
                if _frame_size(site, frame) == batch_size:
                    fits[frame.name] = min(fits.get(frame.name, 0), frame.dim)
    if name is not None:
        if name not in names:
            raise PyrovaeError(
                f"no plate named {name!r} in the model or guide; their plates are "
                f"{sorted(names) or 'none'}"
            )
        return name
    if not fits:
        raise PyrovaeError(
            f"no plate of the model or guide has the minibatch's size {batch_size} "
            f"(plates: {sorted(names) or 'none'}); put the per-datapoint sites under "
            "pyro.plate(name, len(x))"
        )
    outermost = min(fits.values())
    chosen = sorted(n for n, d in fits.items() if d == outermost)
    if len(chosen) > 1:
        raise PyrovaeError(
            f"several plates have the minibatch's size {batch_size}: {chosen}; name the "
            "per-datapoint one with plate=..."
        )
    return chosen[0]


def enumerated_sites(guide_trace) -> dict[str, int]:
    """Unobserved discrete guide sites marked for enumeration, with their support size."""
    sites = {}
    for site in sample_sites(guide_trace, observed=False):
        if site["infer"].get("enumerate") and site["fn"].has_enumerate_support:
            sites[site["name"]] = int(site["fn"].enumerate_support(expand=False).shape[0])
    return sites


def wrapped_by_config_enumerate(guide: Callable) -> bool:
    """Whether ``guide`` is wrapped by ``pyro.infer.config_enumerate``."""
    stack, seen = [guide], set()
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, InferConfigMessenger):
            config_fn = getattr(obj.config_fn, "func", obj.config_fn)
            if config_fn is _config_fn:
                return True
            continue
        stack.extend(getattr(obj, "args", ()) if isinstance(obj, functools.partial) else ())
        stack += [getattr(obj, "func", None), getattr(obj, "__wrapped__", None)]
    return False


def has_enumerated_sites(guide: Callable, batch) -> bool:
    """Whether the guide marks discrete sites for enumeration.

    True when it is wrapped by ``config_enumerate`` (a semi-supervised guide may show
    no such site on a labelled batch) or when its trace on ``batch`` has such a site.
    """
    if wrapped_by_config_enumerate(guide):
        return True
    with poutine.block(), torch.no_grad(), torch.random.fork_rng(devices=_cuda(batch)):
        with evaluating(guide):  # a probe must not move BatchNorm's statistics
            trace = poutine.trace(guide).get_trace(*batch.args, **batch.kwargs)
    return bool(enumerated_sites(trace))


def _cuda(batch) -> list[torch.device]:
    return [t.device for t in batch.tensors() if t.is_cuda][:1]


def value_combinations(sizes: dict[str, int]) -> list[dict[str, int]]:
    """Every joint value (as support indices) of the enumerated sites."""
    names = sorted(sizes)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(range(sizes[n]) for n in names))
    ]


class FixSites(Messenger):
    """Pin discrete sites to one value of their support, as observed, in model and guide.

    In the guide the pinned site then drops out of log q (an observed site is not part
    of the proposal); in the model it counts with log p(y). Running both under
    ``FixSites({"y": j})`` gives log p(x, y_j, z) - log q(z | x, y_j).
    """

    def __init__(self, indices: dict[str, int]) -> None:
        super().__init__()
        self.indices = indices

    def _pyro_sample(self, msg: dict) -> None:
        index = self.indices.get(msg["name"])
        if index is None or msg["is_observed"]:
            return
        support = msg["fn"].enumerate_support(expand=False)
        value = support[index]
        event = len(msg["fn"].event_shape)
        shape = msg["fn"].batch_shape + msg["fn"].event_shape
        msg["value"] = value.reshape(value.shape[value.dim() - event :]).expand(shape)
        msg["is_observed"] = True
