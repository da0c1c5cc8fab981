"""log p(x) per datapoint by importance sampling, the IWAE bound, and the ELBO's terms.

From the log weights of K particles per datapoint
(:mod:`pyrovae.inference.logweights`), log w_ki = log p(x_i, z_ki) - log q(z_ki | x_i):

* the ELBO of datapoint i is the mean over k of log w_ki;
* the importance-sampling estimate of log p(x_i), which is also one draw of the IWAE
  bound L_K, is logsumexp_k(log w_ki) - log K;
* the effective sample size is (sum_k w_ki)^2 / sum_k w_ki^2.

The data go in passes (:mod:`pyrovae.inference.passes`), the particles run vectorised or
replicated, and enumerated discrete sites are summed exactly
(:class:`~pyrovae.inference.particles.Program`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pyrovae._util import caller_level
from pyrovae.data.batches import Batch, Indexable, as_data
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.particles import Program
from pyrovae.inference.passes import Passes, chunks, pass_shape, per_pass
from pyrovae.inference.processes import processes
from pyrovae.inference.programs import evaluating


class _PerDatapoint:
    """Mean and standard error over datapoints of a ``per_datapoint`` tensor."""

    per_datapoint: torch.Tensor

    @property
    def mean(self) -> float:
        """Mean over datapoints."""
        return float(self.per_datapoint.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over datapoints."""
        n = self.per_datapoint.numel()
        return float(self.per_datapoint.double().std() / math.sqrt(n)) if n > 1 else math.nan


@dataclass
class MarginalLikelihood(_PerDatapoint):
    """An estimate of log p(x), per datapoint, in nats.

    Attributes
    ----------
    per_datapoint
        The estimate of log p(x_i), shape ``(N,)``. For importance sampling:
        log (1/K) sum_k p(x_i, z_k) / q(z_k | x_i), summed over the values of
        enumerated discrete sites.
    ess
        Effective sample size of the importance weights, per datapoint: out of K, or of
        K times the number of enumerated values, whose weights all enter the sum.
    num_samples
        K: importance samples (or AIS chains) per datapoint (per value of the enumerated
        sites, when there are some).
    elbo
        Importance sampling only: the ELBO estimated with K draws, per datapoint.
    estimator
        ``"is"`` or ``"ais"``.
    enumerated
        How many joint values of discrete sites were summed exactly (1: none).
    """

    per_datapoint: torch.Tensor
    ess: torch.Tensor
    num_samples: int
    elbo: torch.Tensor | None = None
    estimator: str = "is"
    enumerated: int = 1


@dataclass
class Bound(_PerDatapoint):
    """A per-datapoint lower bound on log p(x), in nats, averaged over independent draws.

    Attributes
    ----------
    per_datapoint
        The bound's estimate for each datapoint, shape ``(N,)``.
    num_particles
        k of the IWAE bound L_k (k = 1 is the ELBO).
    num_estimates
        Independent draws of the k-sample estimator averaged per datapoint.
    """

    per_datapoint: torch.Tensor
    num_particles: int
    num_estimates: int


@dataclass
class ELBOTerms:
    """Per-datapoint ELBO and its two terms, in nats (each a tensor of shape ``(N,)``)."""

    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor


def check_counts(**counts: int | None) -> None:
    """Raise unless every count is a positive integer (or None)."""
    for name, value in counts.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise PyrovaeError(Param(name), f" must be a positive integer, got {value}")


def estimate(
    model: Callable,
    guide: Callable,
    data: Any,
    call: tuple[tuple, dict],
    passes: Passes,
    run: Callable[[Program, int], Callable[[Batch], tuple[torch.Tensor, ...]]],
    **options: Any,
) -> tuple[tuple[torch.Tensor, ...], Program]:
    """``run(program, chunk)`` on every pass of ``data``: the shared frame of the estimators.

    The modules behind the programs run in ``eval()`` mode; ``call`` holds the extra
    arguments of every call; ``options`` go to :class:`Program`. Returns each per-pass
    result concatenated in order, and the program.
    """
    args, kwargs = call
    with evaluating(model, guide):
        data = as_data(data)
        program = Program(model, guide, data, args, kwargs, **options)
        sized = data.batch if isinstance(data, Indexable) else data.first_batch()
        sizes = passes.batch_size, passes.chunk_size, passes.memory_budget
        batch_size, chunk = pass_shape(model, guide, sized, args, kwargs, *sizes)
        results = per_pass(data, batch_size, run(program, chunk), passes.distributed)
    return results, program


class _Running:
    """Running logsumexp of w and w^2 and the enumerated ELBO, over chunks of particles."""

    def __init__(self) -> None:
        self.lse1 = self.lse2 = self.elbo = None

    def add(self, lw: torch.Tensor, lq: torch.Tensor) -> None:
        """Add ``(C, k, B)`` log weights and log q of the pinned sites."""
        c1, c2 = lw.logsumexp((0, 1)), (2 * lw).logsumexp((0, 1))
        elbo = (lq.exp() * (lw - lq)).sum((0, 1)) if lw.shape[0] > 1 else lw.sum((0, 1))
        self.lse1 = c1 if self.lse1 is None else torch.logaddexp(self.lse1, c1)
        self.lse2 = c2 if self.lse2 is None else torch.logaddexp(self.lse2, c2)
        self.elbo = elbo if self.elbo is None else self.elbo + elbo


def _warn_low_ess(result: MarginalLikelihood, min_ess: float) -> None:
    median_ess = float(result.ess.median())
    drawn = result.num_samples * result.enumerated
    if drawn > 1 and median_ess < min_ess:
        warnings.warn(
            f"median effective sample size is {median_ess:.2f} of {drawn} "
            "importance samples: the guide is a poor proposal and log p(x) may be "
            "underestimated; use more samples or the AIS estimator",
            stacklevel=caller_level(),
        )


@torch.no_grad()
def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    data: Any,
    *args: Any,
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
    min_ess: float = 1.5,
    plate: str | None = None,
    strategy: str = "auto",
    discrete: str = "auto",
    distributed: bool | None = None,
    **kwargs: Any,
) -> MarginalLikelihood:
    """Estimate log p(x_i) for every datapoint by importance sampling from the guide.

    Parameters
    ----------
    model, guide
        Pyro programs called as ``model(*batch, *args, **kwargs)`` whose per-datapoint
        sites lie under one plate over the minibatch, whatever its name. The modules
        that own them run in ``eval()`` mode, restored afterwards.
    data
        Datapoints in any form of :mod:`pyrovae.data.batches`: a tensor, a tuple or
        dict of tensors (``model(*batch)``, ``model(**batch)``), a Dataset or an
        iterable of batches (already binarised, if the model needs it).
    num_samples
        K, importance samples per datapoint (per value of the enumerated sites).
    batch_size
        Datapoints per pass.
    chunk_size
        Particles per pass. Memory grows with ``batch_size * chunk_size``; the estimate
        does not depend on either. By default a pass holds about
        :data:`~pyrovae.inference.passes.ROWS_PER_PASS` (datapoint, particle) pairs on
        the CPU, where small passes stay in cache, and
        :data:`~pyrovae.inference.passes.ROWS_PER_PASS_CUDA` on a GPU.
    memory_budget
        Bytes (or a string such as ``"512MB"``) that one pass may use: the datapoints
        and particles per pass shrink to fit, whatever K and the dataset size.
    min_ess
        Warn when the median effective sample size is below this: the estimate then
        rests on one or two samples per datapoint and the guide is a poor proposal.
    plate
        Name of the per-datapoint plate (found when None: the outermost plate whose
        size is the minibatch's).
    strategy
        How K particles run: ``"vectorize"`` (an extra outer plate), ``"replicate"``
        (each datapoint K times along the data plate) or ``"auto"`` (see
        :class:`~pyrovae.inference.particles.Program`). The estimate does not depend
        on it.
    discrete
        Guide sites marked for enumeration: ``"auto"``, ``"enumerate"`` or ``"sample"``
        (see :class:`~pyrovae.inference.particles.Program`). Summing them exactly gives
        log p(x) = logsumexp_y log p(x, y).
    distributed
        Share the passes among the processes of a ``torch.distributed`` process group
        (``torchrun``): ``None`` (default) when one is initialised, ``False`` never
        (every process then estimates every datapoint). Every process must call the
        function; each returns the estimate of every datapoint, in order, the same
        values as one process with the same seed gives.

    Returns
    -------
    MarginalLikelihood

    Notes
    -----
    Every log-density is the site's own, unscaled (``poutine.scale`` and the plate's
    subsampling scale are left out) and masked as the site says. A ``pyro.factor`` in
    the model counts as part of log p(x); one in the guide is an auxiliary loss and is
    left out of log q.

    The first pass of ``batch_size`` datapoints draws from the caller's random stream,
    every later one from its own generator seeded from that stream and the pass's index
    (:func:`~pyrovae.inference.passes.per_pass`), so ``pyro.set_rng_seed`` before the
    call fixes every value, however many processes share the work. ``batch_size`` (and
    ``memory_budget``, which may shrink it) changes which numbers each datapoint gets,
    not what they estimate.
    """
    check_counts(num_samples=num_samples, batch_size=batch_size, chunk_size=chunk_size)

    def run(program: Program, chunk: int) -> Callable[[Batch], tuple[torch.Tensor, ...]]:
        def one_pass(batch: Batch) -> tuple[torch.Tensor, ...]:
            running = _Running()
            for ks in chunks(num_samples, chunk):
                running.add(*program.all_log_weights(batch, ks.stop - ks.start))
            return running.lse1, running.lse2, running.elbo / num_samples

        return one_pass

    passes = Passes(batch_size, chunk_size, memory_budget, distributed)
    options = {"plate": plate, "strategy": strategy, "discrete": discrete}
    (lse1, lse2, elbo), program = estimate(
        model, guide, data, (args, kwargs), passes, run, **options
    )
    result = MarginalLikelihood(
        per_datapoint=lse1 - math.log(num_samples),
        ess=torch.exp(2 * lse1 - lse2),
        num_samples=num_samples,
        elbo=elbo,
        enumerated=program.num_values,
    )
    if processes(distributed)[0] == 0:  # one warning, not one per process
        _warn_low_ess(result, min_ess)
    return result


@torch.no_grad()
def iwae_bound(
    model: Callable,
    guide: Callable,
    data: Any,
    *args: Any,
    num_particles: int = 50,
    num_estimates: int = 1,
    batch_size: int = 100,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
    plate: str | None = None,
    strategy: str = "auto",
    discrete: str = "auto",
    distributed: bool | None = None,
    **kwargs: Any,
) -> Bound:
    """The importance-weighted bound L_k = E[log (1/k) sum_j w_j] per datapoint.

    L_1 is the ELBO, L_k grows with k and tends to log p(x) (Burda et al., 2016), so
    ``iwae_bound(k=1) <= iwae_bound(k) <= log p(x)`` can be reported side by side. Each
    datapoint's value is the mean of ``num_estimates`` independent k-sample estimates.
    With enumerated discrete sites, each w_j sums over their values.

    Parameters are as for :func:`log_marginal_likelihood` (``distributed`` included:
    the passes are shared among the processes of a process group); ``chunk_size``
    counts particles per pass and is rounded to whole groups of k when k is smaller.
    """
    check_counts(
        num_particles=num_particles,
        num_estimates=num_estimates,
        batch_size=batch_size,
        chunk_size=chunk_size,
    )

    def run(program: Program, chunk: int) -> Callable[[Batch], tuple[torch.Tensor]]:
        def one_pass(batch: Batch) -> tuple[torch.Tensor]:
            total = _groups_logsumexp(program, batch, num_particles, num_estimates, chunk)
            return (total / num_estimates - math.log(num_particles),)

        return one_pass

    passes = Passes(batch_size, chunk_size, memory_budget, distributed)
    options = {"plate": plate, "strategy": strategy, "discrete": discrete}
    (bound,), _ = estimate(model, guide, data, (args, kwargs), passes, run, **options)
    return Bound(bound, num_particles, num_estimates)


def _groups_logsumexp(
    program: Program, batch: Batch, k: int, groups: int, chunk: int
) -> torch.Tensor:
    """Sum over ``groups`` independent groups of k particles of each group's logsumexp."""
    total: Any = 0.0
    if chunk >= k:  # whole groups of k in every pass
        for ks in chunks(k * groups, chunk - chunk % k):
            lw, _ = program.all_log_weights(batch, ks.stop - ks.start)
            grouped = lw.reshape(lw.shape[0], -1, k, lw.shape[-1])
            total = total + grouped.logsumexp((0, 2)).sum(0)
        return total
    for _ in range(groups):  # one group spans several passes
        parts = [
            program.all_log_weights(batch, ks.stop - ks.start)[0].logsumexp((0, 1))
            for ks in chunks(k, chunk)
        ]
        total = total + torch.stack(parts).logsumexp(0)
    return total


@torch.no_grad()
def elbo_terms(
    model: Callable,
    guide: Callable,
    data: Any,
    *args: Any,
    batch_size: int = 1000,
    plate: str | None = None,
    **kwargs: Any,
) -> ELBOTerms:
    """One-sample ELBO = E_q[log p(x|z)] - KL(q || p) for each datapoint of ``data``.

    ``data`` takes every form of :mod:`pyrovae.data.batches`; the networks that own
    model and guide run in ``eval()`` mode. Discrete guide sites are sampled, so the terms
    are one-sample estimates for them too.
    """
    data = as_data(data)
    with evaluating(model, guide):
        program = Program(model, guide, data, args, kwargs, plate, discrete="sample")
        ll, kl = [], []
        for batch in data.passes(batch_size):
            lw = program.log_weights(batch, 1, None)
            ll.append(lw.log_likelihood[0])
            kl.append(lw.kl[0])
    log_lik, kl_t = torch.cat(ll), torch.cat(kl)
    return ELBOTerms(log_lik - kl_t, log_lik, kl_t)
