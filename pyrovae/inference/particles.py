"""K particles per datapoint for any program: vectorised, or replicated along the plate.

:class:`Program` makes a model/guide pair ready for per-datapoint estimates: it learns
the program's plate nesting, its per-datapoint plate and its enumerated discrete sites
from one probe, then gives ``(C, K, B)`` log weights for any minibatch: C values of the
enumerated sites (1 when none), K particles, B datapoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from pyrovae._util import caller_level
from pyrovae.data.batches import Batch, Data
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.enumeration import (
    MAX_ENUMERATED,
    Pin,
    enumerated_sites,
    value_combinations,
)
from pyrovae.inference.logweights import LogWeights, trace_log_weights
from pyrovae.inference.rng import drawing_devices, rng_state, set_rng_state
from pyrovae.inference.sites import find_plate
from pyrovae.inference.traces import plate_nesting, probe

#: The strategies for K particles per datapoint (see :class:`Program`).
STRATEGIES = ("auto", "vectorize", "replicate")
#: What to do with discrete guide sites marked for enumeration.
DISCRETE = ("auto", "enumerate", "sample")


class Program:
    """A model/guide pair made ready for per-datapoint estimates on some data.

    Traces the program once on a few datapoints to learn its plate nesting, the name of
    its per-datapoint plate (:func:`~pyrovae.inference.sites.find_plate`) and its enumerated
    discrete sites, and then gives ``(C, K, B)`` log weights for any minibatch: C values
    of the enumerated sites (1 when none are enumerated), K particles, B datapoints.

    K particles run in one of two ways. ``"vectorize"``: under an extra outer
    ``pyro.plate("particles", K)``, which needs networks that broadcast over a leading
    dimension. ``"replicate"``: each datapoint repeated K times along the data plate,
    which any program allows (BatchNorm on 2-D input, boolean-mask indexing,
    ``view(-1, D)``). ``"auto"`` tries the first and falls back to the second, once,
    with a warning, when the program fails under the particle plate.

    Parameters
    ----------
    model, guide
        Pyro programs.
    data
        The data they will be evaluated on (for the probe trace).
    args, kwargs
        Extra arguments passed on every call, after the data's own.
    plate
        The per-datapoint plate's name, or None to find it.
    strategy
        ``"auto"``, ``"vectorize"`` or ``"replicate"``.
    discrete
        ``"auto"`` sums guide sites marked for enumeration exactly when their joint
        support has at most :data:`~pyrovae.inference.enumeration.MAX_ENUMERATED` values, else
        samples them; ``"enumerate"`` always sums; ``"sample"`` always samples.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        data: Data,
        args: tuple = (),
        kwargs: dict | None = None,
        plate: str | None = None,
        strategy: str = "auto",
        discrete: str = "auto",
    ) -> None:
        for name, value, allowed in (
            ("strategy", strategy, STRATEGIES),
            ("discrete", discrete, DISCRETE),
        ):
            if value not in allowed:
                raise PyrovaeError(
                    "unknown ", Param(name, value), f"; choose one of {', '.join(allowed)}"
                )
        self.model, self.guide = model, guide
        self.args, self.kwargs = tuple(args), dict(kwargs or {})
        self.strategy = strategy
        first = data.first_batch()
        call_args, call_kwargs = self.call(first)
        model_trace, guide_trace = probe(model, guide, *call_args, **call_kwargs)
        self.nesting = plate_nesting(model_trace, guide_trace)
        self.plate = find_plate([guide_trace, model_trace], len(first), plate)
        sizes = enumerated_sites(guide_trace)
        joint = math.prod(sizes.values())
        enumerate_them = discrete == "enumerate" or (
            discrete == "auto" and joint <= MAX_ENUMERATED
        )
        self.pinned: list[dict[str, int] | None] = (
            value_combinations(sizes) if sizes and enumerate_them else [None]
        )

    @property
    def num_values(self) -> int:
        """C: joint values of the enumerated sites summed over (1 when none)."""
        return len(self.pinned)

    def _programs(self, pinned: dict[str, int] | None) -> tuple[Callable, Callable]:
        if pinned is None:
            return self.model, self.guide
        fix = Pin(pinned)
        return fix(self.model), fix(self.guide)

    def call(self, batch: Batch) -> tuple[tuple, dict]:
        """The positional and keyword arguments of one call on ``batch``."""
        return (*batch.args, *self.args), {**batch.kwargs, **self.kwargs}

    def particles(self, batch: Batch, k: int, run: Callable[[Batch, int], Any]) -> Any:
        """``run(batch, k)`` with K particles vectorised, or replicated along the plate.

        ``run`` returns ``(K, B)`` tensors (a tensor or :class:`LogWeights`); replicated,
        it runs once on K * B datapoints and its result is laid out as ``(K, B)`` again.
        """
        if self.strategy == "replicate" and k > 1:
            return self._replicated(batch, k, run)
        # A failed vectorised try may have drawn random numbers: the replicated run
        # starts from the same state, so its draws do not depend on which pass failed.
        devices = drawing_devices(batch.tensors())
        device = devices[0] if devices else None
        state = rng_state(device) if self.strategy == "auto" and k > 1 else None
        try:
            return run(batch, k)
        except PyrovaeError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as err:
            if self.strategy == "vectorize" or k == 1:
                raise
            text = str(err).strip()
            first = text.splitlines()[0][:200] if text else type(err).__name__
            warnings.warn(
                f"the model or guide does not broadcast over a particle dimension ({first}); "
                "replicating each datapoint K times along its plate instead "
                "(strategy='replicate' says so up front)",
                stacklevel=caller_level(),
            )
            self.strategy = "replicate"
            if state is not None:
                set_rng_state(state, device)
            return self._replicated(batch, k, run)

    @staticmethod
    def _replicated(batch: Batch, k: int, run: Callable[[Batch, int], Any]) -> Any:
        size = len(batch)
        out = run(batch.repeat_interleave(k), 1)

        def layout(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(size, k).T

        return out.map(layout) if isinstance(out, LogWeights) else layout(out)

    def log_weights(self, batch: Batch, k: int, pinned: dict[str, int] | None) -> LogWeights:
        """``(K, B)`` log weights of one minibatch with the enumerated sites at ``pinned``."""
        model, guide = self._programs(pinned)

        def run(b: Batch, particles: int) -> LogWeights:
            args, kwargs = self.call(b)
            return trace_log_weights(
                model,
                guide,
                *args,
                num_particles=particles,
                plate_nesting=self.nesting,
                plate=self.plate,
                **kwargs,
            )

        return self.particles(batch, k, run)

    def all_log_weights(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C, K, B)`` log weights and log q of the pinned sites, for every value."""
        parts = [self.log_weights(batch, k, pinned) for pinned in self.pinned]
        return (
            torch.stack([p.log_weight for p in parts]),
            torch.stack([torch.as_tensor(p.log_pinned).expand(k, len(batch)) for p in parts]),
        )
