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
    data_scale
        ``full_size / size`` of a subsampled data plate (1 when not subsampled): how much
        one minibatch stands for.
    reparameterized
        Whether every guide site was drawn with ``rsample``, so that gradients of the log
        weights with respect to the guide's parameters are pathwise.
    """

    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_guide: torch.Tensor
    data_scale: float = 1.0
    reparameterized: bool = True

    @property
    def log_weight(self) -> torch.Tensor:
        """log p(x_i, z_ki) - log q(z_ki | x_i)."""
        return self.log_likelihood + self.log_prior - self.log_guide

    @property
    def kl(self) -> torch.Tensor:
        """Monte Carlo estimate of KL(q(z|x_i) || p(z)), one value per particle."""
        return self.log_guide - self.log_prior


def data_frame(site: dict):
    """The site's ``pyro.plate("data")`` frame; an error names a site outside it."""
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA_PLATE:
            return frame
    raise PyrovaeError(
        f"sample site {site['name']!r} is not inside pyro.plate({DATA_PLATE!r}, ...); "
        "per-datapoint log densities need every sample site under the data plate"
    )


def plate_dim(site: dict, name: str) -> int | None:
    """The batch dimension of the site's plate called ``name``, or None."""
    for frame in site["cond_indep_stack"]:
        if frame.name == name:
            return frame.dim
    return None


def _subsample_scale(frame) -> float:
    return frame.full_size / frame.size if frame.full_size else 1.0


def latent_scale(site: dict) -> float | torch.Tensor:
    """A site's scale without the data plate's subsampling part: its KL weight, say."""
    return site["scale"] / _subsample_scale(data_frame(site))


def sample_sites(trace, observed: bool | None = None):
    """The trace's sample sites (not plates' subsample sites), optionally by observedness."""
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if observed is None or bool(site["is_observed"]) == observed:
            yield site


def per_datapoint_log_prob(
    site: dict, num_particles: int, batch: int, scaled: bool = False
) -> torch.Tensor:
    """The log-density of one site, reduced to shape ``(K, B)``.

    Unscaled by default (a pure density). With ``scaled`` the site's scale is applied,
    except the part that comes from subsampling the data plate, which belongs outside
    any per-datapoint nonlinearity (see :class:`LogWeights`).
    """
    lp = site["fn"].log_prob(site["value"])
    lp = scale_and_mask(lp, scale=latent_scale(site) if scaled else 1.0, mask=site["mask"])
    return reduce_to_chains(lp, site, num_particles, batch)


def reduce_to_chains(lp: torch.Tensor, site: dict, num_particles: int, batch: int) -> torch.Tensor:
    """Sum a tensor with a site's batch shape over all but the particle and data dims."""
    data_dim = data_frame(site).dim
    particle_dim = plate_dim(site, PARTICLE_PLATE)
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
    """How many plates deep the model and guide go, found by tracing them once.

    The trial run draws its random numbers from a forked generator, so it leaves the
    caller's random stream as it was.
    """
    cuda = [a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda][:1]
    with poutine.block(), torch.no_grad(), torch.random.fork_rng(devices=cuda):
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


def vectorize(fn: Callable, num_particles: int, plate_nesting: int) -> Callable:
    """Run ``fn`` under ``pyro.plate("particles", K)`` left of its own plates."""
    if num_particles == 1:
        return fn
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-(plate_nesting + 1))(fn)


def traces(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *args: Any,
    num_particles: int = 1,
    plate_nesting: int | None = None,
    **kwargs: Any,
):
    """The guide's trace and the model's trace replayed against it, K particles at once."""
    if num_particles > 1 and plate_nesting is None:
        plate_nesting = max_plate_nesting(model, guide, x, *args, **kwargs)
    model = vectorize(model, num_particles, plate_nesting or 0)
    guide = vectorize(guide, num_particles, plate_nesting or 0)
    guide_trace = poutine.trace(guide).get_trace(x, *args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        x, *args, **kwargs
    )
    return model_trace, guide_trace


def log_weights_of(
    model_trace, guide_trace, num_particles: int, x: torch.Tensor, scaled: bool = False
) -> LogWeights:
    """Reduce a model and a guide trace to per-particle, per-datapoint log densities."""
    batch = x.shape[0]
    zero = x.new_zeros(())
    terms = {"obs": zero, "latent": zero, "guide": zero}
    data_scale = 1.0
    reparameterized = True
    roles = (
        (model_trace, True, "obs"),
        (model_trace, False, "latent"),
        (guide_trace, False, "guide"),
    )
    for trace, observed, key in roles:
        for site in sample_sites(trace, observed):
            if key == "guide":
                reparameterized = reparameterized and bool(site["fn"].has_rsample)
            data_scale = _subsample_scale(data_frame(site))
            terms[key] = terms[key] + per_datapoint_log_prob(site, num_particles, batch, scaled)
    shape = (num_particles, batch)
    return LogWeights(
        *(t.expand(shape) for t in (terms["obs"], terms["latent"], terms["guide"])),
        data_scale=data_scale,
        reparameterized=reparameterized,
    )


def trace_log_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *args: Any,
    num_particles: int = 1,
    plate_nesting: int | None = None,
    scaled: bool = False,
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
    scaled
        Apply the sites' scales (from ``poutine.scale``, used for KL weighting) inside
        the log weights; the data plate's subsampling scale is reported separately as
        ``data_scale``.
    """
    model_trace, guide_trace = traces(
        model, guide, x, *args, num_particles=num_particles, plate_nesting=plate_nesting, **kwargs
    )
    return log_weights_of(model_trace, guide_trace, num_particles, x, scaled)


#: How many (datapoint, particle) pairs a pass holds on the CPU. Passes this small keep
#: their temporaries in cache and in reused heap memory, which measured about 1.7x
#: faster than one large pass for the MNIST VAE.
ROWS_PER_PASS = 4096
#: The same on a GPU, where larger passes keep the device busy.
ROWS_PER_PASS_CUDA = 1 << 17


#: Bytes per float number, times the temporaries that the log-densities and the
#: networks' activations need beside each number a site holds. A deliberately high
#: estimate, measured at 4 to 6 for the MNIST VAE (benchmarks/marginal_vs_pytorch.py).
BYTES_PER_NUMBER = 4 * 8

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_bytes(size: int | str) -> int:
    """``1000000``, ``"512MB"``, ``"1.5GiB"``, ... as a number of bytes."""
    if isinstance(size, int):
        value = size
    else:
        text = str(size).strip().lower().replace(" ", "")
        number = text.rstrip("kmgib")
        try:
            value = int(float(number) * _UNITS[text[len(number) :]])
        except (ValueError, KeyError):
            raise PyrovaeError(
                f"cannot read memory size {size!r}; write e.g. 512MB, 2GiB or a number of bytes"
            ) from None
    if value < 1:
        raise PyrovaeError(f"memory size must be positive, got {size!r}")
    return value


def _numbers(obj: Any, depth: int = 0) -> int:
    """How many numbers the tensors of a distribution (and its parts) hold."""
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if depth > 3 or not hasattr(obj, "__dict__"):
        return 0
    return sum(
        _numbers(v, depth + 1)
        for k, v in vars(obj).items()
        if isinstance(v, torch.Tensor | torch.distributions.Distribution)
        and not k.startswith("_")
        or k == "base_dist"
    )


def bytes_per_row(
    model: Callable, guide: Callable, x: torch.Tensor, args: tuple, kwargs: dict
) -> int:
    """Estimated memory of one (datapoint, particle) pair in a pass, from one probe trace."""
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        model_trace, guide_trace = traces(model, guide, x[:1], *args, **kwargs)
    numbers = sum(
        site["value"].numel() + _numbers(site["fn"])
        for trace in (model_trace, guide_trace)
        for site in sample_sites(trace)
    )
    return max(1, numbers) * BYTES_PER_NUMBER


def pass_shape(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    args: tuple,
    kwargs: dict,
    batch_size: int,
    chunk_size: int | None,
    memory_budget: int | str | None,
) -> tuple[int, int]:
    """Datapoints and particles per pass: the defaults, capped by the memory budget.

    A pass holds about :data:`ROWS_PER_PASS` (datapoint, particle) pairs on the CPU and
    :data:`ROWS_PER_PASS_CUDA` on a GPU, unless ``chunk_size`` says otherwise; a
    ``memory_budget`` caps the pairs per pass at what the budget holds, estimated from
    the numbers one pair's sites produce (:func:`bytes_per_row`).
    """
    rows = ROWS_PER_PASS_CUDA if data.is_cuda else ROWS_PER_PASS
    cap = None
    if memory_budget is not None:
        per_row = bytes_per_row(model, guide, data, args, kwargs)
        cap = max(1, parse_bytes(memory_budget) // per_row)
        rows = min(rows, cap)
    batch = min(batch_size, data.shape[0], rows if cap is not None else batch_size)
    chunk = chunk_size or max(1, rows // batch)
    if cap is not None:
        chunk = min(chunk, max(1, cap // batch))
    return batch, chunk


def chunks(n: int, size: int | None):
    """Slices covering ``range(n)`` in pieces of ``size`` (all at once for None)."""
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
    for sl in chunks(data.shape[0], batch_size):
        lw = trace_log_weights(model, guide, data[sl], *args, **kwargs)
        ll.append(lw.log_likelihood[0])
        kl.append(lw.kl[0])
    log_lik, kl_t = torch.cat(ll), torch.cat(kl)
    return ELBOTerms(log_lik - kl_t, log_lik, kl_t)


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
        log (1/K) sum_k p(x_i, z_k) / q(z_k | x_i).
    ess
        Effective sample size of the K importance weights, per datapoint.
    num_samples
        K: importance samples (or AIS chains) per datapoint.
    elbo
        Importance sampling only: the mean over the K samples of log w, per datapoint,
        i.e. the ELBO estimated with K draws.
    estimator
        ``"is"`` or ``"ais"``.
    """

    per_datapoint: torch.Tensor
    ess: torch.Tensor
    num_samples: int
    elbo: torch.Tensor | None = None
    estimator: str = "is"


def check_counts(data: torch.Tensor, **counts: int | None) -> None:
    """Raise unless every count is a positive integer (or None) and data are not empty."""
    for name, value in counts.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise PyrovaeError(f"{name} must be a positive integer, got {value}")
    if data.shape[0] == 0:
        raise PyrovaeError("cannot estimate log p(x) of an empty dataset")


def _log_weight_chunks(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    args: tuple,
    kwargs: dict,
    total: int,
    chunk_size: int,
    nesting: int,
):
    """Yield ``(k, B)`` tensors of log weights, ``total`` particles in all."""
    for ks in chunks(total, chunk_size):
        yield trace_log_weights(
            model,
            guide,
            x,
            *args,
            num_particles=ks.stop - ks.start,
            plate_nesting=nesting,
            **kwargs,
        ).log_weight


@torch.no_grad()
def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
    min_ess: float = 1.5,
    **kwargs: Any,
) -> MarginalLikelihood:
    """Estimate log p(x_i) for every datapoint by importance sampling from the guide.

    Parameters
    ----------
    model, guide
        Pyro programs called as ``model(x, *args, **kwargs)`` whose per-datapoint sites
        lie under ``pyro.plate("data", ...)``; they must broadcast over an extra leading
        particle dimension. Discrete latent sites are sampled, not enumerated.
    data
        Datapoints, batch dimension first (already binarised, if the model needs it).
    num_samples
        K, importance samples per datapoint.
    batch_size
        Datapoints per pass.
    chunk_size
        Particles per pass. Memory grows with ``batch_size * chunk_size``; the estimate
        does not depend on either. By default a pass holds about
        :data:`ROWS_PER_PASS` (datapoint, particle) pairs on the CPU, where small
        passes stay in cache, and :data:`ROWS_PER_PASS_CUDA` on a GPU.
    memory_budget
        Bytes (or a string such as ``"512MB"``) that one pass may use: the datapoints
        and particles per pass shrink to fit, whatever K and the dataset size.
    min_ess
        Warn when the median effective sample size is below this: the estimate then
        rests on one or two samples per datapoint and the guide is a poor proposal.

    Returns
    -------
    MarginalLikelihood
    """
    check_counts(data, num_samples=num_samples, batch_size=batch_size, chunk_size=chunk_size)
    batch_size, chunk_size = pass_shape(
        model, guide, data, args, kwargs, batch_size, chunk_size, memory_budget
    )
    nesting = max_plate_nesting(model, guide, data[:1], *args, **kwargs)
    lse1, lse2, mean_lw = [], [], []
    for sl in chunks(data.shape[0], batch_size):
        run1 = run2 = total = None
        for lw in _log_weight_chunks(
            model, guide, data[sl], args, kwargs, num_samples, chunk_size, nesting
        ):
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
        ess=torch.exp(2 * lse1_t - lse2_t),
        num_samples=num_samples,
        elbo=torch.cat(mean_lw),
    )
    median_ess = float(result.ess.median())
    if num_samples > 1 and median_ess < min_ess:
        warnings.warn(
            f"median effective sample size is {median_ess:.2f} of {num_samples} importance "
            "samples: the guide is a poor proposal and log p(x) may be underestimated; "
            "use more samples or the AIS estimator",
            stacklevel=3,  # the caller, beyond torch.no_grad's wrapper
        )
    return result


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


@torch.no_grad()
def iwae_bound(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    num_particles: int = 50,
    num_estimates: int = 1,
    batch_size: int = 100,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
    **kwargs: Any,
) -> Bound:
    """The importance-weighted bound L_k = E[log (1/k) sum_j w_j] per datapoint.

    L_1 is the ELBO, L_k grows with k and tends to log p(x) (Burda et al., 2016), so
    ``iwae_bound(k=1) <= iwae_bound(k) <= log p(x)`` can be reported side by side. Each
    datapoint's value is the mean of ``num_estimates`` independent k-sample estimates.

    Parameters are as for :func:`log_marginal_likelihood`; ``chunk_size`` counts
    particles per pass and is rounded to whole groups of k when k is smaller.
    """
    check_counts(
        data,
        num_particles=num_particles,
        num_estimates=num_estimates,
        batch_size=batch_size,
        chunk_size=chunk_size,
    )
    k, total = num_particles, num_particles * num_estimates
    batch_size, chunk = pass_shape(
        model, guide, data, args, kwargs, batch_size, chunk_size, memory_budget
    )
    nesting = max_plate_nesting(model, guide, data[:1], *args, **kwargs)
    out = []
    for sl in chunks(data.shape[0], batch_size):
        x = data[sl]
        acc = x.new_zeros(x.shape[0])  # sum over groups of logsumexp of the group
        if chunk >= k:  # whole groups of k in every pass
            for lw in _log_weight_chunks(
                model, guide, x, args, kwargs, total, chunk - chunk % k, nesting
            ):
                acc += lw.reshape(-1, k, lw.shape[-1]).logsumexp(1).sum(0)
        else:  # one group spans several passes
            for _ in range(num_estimates):
                group = [
                    lw.logsumexp(0)
                    for lw in _log_weight_chunks(model, guide, x, args, kwargs, k, chunk, nesting)
                ]
                acc += torch.stack(group).logsumexp(0)
        out.append(acc / num_estimates - math.log(k))
    return Bound(torch.cat(out), num_particles, num_estimates)
