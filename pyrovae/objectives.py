"""Training objectives: Pyro ELBO classes, chosen by name.

``LOSSES`` maps a name to a constructor ``f(num_particles=1) -> pyro.infer.ELBO``. Any
Pyro ELBO instance can be handed to :func:`pyrovae.fit` directly; the registry is what
the command line and the comparison scripts use.

:class:`IWAE_ELBO` is the importance-weighted bound L_K of Burda et al. (2016), computed
per datapoint from the same log weights as :func:`pyrovae.marginal.iwae_bound`, so the
training loss *is* the bound that evaluation reports. Pyro's ``RenyiELBO(alpha=0)``
computes the same number when every sample site lies under a data plate that is not
subsampled (it keeps plates common to all sites out of its sum; ``tests/test_objectives.py``
checks the equality); under a subsampled plate it takes the logsumexp of weights already
multiplied by N/B, which is not L_K, while :class:`IWAE_ELBO` applies N/B outside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO

from pyrovae.errors import PyrovaeError
from pyrovae.marginal import max_plate_nesting, trace_log_weights, traces
from pyrovae.registry import lookup


class IWAE_ELBO(ELBO):  # noqa: N801 - named like Pyro's Trace_ELBO
    """The IWAE bound sum_i log (1/K) sum_k w_ik as a Pyro loss, for SVI.

    For each datapoint i, K draws z_ik ~ q(z | x_i) give log weights
    log w_ik = log p(x_i, z_ik) - log q(z_ik | x_i); the loss is minus the sum over the
    minibatch of logsumexp_k(log w_ik) - log K, times N/B when the data plate is
    subsampled. Site scales from ``poutine.scale`` (KL weighting) apply inside the log
    weights. Gradients are pathwise, so every guide site must be reparameterisable.

    Parameters
    ----------
    num_particles
        K, importance samples per datapoint (drawn in one vectorised pass).
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: float = float("inf")) -> None:
        # The particles are vectorised by pyrovae.marginal, under their own plate left
        # of the program's plates, so Pyro's own vectorisation stays off.
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """One model trace replayed against one guide trace (Pyro's ELBO interface)."""
        return traces(model, guide, *args, **kwargs)

    def _bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        if self.max_plate_nesting == float("inf"):
            self.max_plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)
        lw = trace_log_weights(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            plate_nesting=int(self.max_plate_nesting),
            scaled=True,
            **kwargs,
        )
        if not lw.reparameterized:
            raise PyrovaeError(
                "IWAE_ELBO needs every guide site to be reparameterisable (rsample); "
                "for discrete latents use pyro.infer.RenyiELBO or TraceGraph_ELBO"
            )
        per_datapoint = lw.log_weight.logsumexp(0) - math.log(self.num_particles)
        return lw.data_scale * per_datapoint.sum()

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        """Minus the bound, as a tensor that gradients flow through."""
        return -self._bound(model, guide, *args, **kwargs)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, as a float."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, after back-propagating its gradient into the parameters."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())


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


def iwae(num_particles: int = 5) -> ELBO:
    """:class:`IWAE_ELBO`: the importance-weighted bound L_K, K = ``num_particles``."""
    _particles(num_particles)
    return IWAE_ELBO(num_particles=num_particles)


LOSSES: dict[str, Callable[..., ELBO]] = {"trace": trace, "meanfield": meanfield, "iwae": iwae}


def get_loss(name: str, num_particles: int = 1) -> ELBO:
    """The ELBO called ``name`` (a key of ``LOSSES``) with ``num_particles`` particles."""
    return lookup(LOSSES, name, "loss")(num_particles=num_particles)
