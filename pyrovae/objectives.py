"""Training objectives: Pyro ELBO classes, chosen by name.

``LOSSES`` maps a name to a constructor ``f(num_particles=1) -> pyro.infer.ELBO``. Any
Pyro ELBO instance can be handed to :func:`pyrovae.fit` directly; the registry is what
the command line and the comparison scripts use.
"""

from __future__ import annotations

from collections.abc import Callable

from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO

from pyrovae.errors import PyrovaeError
from pyrovae.registry import lookup


def _particles(num_particles: int) -> dict:
    if num_particles < 1:
        raise PyrovaeError(f"--num-particles must be at least 1, got {num_particles}")
    return {"num_particles": num_particles, "vectorize_particles": num_particles > 1}


def trace(num_particles: int = 1) -> ELBO:
    """``Trace_ELBO``: the Monte Carlo ELBO with reparameterised gradients."""
    return Trace_ELBO(**_particles(num_particles))


def meanfield(num_particles: int = 1) -> ELBO:
    """``TraceMeanField_ELBO``: analytic KL(q || p) where Pyro knows it, Monte Carlo else."""
    return TraceMeanField_ELBO(**_particles(num_particles))


LOSSES: dict[str, Callable[..., ELBO]] = {"trace": trace, "meanfield": meanfield}


def get_loss(name: str, num_particles: int = 1) -> ELBO:
    """The ELBO called ``name`` (a key of ``LOSSES``) with ``num_particles`` particles."""
    return lookup(LOSSES, name, "loss")(num_particles=num_particles)
