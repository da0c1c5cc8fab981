"""The one way pyrovae runs a model and a guide: trace the guide, replay the model.

Every estimate in pyrovae (the training objectives, log p(x), the IWAE bound, AIS, the
collapse diagnostics, imputation) starts from the same pair of traces: the guide run on
the data, K particles at once under an outer ``pyro.plate("particles", K)`` when K > 1,
and the model replayed against it, so that each latent site of the model takes the
guide's value. :func:`traces` makes that pair. :func:`probe` makes it once to learn a
program's shape, leaving the caller's random stream, the modules' training mode and
every gradient as they were; :func:`max_plate_nesting` reads the depth of a program's
plates from a probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace

from pyrovae.inference.programs import evaluating
from pyrovae.inference.rng import forked
from pyrovae.inference.sites import PARTICLE_PLATE


def vectorize(fn: Callable, num_particles: int, plate_nesting: int) -> Callable:
    """Run ``fn`` under ``pyro.plate("particles", K)`` left of its own plates."""
    if num_particles == 1:
        return fn
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-(plate_nesting + 1))(fn)


def traces(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_particles: int = 1,
    plate_nesting: int | None = None,
    guide_values: Trace | None = None,
    **kwargs: Any,
) -> tuple[Trace, Trace]:
    """The model's trace replayed against the guide's, K particles at once.

    Parameters
    ----------
    model, guide
        Pyro programs, called as ``model(*args, **kwargs)``.
    num_particles
        K: with K > 1 both run under ``pyro.plate("particles", K)`` left of their own
        plates, so their networks must broadcast over a leading dimension.
    plate_nesting
        How deep the programs' own plates go (found by a probe when K > 1 and None).
    guide_values
        A trace whose values the guide's sites take instead of drawing them (AIS moves
        z and scores it so).

    Returns
    -------
    tuple
        ``(model_trace, guide_trace)``.
    """
    if num_particles > 1 and plate_nesting is None:
        plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)
    model = vectorize(model, num_particles, plate_nesting or 0)
    guide = vectorize(guide, num_particles, plate_nesting or 0)
    if guide_values is not None:
        guide = poutine.replay(guide, trace=guide_values)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    return model_trace, guide_trace


@contextlib.contextmanager
def probing(programs: Iterable[Callable], tensors: Iterable[Any]) -> Iterator[None]:
    """A block whose runs of ``programs`` leave no trace: no Pyro side effects, no
    gradients, no draw from the caller's random stream, no move of BatchNorm's statistics
    (their modules in ``eval()`` mode)."""
    with poutine.block(), torch.no_grad(), forked(tensors), evaluating(*programs):
        yield


def probe(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> tuple[Trace, Trace]:
    """:func:`traces` with one particle, run inside :func:`probing`."""
    with probing((model, guide), (*args, *kwargs.values())):
        return traces(model, guide, *args, **kwargs)


def max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """How many plates deep the model and guide go, found by one :func:`probe`."""
    return plate_nesting(*probe(model, guide, *args, **kwargs))


def plate_nesting(model_trace: Trace, guide_trace: Trace) -> int:
    """How many vectorised plates deep the sample sites of two traces go."""
    dims = [
        -frame.dim
        for trace in (guide_trace, model_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)
