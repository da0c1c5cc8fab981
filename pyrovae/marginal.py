"""Per-datapoint log weights, the ELBO and the importance-sampling estimate of log p(x).

For any model/guide pair whose per-datapoint sites lie under ``pyro.plate("data", B)``,
one vectorised pass with K particles gives, for every particle k and datapoint i,

    log w_ki = log p(x_i | z_ki) + log p(z_ki) - log q(z_ki | x_i),   z_ki ~ q(. | x_i)

computed from the traces' *unsummed* ``log_prob`` of each site, reduced over every
dimension but the particle and data dimensions. (Pyro's ``Importance`` and
``vectorized_importance_weights`` sum over the data plate and so give one weight for the
whole batch, which is not what log p(x_i) needs.) From the log weights:

* the ELBO of datapoint i is the mean over k of log w_ki;
* the importance-sampling estimate of log p(x_i), which is also one draw of the IWAE
  bound L_K, is logsumexp_k(log w_ki) - log K;
* the effective sample size is (sum_k w_ki)^2 / sum_k w_ki^2.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from pyrovae.errors import PyrovaeError

DATA_PLATE = "data"
PARTICLE_PLATE = "particles"


@dataclass
class LogWeights:
    """Per-particle, per-datapoint log densities, each of shape ``(K, B)``.

    Attributes
    ----------
    log_likelihood
        Sum over observed model sites: log p(x_i | z_ki).
    log_prior
        Sum over latent model sites: log p(z_ki).
    log_guide
        Sum over guide sites: log q(z_ki | x_i).
    """

    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_guide: torch.Tensor

    @property
    def log_weight(self) -> torch.Tensor:
        """log p(x_i, z_ki) - log q(z_ki | x_i)."""
        return self.log_likelihood + self.log_prior - self.log_guide

    @property
    def kl(self) -> torch.Tensor:
        """Monte Carlo estimate of KL(q(z|x_i) || p(z)), one value per particle."""
        return self.log_guide - self.log_prior


def _plate_dim(site: dict, name: str) -> int | None:
    for frame in site["cond_indep_stack"]:
        if frame.name == name:
            return frame.dim
    return None


def _per_datapoint(site: dict, num_particles: int, batch: int) -> torch.Tensor:
    """Unscaled log-density of one site, reduced to shape ``(K, B)``."""
    data_dim = _plate_dim(site, DATA_PLATE)
    if data_dim is None:
        raise PyrovaeError(
            f"sample site {site['name']!r} is not inside pyro.plate({DATA_PLATE!r}, ...); "
            "per-datapoint log densities need every sample site under the data plate"
        )
    lp = site["fn"].log_prob(site["value"])
    lp = scale_and_mask(lp, mask=site["mask"])
    particle_dim = _plate_dim(site, PARTICLE_PLATE)
    keep = [data_dim] + ([particle_dim] if particle_dim is not None else [])
    ndim = max([lp.dim()] + [-d for d in keep])
    lp = lp.reshape((1,) * (ndim - lp.dim()) + tuple(lp.shape))
    other = [d for d in range(ndim) if d - ndim not in keep]
    if other:
        lp = lp.sum(other, keepdim=True)
    k = lp.shape[particle_dim] if particle_dim is not None else 1
    # The particle plate sits left of the data plate, so a reshape keeps the order.
    return lp.reshape(k, lp.shape[data_dim]).expand(num_particles, batch)


def max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """How many plates deep the model and guide go, found by tracing them once."""
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        -frame.dim
        for trace in (guide_trace, model_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)


def trace_log_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *args: Any,
    num_particles: int = 1,
    plate_nesting: int | None = None,
    **kwargs: Any,
) -> LogWeights:
    """Run the guide and the model against it, K particles at once, for one minibatch.

    Parameters
    ----------
    model, guide
        Pyro programs called as ``model(x, *args, **kwargs)``.
    x
        One minibatch, batch dimension first.
    num_particles
        K, the number of draws from the guide per datapoint. With K > 1 the model and
        guide run under an extra ``pyro.plate("particles", K)`` left of their own
        plates, so they must broadcast over a leading batch dimension, as
        ``Trace_ELBO(vectorize_particles=True)`` also requires.
    plate_nesting
        Depth of the program's plates (found by tracing once if not given).
    """
    batch = x.shape[0]
    if num_particles > 1:
        if plate_nesting is None:
            plate_nesting = max_plate_nesting(model, guide, x, *args, **kwargs)
        particles = pyro.plate(PARTICLE_PLATE, num_particles, dim=-(plate_nesting + 1))
        model, guide = particles(model), particles(guide)
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(x, *args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            x, *args, **kwargs
        )
    zero = x.new_zeros(num_particles, batch)
    terms = {"obs": zero, "latent": zero, "guide": zero}
    for trace, role in ((model_trace, "model"), (guide_trace, "guide")):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if role == "guide":
                if site["is_observed"]:
                    continue
                key = "guide"
            else:
                key = "obs" if site["is_observed"] else "latent"
            terms[key] = terms[key] + _per_datapoint(site, num_particles, batch)
    return LogWeights(terms["obs"], terms["latent"], terms["guide"])


def _chunks(n: int, size: int | None):
    size = n if size is None else max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@dataclass
class ELBOTerms:
    """Per-datapoint ELBO and its two terms, in nats (each a tensor of shape ``(N,)``)."""

    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor


@torch.no_grad()
def elbo_terms(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    batch_size: int = 1000,
    **kwargs: Any,
) -> ELBOTerms:
    """One-sample ELBO = E_q[log p(x|z)] - KL(q || p) for each datapoint of ``data``."""
    ll, kl = [], []
    for sl in _chunks(data.shape[0], batch_size):
        lw = trace_log_weights(model, guide, data[sl], *args, **kwargs)
        ll.append(lw.log_likelihood[0])
        kl.append(lw.kl[0])
    log_lik, kl_t = torch.cat(ll), torch.cat(kl)
    return ELBOTerms(log_lik - kl_t, log_lik, kl_t)


@dataclass
class MarginalLikelihood:
    """Importance-sampling estimate of log p(x), per datapoint, in nats.

    Attributes
    ----------
    per_datapoint
        log (1/K) sum_k p(x_i, z_k) / q(z_k | x_i), shape ``(N,)``.
    elbo
        The mean over the K samples of log w, per datapoint: the ELBO, estimated with
        K draws.
    ess
        Effective sample size of the K importance weights, per datapoint.
    num_samples
        K.
    """

    per_datapoint: torch.Tensor
    elbo: torch.Tensor
    ess: torch.Tensor
    num_samples: int

    @property
    def mean(self) -> float:
        """Mean of log p(x_i) over datapoints."""
        return float(self.per_datapoint.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over datapoints."""
        n = self.per_datapoint.numel()
        return float(self.per_datapoint.std() / math.sqrt(n)) if n > 1 else float("nan")


@torch.no_grad()
def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    warn_ess: float = 0.01,
    **kwargs: Any,
) -> MarginalLikelihood:
    """Estimate log p(x_i) for every datapoint by importance sampling from the guide.

    Parameters
    ----------
    model, guide
        Pyro programs called as ``model(x, *args, **kwargs)`` whose per-datapoint sites
        lie under ``pyro.plate("data", ...)``; they must broadcast over an extra leading
        particle dimension.
    data
        Datapoints, batch dimension first (already binarised, if the model needs it).
    num_samples
        K, importance samples per datapoint.
    batch_size
        Datapoints per pass.
    chunk_size
        Particles per pass (default: all K at once). Memory grows with
        ``batch_size * chunk_size``; the estimate does not depend on either.
    warn_ess
        Warn when the mean effective sample size falls below this fraction of K.

    Returns
    -------
    MarginalLikelihood
    """
    if num_samples < 1:
        raise PyrovaeError(f"num_samples must be at least 1, got {num_samples}")
    if data.shape[0] == 0:
        raise PyrovaeError("cannot estimate log p(x) of an empty dataset")
    chunk_size = num_samples if chunk_size is None else chunk_size
    nesting = max_plate_nesting(model, guide, data[:1], *args, **kwargs)
    lse1, lse2, mean_lw = [], [], []
    for sl in _chunks(data.shape[0], batch_size):
        x = data[sl]
        run1 = run2 = total = None
        for ks in _chunks(num_samples, chunk_size):
            k = ks.stop - ks.start
            lw = trace_log_weights(
                model, guide, x, *args, num_particles=k, plate_nesting=nesting, **kwargs
            ).log_weight
            c1, c2, s = lw.logsumexp(0), (2 * lw).logsumexp(0), lw.sum(0)
            run1 = c1 if run1 is None else torch.logaddexp(run1, c1)
            run2 = c2 if run2 is None else torch.logaddexp(run2, c2)
            total = s if total is None else total + s
        lse1.append(run1)
        lse2.append(run2)
        mean_lw.append(total / num_samples)
    lse1_t, lse2_t = torch.cat(lse1), torch.cat(lse2)
    result = MarginalLikelihood(
        per_datapoint=lse1_t - math.log(num_samples),
        elbo=torch.cat(mean_lw),
        ess=torch.exp(2 * lse1_t - lse2_t),
        num_samples=num_samples,
    )
    frac = float(result.ess.mean()) / num_samples
    if num_samples > 1 and frac < warn_ess:
        warnings.warn(
            f"mean effective sample size is {frac:.2%} of the {num_samples} importance "
            "samples: the guide is a poor proposal and log p(x) may be underestimated; "
            "use more samples or the AIS estimator",
            stacklevel=2,
        )
    return result
