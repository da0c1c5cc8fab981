"""Annealed importance sampling (Neal, 2001) from the guide to the posterior.

A second estimator of log p(x_i), for when the guide is a poor proposal and plain
importance sampling underestimates. Each of K chains per datapoint starts at
z_0 ~ q(z | x_i) and moves through the intermediate densities

    pi_t(z) proportional to q(z | x_i)^(1 - beta_t) p(x_i, z)^beta_t,
    0 = beta_0 < beta_1 < ... < beta_T = 1,

with Hamiltonian Monte Carlo transitions that leave pi_t invariant. The log weight of a
chain is sum_t (beta_t - beta_{t-1}) [log p(x_i, z_{t-1}) - log q(z_{t-1} | x_i)], and
log (1/K) sum_k w_k is a stochastic lower bound on log p(x_i) whose gap shrinks as T grows.

Like :func:`pyrovae.log_marginal_likelihood`, this works for any model/guide pair with
its per-datapoint sites under one plate over the minibatch: densities are read from replayed
traces. Latent sites must be continuous; constrained ones are moved in unconstrained
space (with the Jacobian in the HMC target; it cancels in the weights). HMC uses a
diagonal mass matrix from the spread of the K initial draws and a step size per
datapoint, adapted towards an acceptance rate of ``target_accept`` during annealing (as
in Wu et al., 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from torch.distributions import biject_to

from pyrovae._util import lookup
from pyrovae.data.batches import Batch
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.logweights import log_weights_of, reduce_to_chains
from pyrovae.inference.marginal import MarginalLikelihood, Passes, check_counts, estimate
from pyrovae.inference.particles import Program
from pyrovae.inference.sites import PARTICLE_PLATE, data_frame, plate_dim, sample_sites
from pyrovae.inference.traces import traces


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> torch.Tensor:
    """beta_0 = 0 < ... < beta_T = 1, denser near both ends (Grosse et al., 2015)."""
    t = torch.sigmoid(sharpness * torch.linspace(-1.0, 1.0, num_steps + 1, dtype=torch.float64))
    return (t - t[0]) / (t[-1] - t[0])


def linear_schedule(num_steps: int) -> torch.Tensor:
    """beta_t = t / T."""
    return torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)


SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "sigmoid": sigmoid_schedule,
    "linear": linear_schedule,
}


class _Latent:
    """One continuous latent site: its unconstraining map and its chain layout."""

    def __init__(self, site: dict, prior: Any, num_chains: int, batch: int, plate: str) -> None:
        fn = site["fn"]
        if fn.support.is_discrete or prior.support.is_discrete:
            raise PyrovaeError(
                f"annealed importance sampling needs continuous latents; site "
                f"{site['name']!r} is discrete; estimate log p(x) by importance sampling (",
                Param("estimator", "is", spelling="log_marginal_likelihood"),
                ")",
            )
        self.name = site["name"]
        self.site, self.plate = site, plate
        self.transform = biject_to(fn.support)
        self.event_dim = fn.event_dim
        self.num_chains, self.batch = num_chains, batch
        value = site["value"].detach()
        self.shape = value.shape
        self.u0 = self.transform.inv(value)
        # Diagonal mass matrix: the spread of the initial draws over chains.
        pdim = plate_dim(site, PARTICLE_PLATE)
        bdim = value.dim() - self.event_dim
        if pdim is not None and num_chains > 1:
            spread = self.u0.std(dim=bdim + pdim, keepdim=True)
            self.scale = spread.clamp(min=1e-3).expand_as(self.u0).clone()
        else:
            self.scale = torch.ones_like(self.u0)
        self._view = [1] * value.dim()
        if pdim is not None:
            self._view[bdim + pdim] = num_chains
        self._view[bdim + data_frame(site, plate).dim] = batch

    def per_chain(self, t: torch.Tensor) -> torch.Tensor:
        """Sum an elementwise tensor of this site's shape to ``(K, B)``."""
        if self.event_dim:
            t = t.sum(list(range(-self.event_dim, 0)))
        return reduce_to_chains(t, self.site, self.num_chains, self.batch, self.plate)

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        """Lay a ``(K, B)`` tensor out so it broadcasts against this site's values."""
        return t.reshape(self._view)

    def log_abs_det_jacobian(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ladj = self.transform.log_abs_det_jacobian(u, z)
        extra = ladj.dim() - (z.dim() - self.event_dim)
        if extra > 0:
            ladj = ladj.sum(list(range(-extra, 0)))
        return reduce_to_chains(ladj, self.site, self.num_chains, self.batch, self.plate)


class _Annealing:
    """The K chains of one minibatch: their densities, and the HMC move between betas."""

    def __init__(self, program: Program, batch: Batch, num_chains: int) -> None:
        self.program, self.k, self.size = program, num_chains, len(batch)
        self.args, self.kwargs = program.call(batch)
        with torch.no_grad():
            model_trace, guide_trace = traces(
                program.model,
                program.guide,
                *self.args,
                num_particles=num_chains,
                plate_nesting=program.nesting,
                **self.kwargs,
            )
        self.latents = [
            _Latent(
                site, model_trace.nodes[site["name"]]["fn"], num_chains, self.size, program.plate
            )
            for site in sample_sites(guide_trace, observed=False)
        ]
        if not self.latents:
            raise PyrovaeError("annealed importance sampling needs at least one latent site")

    def densities(self, us: list[torch.Tensor], beta: float, grad: bool) -> tuple:
        """log p(x, z), log q(z | x) and the annealed target, with its gradient in u."""
        with torch.enable_grad():
            us = [u.detach().requires_grad_(grad) for u in us]
            values = poutine.Trace()
            ladj = us[0].new_zeros(self.k, self.size)
            for lat, u in zip(self.latents, us, strict=True):
                z = lat.transform(u)
                ladj = ladj + lat.log_abs_det_jacobian(u, z)
                values.add_node(lat.name, type="sample", is_observed=False, value=z, infer={})
            model_trace, guide_trace = traces(
                self.program.model,
                self.program.guide,
                *self.args,
                num_particles=self.k,
                plate_nesting=self.program.nesting,
                guide_values=values,
                **self.kwargs,
            )
            lw = log_weights_of(
                model_trace, guide_trace, self.k, self.size, plate=self.program.plate
            )
            log_joint = lw.log_likelihood + lw.log_prior
            target = (1 - beta) * lw.log_guide + beta * log_joint + ladj
            grads = torch.autograd.grad(target.sum(), us) if grad else None
        return log_joint.detach(), lw.log_guide.detach(), target.detach(), grads

    def kinetic(self, ps: list[torch.Tensor]) -> torch.Tensor:
        """p^T M^-1 p / 2 per chain, with M^-1 = diag(scale^2)."""
        return sum(
            lat.per_chain(0.5 * lat.scale**2 * p**2)
            for p, lat in zip(ps, self.latents, strict=True)
        )

    def hmc(self, us: list, beta: float, eps: torch.Tensor, leapfrog_steps: int) -> tuple:
        """One HMC transition leaving pi_beta invariant, for all K*B chains at once.

        Returns the proposed position, its densities, and log of the acceptance ratio.
        """
        _, _, target0, grads = self.densities(us, beta, grad=True)
        steps = [lat.broadcast(eps) for lat in self.latents]
        ps = [torch.randn_like(u) / lat.scale for u, lat in zip(us, self.latents, strict=True)]
        kinetic0 = self.kinetic(ps)
        new_us = list(us)
        ps = [p + 0.5 * e * g for p, e, g in zip(ps, steps, grads, strict=True)]
        for step in range(leapfrog_steps):
            new_us = [
                u + e * lat.scale**2 * p
                for u, e, p, lat in zip(new_us, steps, ps, self.latents, strict=True)
            ]
            lj1, lq1, target1, grads = self.densities(new_us, beta, grad=True)
            factor = 0.5 if step == leapfrog_steps - 1 else 1.0
            ps = [p + factor * e * g for p, e, g in zip(ps, steps, grads, strict=True)]
        log_accept = (target1 - self.kinetic(ps)) - (target0 - kinetic0)
        log_accept = torch.nan_to_num(log_accept, nan=-math.inf).clamp(max=0.0)
        return new_us, lj1, lq1, log_accept


def _ais_batch(
    program: Program,
    batch: Batch,
    num_chains: int,
    betas: torch.Tensor,
    leapfrog_steps: int,
    step_size: float,
    target_accept: float,
) -> torch.Tensor:
    """AIS log weights ``(K, B)`` for one minibatch, K chains vectorised."""
    chains = _Annealing(program, batch, num_chains)
    us = [lat.u0 for lat in chains.latents]
    log_joint, log_q, _, _ = chains.densities(us, 0.0, grad=False)
    log_w = torch.zeros_like(log_joint)
    eps = log_joint.new_full((1, chains.size), step_size).expand(num_chains, chains.size)
    for t in range(1, len(betas)):
        log_w = log_w + float(betas[t] - betas[t - 1]) * (log_joint - log_q)
        new_us, lj1, lq1, log_accept = chains.hmc(us, float(betas[t]), eps, leapfrog_steps)
        accepted = torch.rand_like(log_accept).log() < log_accept
        us = [
            torch.where(lat.broadcast(accepted), u1, u0)
            for u0, u1, lat in zip(us, new_us, chains.latents, strict=True)
        ]
        log_joint = torch.where(accepted, lj1, log_joint)
        log_q = torch.where(accepted, lq1, log_q)
        rate = log_accept.exp().mean(0, keepdim=True)
        eps = eps * torch.where(rate > target_accept, 1.02, 0.98)
    return log_w


def annealed_importance_sampling(
    model: Callable,
    guide: Callable,
    data: Any,
    *args: Any,
    num_chains: int = 16,
    num_steps: int = 100,
    leapfrog_steps: int = 5,
    step_size: float = 0.1,
    schedule: str = "sigmoid",
    target_accept: float = 0.65,
    batch_size: int = 100,
    plate: str | None = None,
    strategy: str = "auto",
    distributed: bool | None = None,
    **kwargs: Any,
) -> MarginalLikelihood:
    """Estimate log p(x_i) per datapoint by AIS from the guide to the posterior.

    Parameters
    ----------
    model, guide
        Pyro programs as for :func:`pyrovae.log_marginal_likelihood`, with continuous
        latent sites; their modules run in ``eval()`` mode.
    data
        Datapoints in any form of :mod:`pyrovae.data.batches` (already binarised, if the
        model needs it).
    num_chains
        K, independent AIS chains per datapoint.
    num_steps
        T, intermediate distributions between the guide and the posterior.
    leapfrog_steps, step_size
        HMC trajectory length and initial step size (adapted per datapoint).
    schedule
        ``"sigmoid"`` or ``"linear"`` spacing of the betas.
    target_accept
        HMC acceptance rate that the step size is adapted towards.
    batch_size
        Datapoints per pass.
    plate, strategy
        As for :func:`pyrovae.log_marginal_likelihood`. Replicated chains (a program
        that does not broadcast) use a unit mass matrix.
    distributed
        As for :func:`pyrovae.log_marginal_likelihood`: share the passes among the
        processes of a ``torch.distributed`` process group (``None``: when one is
        initialised; ``False``: never). A pass's draws depend on the seed and the
        pass's index only, so one process and several give the same values.

    Returns
    -------
    MarginalLikelihood
        With ``estimator="ais"``; ``ess`` is that of the K AIS weights.
    """
    check_counts(
        num_chains=num_chains,
        num_steps=num_steps,
        leapfrog_steps=leapfrog_steps,
        batch_size=batch_size,
    )
    betas = lookup(SCHEDULES, schedule, "schedule")(num_steps)

    def run(program: Program, chunk: int) -> Callable[[Batch], tuple[torch.Tensor, ...]]:
        def chains(batch: Batch, k: int) -> torch.Tensor:
            return _ais_batch(program, batch, k, betas, leapfrog_steps, step_size, target_accept)

        def one_pass(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
            log_w = program.particles(batch, num_chains, chains)
            lse = log_w.logsumexp(0)
            return lse - math.log(num_chains), torch.exp(2 * lse - (2 * log_w).logsumexp(0))

        return one_pass

    passes = Passes(batch_size, distributed=distributed)
    options = {"plate": plate, "strategy": strategy, "discrete": "sample"}
    (per, ess), _ = estimate(model, guide, data, (args, kwargs), passes, run, **options)
    return MarginalLikelihood(per_datapoint=per, ess=ess, num_samples=num_chains, estimator="ais")
