"""Discrete guide sites marked for enumeration, summed exactly in log p(x).

A guide marks a discrete site for enumeration (``config_enumerate``, or
``infer={"enumerate": "parallel"}``); training sums it out with ``TraceEnum_ELBO``, and
the estimators of log p(x) sum over its values exactly: :class:`FixSites` pins the site
to one value in both model and guide, as if observed, and the estimate adds
log p(x, y_j, z) - log q(z | x, y_j) over every value j (:func:`value_combinations`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

from pyro import poutine
from pyro.infer.enum import _config_fn
from pyro.poutine.infer_config_messenger import InferConfigMessenger
from pyro.poutine.messenger import Messenger

from pyrovae.inference.sites import sample_sites
from pyrovae.inference.traces import probing

#: The joint support size up to which ``discrete="auto"`` sums enumerated sites exactly.
MAX_ENUMERATED = 256


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
    with probing((guide,), batch.tensors()):
        trace = poutine.trace(guide).get_trace(*batch.args, **batch.kwargs)
    return bool(enumerated_sites(trace))


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


class Pin(FixSites):
    """:class:`FixSites` that marks the sites it pins (``infer["_pinned"]``)."""

    def _pyro_sample(self, msg: dict) -> None:
        before = msg["is_observed"]
        super()._pyro_sample(msg)
        if msg["is_observed"] and not before:
            msg["infer"] = {**msg["infer"], "_pinned": True}
