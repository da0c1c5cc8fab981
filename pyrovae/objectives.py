"""Training objectives: Pyro ELBO classes, chosen by name, and KL weighting.

``LOSSES`` maps a name to a constructor ``f(num_particles=1, free_bits=0.0) -> ELBO``. Any
Pyro ELBO instance can be handed to :func:`pyrovae.fit` directly; the registry is what
the command line and the comparison scripts use.

:class:`IWAE_ELBO` is the importance-weighted bound L_K of Burda et al. (2016), computed
per datapoint from the same log weights as :func:`pyrovae.marginal.iwae_bound`, so the
training loss *is* the bound that evaluation reports. Pyro's ``RenyiELBO(alpha=0)``
computes the same number when every sample site lies under a data plate that is not
subsampled (it keeps plates common to all sites out of its sum; ``tests/test_objectives.py``
checks the equality); under a subsampled plate it takes the logsumexp of weights already
multiplied by N/B, which is not L_K, while :class:`IWAE_ELBO` applies N/B outside.

KL weighting (``beta``, linear KL warm-up) is applied by :class:`LatentScale`, a Pyro
messenger that multiplies the log-density of every latent site, in the model and in the
guide, by one number; with any of the ELBOs above that scales exactly the KL term
E_q[log q(z|x) - log p(z)] and leaves the reconstruction term alone. Free bits
(Kingma et al., 2016) replace each latent site's KL term, averaged over the minibatch,
by max(lambda, KL): :class:`FreeBits_ELBO`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.util import check_model_guide_match
from torch.distributions import kl_divergence

from pyrovae.batches import Batch
from pyrovae.errors import PyrovaeError
from pyrovae.marginal import (
    latent_scale,
    max_plate_nesting,
    per_datapoint_log_prob,
    reduce_to_chains,
    sample_sites,
    trace_log_weights,
    traces,
)
from pyrovae.registry import lookup


class LatentScale(Messenger):
    """Multiply the log-density of every latent (unobserved) sample site by ``scale``.

    Wrapping both the model and the guide, ``LatentScale(beta)`` turns the ELBO
    E[log p(x|z)] - KL into E[log p(x|z)] - beta * KL. ``scale`` is a plain attribute,
    so a training loop can change it between steps (KL warm-up).
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self.scale


def _reparameterized(guide_trace) -> bool:
    """Whether every latent site of the guide is drawn with ``rsample``."""
    return all(site["fn"].has_rsample for site in sample_sites(guide_trace, observed=False))


def _log_prob_sum(trace) -> torch.Tensor:
    """Sum of the scaled, masked log-densities of the trace's sample sites (Pyro's sum)."""
    terms = [
        scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"]).sum()
        for site in sample_sites(trace)
    ]
    return sum(terms[1:], terms[0]) if terms else torch.zeros(())


class Trace_ELBO(pyro.infer.Trace_ELBO):  # noqa: N801 - Pyro's name
    """Pyro's ``Trace_ELBO``, with a lean path for reparameterised programs.

    When every latent site of the guide is drawn with ``rsample`` (as in a VAE), the
    ELBO needs no score-function terms, and :meth:`differentiable_loss` computes Pyro's
    estimator directly: the scaled, masked log-densities of the model's sample sites
    minus the guide's, summed, over the number of particles. Pyro's per-site ``.item()``
    calls (one host sync each), NaN warnings and surrogate bookkeeping are left out; the
    tests check that both give the same loss and gradients. Any other program goes
    through Pyro's own implementation unchanged (and is remembered, so that it is not
    traced twice on later steps). With Pyro's validation enabled, the model and guide
    are checked against each other on the first call.
    """

    _checked = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The (model, guide) pairs found unfit for the lean path: Pyro's own from then on.
        self._pyro_only: set[tuple[Callable, Callable]] = set()

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        pair = (model, guide)
        if pair in self._pyro_only or (self.num_particles > 1 and not self.vectorize_particles):
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if self.num_particles > 1 and self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        nesting = int(self.max_plate_nesting) - 1 if self.num_particles > 1 else 0
        model_trace, guide_trace = traces(
            model, guide, *args, num_particles=self.num_particles, plate_nesting=nesting, **kwargs
        )
        if not _reparameterized(guide_trace):  # remembered: not traced twice again
            self._pyro_only.add(pair)
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if is_validation_enabled() and not self._checked:
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
            self._checked = True
        loss = _log_prob_sum(guide_trace) - _log_prob_sum(model_trace)
        return loss / self.num_particles if self.num_particles > 1 else loss

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return float(loss.detach())


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

    def _nesting(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
        if self.max_plate_nesting == float("inf"):
            self.max_plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)
        return int(self.max_plate_nesting)

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """One model trace replayed against one guide trace (Pyro's ELBO interface)."""
        return traces(model, guide, *args, **kwargs)

    def _bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        lw = trace_log_weights(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            plate_nesting=self._nesting(model, guide, args, kwargs),
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


class FreeBits_ELBO(IWAE_ELBO):  # noqa: N801 - named like Pyro's Trace_ELBO
    """The ELBO with free bits: each latent site's KL term is at least ``free_bits`` nats.

    loss = -sum_i E_q[log p(x_i | z)] + sum_sites B * max(free_bits, mean_i KL_i,site)

    where KL_i,site is the Monte Carlo estimate log q(z|x_i) - log p(z) at that site (or
    the analytic KL divergence with ``analytic_kl=True`` where torch knows it), and the
    mean is over the minibatch of B datapoints and the particles. A site whose average
    KL is below the threshold gets no gradient pushing it further down, which keeps
    latent units from collapsing early in training (Kingma et al., 2016). Each latent
    site is one group: the whole vector z counts as one, and ``free_bits`` is in nats
    per datapoint for it. Site scales from :class:`LatentScale` multiply the clamped
    term.

    Parameters
    ----------
    free_bits
        The threshold lambda, in nats per datapoint and latent site.
    num_particles
        Draws of z per datapoint.
    analytic_kl
        Use ``kl_divergence(q, p)`` where it is implemented (Monte Carlo otherwise).
    """

    def __init__(
        self,
        free_bits: float,
        num_particles: int = 1,
        analytic_kl: bool = False,
        max_plate_nesting: float = float("inf"),
    ) -> None:
        if not free_bits >= 0:
            raise PyrovaeError(f"free bits must be >= 0 nats, got {free_bits}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.free_bits = float(free_bits)
        self.analytic_kl = analytic_kl

    def _site_kl(self, guide_site: dict, model_site: dict, batch: int) -> torch.Tensor:
        if self.analytic_kl:
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
                return reduce_to_chains(kl, guide_site, self.num_particles, batch)
            except NotImplementedError:
                pass
        k = self.num_particles
        return per_datapoint_log_prob(guide_site, k, batch) - per_datapoint_log_prob(
            model_site, k, batch
        )

    def _bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        model_trace, guide_trace = traces(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            plate_nesting=self._nesting(model, guide, args, kwargs),
            **kwargs,
        )
        batch, k = len(Batch(args, kwargs)), self.num_particles
        data_scale = 1.0
        total = 0.0
        for site in sample_sites(model_trace, observed=True):
            total = total + per_datapoint_log_prob(site, k, batch, scaled=True).mean(0).sum()
        for guide_site in sample_sites(guide_trace, observed=False):
            model_site = model_trace.nodes[guide_site["name"]]
            kl = self._site_kl(guide_site, model_site, batch).mean()
            clamped = torch.clamp(kl, min=self.free_bits)
            total = total - latent_scale(guide_site) * batch * clamped
            data_scale = guide_site["scale"] / latent_scale(guide_site)
        return data_scale * total


def _particles(num_particles: int) -> dict:
    if num_particles < 1:
        raise PyrovaeError(f"--num-particles must be at least 1, got {num_particles}")
    return {"num_particles": num_particles, "vectorize_particles": num_particles > 1}


def trace(num_particles: int = 1, free_bits: float = 0.0) -> ELBO:
    """:class:`Trace_ELBO`: the Monte Carlo ELBO with reparameterised gradients.

    With ``free_bits`` > 0, :class:`FreeBits_ELBO` with Monte Carlo KL terms.
    """
    if free_bits:
        return FreeBits_ELBO(free_bits, _particles(num_particles)["num_particles"])
    return Trace_ELBO(**_particles(num_particles))


def meanfield(num_particles: int = 1, free_bits: float = 0.0) -> ELBO:
    """``TraceMeanField_ELBO``: analytic KL(q || p) where Pyro knows it, Monte Carlo else.

    With ``free_bits`` > 0, :class:`FreeBits_ELBO` with analytic KL terms where known.
    """
    if free_bits:
        return FreeBits_ELBO(
            free_bits, _particles(num_particles)["num_particles"], analytic_kl=True
        )
    return TraceMeanField_ELBO(**_particles(num_particles))


def iwae(num_particles: int = 5, free_bits: float = 0.0) -> ELBO:
    """:class:`IWAE_ELBO`: the importance-weighted bound L_K, K = ``num_particles``."""
    _particles(num_particles)
    if free_bits:
        raise PyrovaeError(
            "free bits clamp the ELBO's KL term, which the iwae bound does not have; "
            "use --loss trace or meanfield with --free-bits"
        )
    return IWAE_ELBO(num_particles=num_particles)


LOSSES: dict[str, Callable[..., ELBO]] = {"trace": trace, "meanfield": meanfield, "iwae": iwae}


def get_loss(name: str, num_particles: int | None = None, free_bits: float = 0.0) -> ELBO:
    """The ELBO called ``name`` (a key of ``LOSSES``).

    ``num_particles=None`` takes the objective's own default (1 for the ELBOs, 5 for
    ``iwae``).
    """
    if not free_bits >= 0:
        raise PyrovaeError(f"free bits must be >= 0 nats, got {free_bits}")
    particles = {} if num_particles is None else {"num_particles": num_particles}
    return lookup(LOSSES, name, "loss")(free_bits=free_bits, **particles)
