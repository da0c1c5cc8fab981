"""Posterior-collapse diagnostics: active units and the KL divergence per latent unit.

A VAE whose decoder can model the data alone lets some latent units *collapse*: their
posterior q(z_u | x) equals the prior whatever x is, so they carry no information about
the data. Two numbers per unit u of every continuous latent site say how far that went:

``active``
    Burda et al. (2016): the unit is active when A_u = Cov_x(E_q[z_u | x]) > 0.01, the
    variance over the data of the posterior mean. A collapsed unit's posterior mean does
    not move with x. The mean is exact where the guide's distribution has one (a
    diagonal or low-rank Gaussian), the average of ``num_samples`` draws otherwise
    (an IAF guide); the variance is over all datapoints given (divided by N).
``kl``
    KL(q(z_u | x) || p(z_u)) averaged over the data: each unit's share of the ELBO's KL
    term. It needs the one-dimensional marginals of q and p: a diagonal Gaussian's
    factors, a low-rank or full Gaussian's diagonal, a mixture of diagonal Gaussians'
    per-unit mixture (the mixture prior, the VampPrior). The divergence is analytic
    where torch knows it (Gaussian against Gaussian) and a Monte Carlo average of
    ``num_samples`` draws otherwise; where either side has no such marginals (a flow)
    it is not reported (None). For a site whose prior depends on another latent
    (p(z_1 | z_2) in a hierarchical model), p is the model's conditional at the drawn
    value of its parents, so the figure is KL(q(z_1 | x) || p(z_1 | z_2)) averaged over
    q(z_2 | ...).

Each latent site with one batch dimension, the data plate, is diagnosed: its event is
flattened into units. Discrete sites and sites under further plates are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro.distributions as dist
import torch
from torch.distributions import kl_divergence

from pyrovae.data.batches import as_data
from pyrovae.inference.programs import evaluating
from pyrovae.inference.sites import sample_sites
from pyrovae.inference.traces import traces
from pyrovae.parts.distributions import mean_of

#: A unit is active when the variance over the data of its posterior mean exceeds this.
ACTIVE_THRESHOLD = 0.01


@dataclass
class LatentUnits:
    """The diagnostics of one latent site, one entry per unit (flattened event).

    Attributes
    ----------
    site
        The sample site's name.
    variance
        Cov_x(E_q[z_u | x]), shape ``(D,)``.
    kl
        KL(q(z_u | x) || p(z_u)) averaged over the data, shape ``(D,)``; None where
        the marginals are not available.
    analytic
        Whether ``kl`` was computed in closed form (else by Monte Carlo).
    threshold
        The activity threshold used.
    """

    site: str
    variance: torch.Tensor
    kl: torch.Tensor | None
    analytic: bool
    threshold: float = ACTIVE_THRESHOLD

    @property
    def active(self) -> torch.Tensor:
        """Which units are active, shape ``(D,)``."""
        return self.variance > self.threshold

    @property
    def active_units(self) -> int:
        """How many units are active."""
        return int(self.active.sum())


def unit_marginals(fn: Any) -> torch.distributions.Distribution | None:
    """The one-dimensional marginals of a distribution over vectors, batch ``(..., D)``.

    None when they are not available in closed form (a flow, a discrete site).
    """
    base = fn.base_dist if isinstance(fn, torch.distributions.Independent) else None
    if base is not None and fn.reinterpreted_batch_ndims == 1:
        if isinstance(base, torch.distributions.Normal):
            return base
    if isinstance(fn, torch.distributions.Normal) and not fn.event_shape:
        return dist.Normal(fn.loc.unsqueeze(-1), fn.scale.unsqueeze(-1))
    if isinstance(
        fn, torch.distributions.LowRankMultivariateNormal | torch.distributions.MultivariateNormal
    ):
        return dist.Normal(fn.loc, fn.variance.sqrt())
    if isinstance(fn, torch.distributions.MixtureSameFamily):
        parts = unit_marginals(fn.component_distribution)  # batch (..., C, D)
        if not isinstance(parts, torch.distributions.Normal):
            return None
        logits = fn.mixture_distribution.logits  # (..., C)
        loc, scale = parts.loc.movedim(-2, -1), parts.scale.movedim(-2, -1)  # (..., D, C)
        logits = logits.unsqueeze(-2).expand(loc.shape)
        return dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale))
    return None


def _unit_kl(q: Any, p: Any, num_samples: int) -> tuple[torch.Tensor | None, bool]:
    """KL per datapoint and unit, shape ``(B, D)``, and whether it is analytic."""
    qu, pu = unit_marginals(q), unit_marginals(p)
    if qu is None or pu is None:
        return None, False
    try:
        return kl_divergence(qu, pu), True
    except NotImplementedError:
        z = qu.sample((num_samples,))
        return (qu.log_prob(z) - pu.log_prob(z)).mean(0), False


def _per_datapoint_sites(trace, size: int) -> list[dict]:
    """Continuous latent sites with the data plate as their only batch dimension."""
    return [
        site
        for site in sample_sites(trace, observed=False)
        if tuple(site["fn"].batch_shape) == (size,)
        and site["value"].is_floating_point()
        and not site["infer"].get("enumerate")
    ]


@torch.no_grad()
def latent_units(
    model: Callable,
    guide: Callable,
    data: Any,
    batch_size: int = 1000,
    num_samples: int = 64,
    threshold: float = ACTIVE_THRESHOLD,
) -> dict[str, LatentUnits]:
    """Active units and KL per unit of every per-datapoint continuous latent site.

    Parameters
    ----------
    model, guide
        The Pyro programs, called on the data as :func:`pyrovae.fit` calls them (any form
        of :mod:`pyrovae.data.batches`); their modules run in ``eval()`` mode.
    data
        Held-out data.
    batch_size
        Datapoints per pass.
    num_samples
        Draws for a posterior mean or a KL divergence with no closed form.
    threshold
        The activity threshold on Cov_x(E_q[z_u | x]) (0.01, as Burda et al.).

    Returns
    -------
    dict
        :class:`LatentUnits` per site name, in the guide's order.
    """
    data = as_data(data, "data")
    sites: dict[str, _Sums] = {}
    with evaluating(model, guide):
        for batch in data.passes(batch_size):
            size = len(batch)
            model_trace, guide_trace = traces(model, guide, *batch.args, **batch.kwargs)
            for site in _per_datapoint_sites(guide_trace, size):
                prior = model_trace.nodes[site["name"]]["fn"]
                sums = sites.setdefault(site["name"], _Sums())
                sums.add(
                    mean_of(site["fn"], num_samples).reshape(size, -1),
                    *_unit_kl(site["fn"], prior, num_samples),
                )
    return {name: sums.result(name, threshold) for name, sums in sites.items()}


class _Sums:
    """Running sums over the data of one site's posterior means and KL terms."""

    def __init__(self) -> None:
        self.n = 0
        self.first: Any = 0.0
        self.second: Any = 0.0
        self.kl: Any = 0.0
        self.has_kl, self.analytic = True, True

    def add(self, mean: torch.Tensor, kl: torch.Tensor | None, analytic: bool) -> None:
        mean = mean.double()
        self.n += mean.shape[0]
        self.first = self.first + mean.sum(0)
        self.second = self.second + (mean**2).sum(0)
        self.has_kl = self.has_kl and kl is not None
        if self.has_kl:
            self.kl = self.kl + kl.reshape(mean.shape).double().sum(0)
            self.analytic = self.analytic and analytic

    def result(self, name: str, threshold: float) -> LatentUnits:
        mean = self.first / self.n
        variance = (self.second / self.n - mean**2).clamp(min=0.0).float()
        kl = (self.kl / self.n).float() if self.has_kl else None
        return LatentUnits(name, variance, kl, self.has_kl and self.analytic, threshold)


def summary(units: dict[str, LatentUnits]) -> dict[str, Any]:
    """The figures for ``metrics.json``: per site, lists of plain floats."""

    def floats(t: torch.Tensor | None) -> list[float] | None:
        return None if t is None else [float(v) for v in t]

    return {
        "active_units": {name: u.active_units for name, u in units.items()},
        "latent_units": {name: int(u.variance.numel()) for name, u in units.items()},
        "kl_per_dim": {name: floats(u.kl) for name, u in units.items()},
        "kl_per_dim_analytic": {name: u.analytic for name, u in units.items()},
        "posterior_mean_variance": {name: floats(u.variance) for name, u in units.items()},
        "active_threshold": next(iter(units.values())).threshold if units else math.nan,
    }
