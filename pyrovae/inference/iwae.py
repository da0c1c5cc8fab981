"""The importance-weighted bound (IWAE) and the ELBO with free bits, as Pyro losses.

:class:`IWAE_ELBO` is the importance-weighted bound L_K of Burda et al. (2016), computed
per datapoint from the same log weights as :func:`pyrovae.inference.marginal.iwae_bound`,
so the training loss *is* the bound that evaluation reports. Pyro's ``RenyiELBO(alpha=0)``
computes the same number when every sample site lies under a data plate that is not
subsampled; under a subsampled plate it takes the logsumexp of weights already multiplied
by N/B, which is not L_K, while :class:`IWAE_ELBO` applies N/B outside.

:class:`FreeBits_ELBO` replaces each latent site's KL term, averaged over the minibatch,
by max(lambda, KL) (Kingma et al., 2016); with ``per_unit=True`` the threshold is shared
out evenly over the site's units and each unit's KL term is clamped on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO
from torch.distributions import Distribution, Independent, kl_divergence

from pyrovae.data.batches import Batch
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.logweights import (
    latent_scale,
    per_datapoint_log_prob,
    reduce_to_chains,
    trace_log_weights,
)
from pyrovae.inference.sites import DATA_PLATE, PARTICLE_PLATE, sample_sites
from pyrovae.inference.trace_elbo import program_nesting
from pyrovae.inference.traces import traces


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
        # The particles are vectorised by pyrovae.inference.traces, under their own
        # plate left of the program's plates, so Pyro's own vectorisation stays off.
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """One model trace replayed against one guide trace (Pyro's ELBO interface)."""
        return traces(model, guide, *args, **kwargs)

    def _bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        lw = trace_log_weights(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            plate_nesting=program_nesting(self, model, guide, args, kwargs),
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
    site is one group by default: the whole vector z counts as one, and ``free_bits`` is
    in nats per datapoint for it. With ``per_unit=True`` each unit d of a site with U
    units (the entries of its event and inner plates) is a group of its own:

    KL term = sum_d max(free_bits / U, mean_i KL_i,site,d)

    so no single unit can be switched off while the others carry the budget, which is
    how a strong decoder otherwise keeps z to a handful of units. This needs the guide
    and the prior of the site to factorise over its units (``Independent`` of a
    univariate family, as the Gaussian guides and priors are). Site scales from
    :class:`LatentScale` multiply the clamped term.

    Parameters
    ----------
    free_bits
        The threshold lambda, in nats per datapoint and latent site.
    num_particles
        Draws of z per datapoint.
    analytic_kl
        Use ``kl_divergence(q, p)`` where it is implemented (Monte Carlo otherwise).
    per_unit
        Share the threshold out over each site's units and clamp each unit's KL term.
    """

    def __init__(
        self,
        free_bits: float,
        num_particles: int = 1,
        analytic_kl: bool = False,
        max_plate_nesting: float = float("inf"),
        per_unit: bool = False,
    ) -> None:
        if not free_bits >= 0:
            raise PyrovaeError(Param("free_bits"), f" must be >= 0 nats, got {free_bits}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.free_bits = float(free_bits)
        self.analytic_kl = analytic_kl
        self.per_unit = bool(per_unit)

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

    def _clamped_kl(self, guide_site: dict, model_site: dict, batch: int) -> torch.Tensor:
        """The site's KL term per datapoint, clamped below as a whole or unit by unit."""
        if not self.per_unit:
            kl = self._site_kl(guide_site, model_site, batch).mean()
            return torch.clamp(kl, min=self.free_bits)
        kl = unit_kl(guide_site, model_site, self.analytic_kl)
        return torch.clamp(kl, min=self.free_bits / kl.numel()).sum()

    def _bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        model_trace, guide_trace = traces(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            plate_nesting=program_nesting(self, model, guide, args, kwargs),
            **kwargs,
        )
        batch, k = len(Batch(args, kwargs)), self.num_particles
        data_scale = 1.0
        total = 0.0
        for site in sample_sites(model_trace, observed=True):
            total = total + per_datapoint_log_prob(site, k, batch, scaled=True).mean(0).sum()
        for guide_site in sample_sites(guide_trace, observed=False):
            model_site = model_trace.nodes[guide_site["name"]]
            clamped = self._clamped_kl(guide_site, model_site, batch)
            total = total - latent_scale(guide_site) * batch * clamped
            data_scale = guide_site["scale"] / latent_scale(guide_site)
        return data_scale * total


def _factors(fn: Distribution, site: str) -> tuple[Distribution, int]:
    """A distribution over a site's units, one univariate factor per unit, and its event rank."""
    if isinstance(fn, Independent) and fn.base_dist.event_shape == ():
        return fn.base_dist, fn.reinterpreted_batch_ndims
    if fn.event_shape == ():
        return fn, 0
    raise PyrovaeError(
        f"free bits per unit need latent site {site!r} to factorise over its units, but "
        f"its {type(fn).__name__} does not; set ",
        Param("free_bits_per_unit", False),
    )


def unit_kl(guide_site: dict, model_site: dict, analytic_kl: bool = False) -> torch.Tensor:
    """The KL term of each unit of a latent site, averaged over particles and datapoints.

    A unit is one entry of the site's value apart from its particle and data dimensions:
    the entries of z's event, and of any plate inside the data plate. The Monte Carlo
    estimate is log q(z_d | x) - log p(z_d); with ``analytic_kl`` the exact
    ``kl_divergence`` where torch knows it. The result is flat, one number per unit.
    """
    q, event_dim = _factors(guide_site["fn"], guide_site["name"])
    p, _ = _factors(model_site["fn"], guide_site["name"])
    kl = None
    if analytic_kl:
        try:
            kl = kl_divergence(q, p)
        except NotImplementedError:
            pass
    if kl is None:
        kl = q.log_prob(guide_site["value"]) - p.log_prob(guide_site["value"])
    mask = guide_site["mask"]
    if mask is not None and mask is not True:
        kl = kl * torch.as_tensor(mask).reshape(torch.as_tensor(mask).shape + (1,) * event_dim)
    frames = [
        f.dim - event_dim
        for f in guide_site["cond_indep_stack"]
        if f.name in (DATA_PLATE, PARTICLE_PLATE) and f.dim is not None
    ]
    frames = [d for d in frames if -d <= kl.dim()]
    return (kl.mean(frames) if frames else kl).reshape(-1)
