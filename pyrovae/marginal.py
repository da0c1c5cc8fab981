"""Per-datapoint log weights, the ELBO and the importance-sampling estimate of log p(x).

For any model/guide pair whose per-datapoint sites lie under one plate over the B
datapoints of a minibatch (any name; :class:`Program` finds it), one pass with K
particles gives, for every particle k and datapoint i,

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

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask

from pyrovae.batches import Batch, Data, Indexable, as_data
from pyrovae.errors import PyrovaeError
from pyrovae.programs import (
    MAX_ENUMERATED,
    PARTICLE_PLATE,
    FixSites,
    enumerated_sites,
    evaluating,
    find_plate,
    sample_sites,
    value_combinations,
)

#: The plate name of pyrovae's own programs; a user's program may name its plate anything.
DATA_PLATE = "data"
#: The strategies for K particles per datapoint (see :class:`Program`).
STRATEGIES = ("auto", "vectorize", "replicate")
#: What to do with discrete guide sites marked for enumeration.
DISCRETE = ("auto", "enumerate", "sample")


@dataclass
class LogWeights:
    """Per-particle, per-datapoint log densities, each of shape ``(K, B)``.

    Attributes
    ----------
    log_likelihood
        Sum over observed model sites: log p(x_i | z_ki) (a ``pyro.factor`` in the model
        counts here, as do discrete sites pinned by enumeration).
    log_prior
        Sum over latent model sites: log p(z_ki).
    log_guide
        Sum over unobserved guide sites: log q(z_ki | x_i). Observed guide sites (a
        ``pyro.factor`` there is an auxiliary loss) are left out.
    data_scale
        ``full_size / size`` of a subsampled data plate (1 when not subsampled): how much
        one minibatch stands for.
    reparameterized
        Whether every guide site was drawn with ``rsample``, so that gradients of the log
        weights with respect to the guide's parameters are pathwise.
    log_pinned
        Sum over guide sites pinned to one value by enumeration: log q(y_i | ...), used
        for the enumerated ELBO (zero when nothing is pinned).
    """

    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_guide: torch.Tensor
    data_scale: float = 1.0
    reparameterized: bool = True
    log_pinned: torch.Tensor | float = 0.0

    @property
    def log_weight(self) -> torch.Tensor:
        """log p(x_i, z_ki) - log q(z_ki | x_i)."""
        return self.log_likelihood + self.log_prior - self.log_guide

    @property
    def kl(self) -> torch.Tensor:
        """Monte Carlo estimate of KL(q(z|x_i) || p(z)), one value per particle."""
        return self.log_guide - self.log_prior

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> LogWeights:
        """The same weights with ``fn`` applied to each ``(K, B)`` tensor."""
        pinned = self.log_pinned
        return LogWeights(
            fn(self.log_likelihood),
            fn(self.log_prior),
            fn(self.log_guide),
            self.data_scale,
            self.reparameterized,
            fn(pinned) if isinstance(pinned, torch.Tensor) else pinned,
        )


def data_frame(site: dict, plate: str = DATA_PLATE):
    """The site's frame of the per-datapoint plate; an error names a site outside it."""
    for frame in site["cond_indep_stack"]:
        if frame.name == plate:
            return frame
    raise PyrovaeError(
        f"sample site {site['name']!r} is not inside pyro.plate({plate!r}, ...); "
        "per-datapoint log densities need every sample site under the data plate"
    )


def plate_dim(site: dict, name: str) -> int | None:
    """The batch dimension of the site's plate called ``name``, or None."""
    for frame in site["cond_indep_stack"]:
        if frame.name == name:
            return frame.dim
    return None


def _subsample_scale(frame) -> float:
    full, size = frame.full_size, frame.size
    return full / size if full and size and full > 0 and size > 0 else 1.0


def latent_scale(site: dict, plate: str = DATA_PLATE) -> float | torch.Tensor:
    """A site's scale without the data plate's subsampling part: its KL weight, say."""
    return site["scale"] / _subsample_scale(data_frame(site, plate))


def per_datapoint_log_prob(
    site: dict, num_particles: int, batch: int, scaled: bool = False, plate: str = DATA_PLATE
) -> torch.Tensor:
    """The log-density of one site, reduced to shape ``(K, B)``.

    Unscaled by default (a pure density). With ``scaled`` the site's scale is applied,
    except the part that comes from subsampling the data plate, which belongs outside
    any per-datapoint nonlinearity (see :class:`LogWeights`).
    """
    lp = site["fn"].log_prob(site["value"])
    scale = latent_scale(site, plate) if scaled else 1.0
    lp = scale_and_mask(lp, scale=scale, mask=site["mask"])
    return reduce_to_chains(lp, site, num_particles, batch, plate)


def reduce_to_chains(
    lp: torch.Tensor, site: dict, num_particles: int, batch: int, plate: str = DATA_PLATE
) -> torch.Tensor:
    """Sum a tensor with a site's batch shape over all but the particle and data dims."""
    data_dim = data_frame(site, plate).dim
    particle_dim = plate_dim(site, PARTICLE_PLATE)
    keep = [data_dim] + ([particle_dim] if particle_dim is not None else [])
    ndim = max([lp.dim()] + [-d for d in keep])
    lp = lp.reshape((1,) * (ndim - lp.dim()) + tuple(lp.shape))
    other = [d for d in range(ndim) if d - ndim not in keep]
    if other:
        lp = lp.sum(other, keepdim=True)
    k = lp.shape[particle_dim] if particle_dim is not None else 1
    if lp.shape[data_dim] not in (1, batch) or k not in (1, num_particles):
        raise PyrovaeError(
            f"site {site['name']!r} has batch shape {tuple(lp.shape)}, which does not "
            f"hold {num_particles} particles of {batch} datapoints"
        )
    # The particle plate sits left of the data plate, so a reshape keeps the order.
    return lp.reshape(k, lp.shape[data_dim]).expand(num_particles, batch)


def max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """How many plates deep the model and guide go, found by tracing them once.

    The trial run draws its random numbers from a forked generator, so it leaves the
    caller's random stream as it was.
    """
    guide_trace, model_trace = _probe_traces(model, guide, args, kwargs)
    dims = [
        -frame.dim
        for trace in (guide_trace, model_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)


def _probe_traces(model: Callable, guide: Callable, args: tuple, kwargs: dict):
    """One guide trace and the model replayed on it, leaving the random stream as it was."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    cuda = [t.device for t in tensors if t.is_cuda][:1]
    with poutine.block(), torch.no_grad(), torch.random.fork_rng(devices=cuda):
        with evaluating(model, guide):  # a probe must not move BatchNorm's statistics
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
    return guide_trace, model_trace


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
    **kwargs: Any,
):
    """The guide's trace and the model's trace replayed against it, K particles at once."""
    if num_particles > 1 and plate_nesting is None:
        plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)
    model = vectorize(model, num_particles, plate_nesting or 0)
    guide = vectorize(guide, num_particles, plate_nesting or 0)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    return model_trace, guide_trace


def log_weights_of(
    model_trace,
    guide_trace,
    num_particles: int,
    batch: int | torch.Tensor,
    scaled: bool = False,
    plate: str = DATA_PLATE,
) -> LogWeights:
    """Reduce a model and a guide trace to per-particle, per-datapoint log densities.

    ``batch`` is the number of datapoints (or a tensor whose first axis counts them).
    """
    size = batch if isinstance(batch, int) else batch.shape[0]
    terms: dict[str, Any] = {"obs": 0.0, "latent": 0.0, "guide": 0.0, "pinned": 0.0}
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
            data_scale = _subsample_scale(data_frame(site, plate))
            lp = per_datapoint_log_prob(site, num_particles, size, scaled, plate)
            terms[key] = terms[key] + lp
    for site in sample_sites(guide_trace, observed=True):
        if site["infer"].get("_pinned"):
            terms["pinned"] = terms["pinned"] + per_datapoint_log_prob(
                site, num_particles, size, False, plate
            )
    ref = next((t for t in terms.values() if isinstance(t, torch.Tensor)), None)
    shape = (num_particles, size)

    def full(t: Any) -> torch.Tensor:
        if isinstance(t, torch.Tensor):
            return t.expand(shape)
        return torch.zeros(shape, device=ref.device if ref is not None else None)

    return LogWeights(
        full(terms["obs"]),
        full(terms["latent"]),
        full(terms["guide"]),
        data_scale=data_scale,
        reparameterized=reparameterized,
        log_pinned=full(terms["pinned"]),
    )


def trace_log_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_particles: int = 1,
    plate_nesting: int | None = None,
    scaled: bool = False,
    plate: str = DATA_PLATE,
    **kwargs: Any,
) -> LogWeights:
    """Run the guide and the model against it, K particles at once, for one minibatch.

    Parameters
    ----------
    model, guide
        Pyro programs called as ``model(*args, **kwargs)``; the first tensor argument
        counts the datapoints.
    num_particles
        K, the number of draws from the guide per datapoint. With K > 1 the model and
        guide run under an extra ``pyro.plate("particles", K)`` left of their own
        plates, so they must broadcast over a leading batch dimension, as
        ``Trace_ELBO(vectorize_particles=True)`` also requires (:class:`Program`
        replicates the datapoints instead for programs that do not).
    plate_nesting
        Depth of the program's plates (found by tracing once if not given).
    scaled
        Apply the sites' scales (from ``poutine.scale``, used for KL weighting) inside
        the log weights; the data plate's subsampling scale is reported separately as
        ``data_scale``.
    plate
        The name of the per-datapoint plate.
    """
    model_trace, guide_trace = traces(
        model, guide, *args, num_particles=num_particles, plate_nesting=plate_nesting, **kwargs
    )
    size = len(Batch(args, kwargs))
    return log_weights_of(model_trace, guide_trace, num_particles, size, scaled, plate)


class Program:
    """A model/guide pair made ready for per-datapoint estimates on some data.

    Traces the program once on a few datapoints to learn its plate nesting, the name of
    its per-datapoint plate (:func:`~pyrovae.programs.find_plate`) and its enumerated
    discrete sites, and then gives ``(C, K, B)`` log weights for any minibatch: C values
    of the enumerated sites (1 when none are enumerated), K particles, B datapoints.

    K particles run in one of two ways. ``"vectorize"``: under an extra outer
    ``pyro.plate("particles", K)``, which needs networks that broadcast over a leading
    dimension. ``"replicate"``: each datapoint repeated K times along the data plate,
    which any program allows (BatchNorm on 2-D input, boolean-mask indexing,
    ``view(-1, D)``). ``"auto"`` tries the first and falls back to the second, once,
    with a warning, when the program fails under the particle plate.

    Parameters
    ----------
    model, guide
        Pyro programs.
    data
        The data they will be evaluated on (for the probe trace).
    args, kwargs
        Extra arguments passed on every call, after the data's own.
    plate
        The per-datapoint plate's name, or None to find it.
    strategy
        ``"auto"``, ``"vectorize"`` or ``"replicate"``.
    discrete
        ``"auto"`` sums guide sites marked for enumeration exactly when their joint
        support has at most :data:`~pyrovae.programs.MAX_ENUMERATED` values, else
        samples them; ``"enumerate"`` always sums; ``"sample"`` always samples.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        data: Data,
        args: tuple = (),
        kwargs: dict | None = None,
        plate: str | None = None,
        strategy: str = "auto",
        discrete: str = "auto",
    ) -> None:
        if strategy not in STRATEGIES:
            raise PyrovaeError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        if discrete not in DISCRETE:
            raise PyrovaeError(f"unknown discrete {discrete!r}; choose one of {DISCRETE}")
        self.model, self.guide = model, guide
        self.args, self.kwargs = tuple(args), dict(kwargs or {})
        self.strategy = strategy
        probe = data.first_batch()
        call_args, call_kwargs = (*probe.args, *self.args), {**probe.kwargs, **self.kwargs}
        guide_trace, model_trace = _probe_traces(model, guide, call_args, call_kwargs)
        self.nesting = max_plate_nesting(model, guide, *call_args, **call_kwargs)
        self.plate = find_plate([guide_trace, model_trace], len(probe), plate)
        sizes = enumerated_sites(guide_trace)
        joint = math.prod(sizes.values())
        enumerate_them = discrete == "enumerate" or (
            discrete == "auto" and joint <= MAX_ENUMERATED
        )
        self.pinned: list[dict[str, int] | None] = (
            value_combinations(sizes) if sizes and enumerate_them else [None]
        )

    @property
    def num_values(self) -> int:
        """C: joint values of the enumerated sites summed over (1 when none)."""
        return len(self.pinned)

    def _programs(self, pinned: dict[str, int] | None) -> tuple[Callable, Callable]:
        if pinned is None:
            return self.model, self.guide
        fix = _Pin(pinned)
        return fix(self.model), fix(self.guide)

    def call(self, batch: Batch) -> tuple[tuple, dict]:
        """The positional and keyword arguments of one call on ``batch``."""
        return (*batch.args, *self.args), {**batch.kwargs, **self.kwargs}

    def particles(self, batch: Batch, k: int, run: Callable[[Batch, int], Any]) -> Any:
        """``run(batch, k)`` with K particles vectorised, or replicated along the plate.

        ``run`` returns ``(K, B)`` tensors (a tensor or :class:`LogWeights`); replicated,
        it runs once on K * B datapoints and its result is laid out as ``(K, B)`` again.
        """
        if self.strategy == "replicate" and k > 1:
            return self._replicated(batch, k, run)
        # A failed vectorised try may have drawn random numbers: the replicated run
        # starts from the same state, so its draws do not depend on which pass failed.
        state = _rng_state(batch) if self.strategy == "auto" and k > 1 else None
        try:
            return run(batch, k)
        except PyrovaeError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as err:
            if self.strategy == "vectorize" or k == 1:
                raise
            text = str(err).strip()
            first = text.splitlines()[0][:200] if text else type(err).__name__
            warnings.warn(
                f"the model or guide does not broadcast over a particle dimension ({first}); "
                "replicating each datapoint K times along its plate instead "
                "(strategy='replicate' says so up front)",
                stacklevel=caller_level(),
            )
            self.strategy = "replicate"
            if state is not None:
                _set_rng_state(state)
            return self._replicated(batch, k, run)

    @staticmethod
    def _replicated(batch: Batch, k: int, run: Callable[[Batch, int], Any]) -> Any:
        size = len(batch)
        out = run(batch.repeat_interleave(k), 1)

        def layout(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(size, k).T

        return out.map(layout) if isinstance(out, LogWeights) else layout(out)

    def log_weights(self, batch: Batch, k: int, pinned: dict[str, int] | None) -> LogWeights:
        """``(K, B)`` log weights of one minibatch with the enumerated sites at ``pinned``."""
        model, guide = self._programs(pinned)

        def run(b: Batch, particles: int) -> LogWeights:
            args, kwargs = self.call(b)
            return trace_log_weights(
                model,
                guide,
                *args,
                num_particles=particles,
                plate_nesting=self.nesting,
                plate=self.plate,
                **kwargs,
            )

        return self.particles(batch, k, run)

    def all_log_weights(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C, K, B)`` log weights and log q of the pinned sites, for every value."""
        parts = [self.log_weights(batch, k, pinned) for pinned in self.pinned]
        return (
            torch.stack([p.log_weight for p in parts]),
            torch.stack([torch.as_tensor(p.log_pinned).expand(k, len(batch)) for p in parts]),
        )


def caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside pyrovae and torch."""
    import inspect
    from pathlib import Path

    inside = (str(Path(__file__).parent), str(Path(torch.__file__).parent))
    for level, frame in enumerate(inspect.stack()[1:], start=1):
        if not frame.filename.startswith(inside) and "contextlib" not in frame.filename:
            return level
    return 1


class _Pin(FixSites):
    """:class:`~pyrovae.programs.FixSites` that marks the sites it pins."""

    def _pyro_sample(self, msg: dict) -> None:
        before = msg["is_observed"]
        super()._pyro_sample(msg)
        if msg["is_observed"] and not before:
            msg["infer"] = {**msg["infer"], "_pinned": True}


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


def bytes_per_row(model: Callable, guide: Callable, x: Any, args: tuple, kwargs: dict) -> int:
    """Estimated memory of one (datapoint, particle) pair in a pass, from one probe trace."""
    batch = x if isinstance(x, Batch) else Batch((x,))
    one = batch.index(slice(0, 1))
    with torch.no_grad(), torch.random.fork_rng(devices=_devices(one)), evaluating(model, guide):
        model_trace, guide_trace = traces(model, guide, *one.args, *args, **one.kwargs, **kwargs)
    numbers = sum(
        site["value"].numel() + _numbers(site["fn"])
        for trace in (model_trace, guide_trace)
        for site in sample_sites(trace)
    )
    return max(1, numbers) * BYTES_PER_NUMBER


def _devices(batch: Batch) -> list[torch.device]:
    return [t.device for t in batch.tensors() if t.is_cuda][:1]


def _rng_devices(batch: Batch) -> list[torch.device]:
    """The CUDA devices whose generators a pass on ``batch`` may draw from."""
    devices = _devices(batch)
    if not devices and torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = [torch.device("cuda", torch.cuda.current_device())]
    return devices


def _rng_state(batch: Batch) -> tuple[torch.Tensor, dict[torch.device, torch.Tensor]]:
    cuda = {d: torch.cuda.get_rng_state(d) for d in _rng_devices(batch)}
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, dict[torch.device, torch.Tensor]]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for device, value in cuda.items():
        torch.cuda.set_rng_state(value, device)


def pass_shape(
    model: Callable,
    guide: Callable,
    data: Any,
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
    the numbers one pair's sites produce (:func:`bytes_per_row`). ``data`` is a tensor
    or a :class:`~pyrovae.batches.Batch` of the data (or of a representative part).
    """
    batch = data if isinstance(data, Batch) else Batch((data,))
    rows = ROWS_PER_PASS_CUDA if batch.first.is_cuda else ROWS_PER_PASS
    cap = None
    if memory_budget is not None:
        per_row = bytes_per_row(model, guide, batch, args, kwargs)
        cap = max(1, parse_bytes(memory_budget) // per_row)
        rows = min(rows, cap)
    batch_size = min(batch_size, len(batch), rows if cap is not None else batch_size)
    chunk = chunk_size or max(1, rows // batch_size)
    if cap is not None:
        chunk = min(chunk, max(1, cap // batch_size))
    return batch_size, chunk


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
    data: Any,
    *args: Any,
    batch_size: int = 1000,
    plate: str | None = None,
    **kwargs: Any,
) -> ELBOTerms:
    """One-sample ELBO = E_q[log p(x|z)] - KL(q || p) for each datapoint of ``data``.

    ``data`` takes every form of :mod:`pyrovae.batches`; the networks that own model and
    guide run in ``eval()`` mode. Discrete guide sites are sampled, so the terms are
    one-sample estimates for them too.
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


def check_counts(data: Any, **counts: int | None) -> None:
    """Raise unless every count is a positive integer (or None)."""
    for name, value in counts.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise PyrovaeError(f"{name} must be a positive integer, got {value}")


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
            stacklevel=4,  # the caller, beyond torch.no_grad's wrapper
        )


def _prepare(model, guide, data, args, kwargs, batch_size, chunk_size, memory_budget, **options):
    """Data, program and pass shape shared by the estimators."""
    data = as_data(data)
    program = Program(model, guide, data, args, kwargs, **options)
    sized = data.batch if isinstance(data, Indexable) else data.first_batch()
    batch_size, chunk = pass_shape(
        model, guide, sized, args, kwargs, batch_size, chunk_size, memory_budget
    )
    return data, program, batch_size, chunk  # each enumerated value runs its own passes


# ------------------------------------------------------------- passes and processes
def processes(distributed: bool | None = None) -> tuple[int, int]:
    """(rank, number) of the processes that share an estimator's passes.

    ``None`` shares them among the processes of the ``torch.distributed`` process group
    when one is initialised (as ``torchrun`` launches do), ``True`` insists on a group
    and ``False`` keeps every pass in this process: ``(0, 1)``.
    """
    from pyrovae.training.distributed import world

    if distributed is False:
        return 0, 1
    group = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and not group:
        raise PyrovaeError(
            "distributed=True needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group, or a launch by torchrun)"
        )
    return world()


@contextlib.contextmanager
def _seeded(seed: int, devices: list[torch.device]) -> Iterator[None]:
    """Draw from generators seeded with ``seed``; the caller's state is restored after."""
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for device in devices:
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _collective_device(device: torch.device | None):
    """NCCL sends objects from the current CUDA device: make it the results' device."""
    nccl = torch.distributed.get_backend() == "nccl"
    if nccl and device is not None and device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _gather(
    mine: list[tuple[int, tuple[torch.Tensor, ...]]], device: torch.device | None
) -> list[tuple[torch.Tensor, ...]]:
    """Every process's ``(pass index, results)``, in the order of the passes."""
    local = [(i, tuple(t.detach().cpu() for t in ts)) for i, ts in mine]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    with _collective_device(device):
        torch.distributed.all_gather_object(gathered, local)
    merged = sorted((item for part in gathered for item in part), key=lambda item: item[0])
    return [tuple(t.to(device) for t in ts) for _, ts in merged]


def per_pass(
    data: Data,
    batch_size: int,
    run: Callable[[Batch], tuple[torch.Tensor, ...]],
    distributed: bool | None = None,
) -> tuple[torch.Tensor, ...]:
    """``run`` on every pass of ``batch_size`` datapoints, each result concatenated in order.

    ``run`` returns a tuple of per-datapoint tensors, shape ``(B, ...)``.

    Random numbers: pass 0 draws from the caller's random stream as it stands (so data
    that fit in one pass get what they always got, the draws of a training loss from
    the same seed included), and pass i > 0 from generators seeded with ``base + i``,
    where ``base`` is read from the caller's stream without moving it on. A pass's
    numbers thus depend on the seed and its index only, neither on the passes before
    it nor on the process that runs it: ``pyro.set_rng_seed`` before the call fixes
    them all. In a process group, the stream is rank 0's (which runs pass 0 and sends
    ``base`` to the others).

    Processes: in a process group (see :func:`processes`) of P processes, process r
    runs passes r, r + P, r + 2P, ... (the passes are the same whatever P), and every
    process returns every datapoint's values, gathered in order: what one process gives.
    """
    rank, size = processes(distributed)
    with torch.random.fork_rng(devices=[]):
        base = int(torch.randint(0, 2**62, ()))
    device: torch.device | None = None
    mine: list[tuple[int, tuple[torch.Tensor, ...]]] = []
    for i, batch in enumerate(data.passes(batch_size)):
        if i == 0:  # every process sees pass 0
            device = batch.first.device
            if size > 1:
                box = [base]
                with _collective_device(device):
                    torch.distributed.broadcast_object_list(box, src=0)
                base = box[0]
        if i % size != rank:
            continue
        if i == 0:
            out = tuple(run(batch))
        else:
            with _seeded(base + i, _rng_devices(batch)):
                out = tuple(run(batch))
        device = out[0].device if out else device
        mine.append((i, out))
    parts = _gather(mine, device) if size > 1 else [out for _, out in mine]
    return tuple(torch.cat(ts) for ts in zip(*parts, strict=True))


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
        Datapoints in any form of :mod:`pyrovae.batches`: a tensor, a tuple or dict of
        tensors (``model(*batch)``, ``model(**batch)``), a Dataset or an iterable of
        batches (already binarised, if the model needs it).
    num_samples
        K, importance samples per datapoint (per value of the enumerated sites).
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
    plate
        Name of the per-datapoint plate (found when None: the outermost plate whose
        size is the minibatch's).
    strategy
        How K particles run: ``"vectorize"`` (an extra outer plate), ``"replicate"``
        (each datapoint K times along the data plate) or ``"auto"`` (see
        :class:`Program`). The estimate does not depend on it.
    discrete
        Guide sites marked for enumeration: ``"auto"``, ``"enumerate"`` or ``"sample"``
        (see :class:`Program`). Summing them exactly gives
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
    (:func:`per_pass`), so ``pyro.set_rng_seed`` before the call fixes every value,
    however many processes share the work. ``batch_size`` (and ``memory_budget``, which
    may shrink it) changes which numbers each datapoint gets, not what they estimate.
    """
    check_counts(data, num_samples=num_samples, batch_size=batch_size, chunk_size=chunk_size)
    with evaluating(model, guide):
        data, program, batch_size, chunk = _prepare(
            model,
            guide,
            data,
            args,
            kwargs,
            batch_size,
            chunk_size,
            memory_budget,
            plate=plate,
            strategy=strategy,
            discrete=discrete,
        )

        def run(batch: Batch) -> tuple[torch.Tensor, ...]:
            running = _Running()
            for ks in chunks(num_samples, chunk):
                running.add(*program.all_log_weights(batch, ks.stop - ks.start))
            return running.lse1, running.lse2, running.elbo / num_samples

        lse1, lse2, elbo = per_pass(data, batch_size, run, distributed)
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
        data,
        num_particles=num_particles,
        num_estimates=num_estimates,
        batch_size=batch_size,
        chunk_size=chunk_size,
    )
    k, total = num_particles, num_particles * num_estimates
    with evaluating(model, guide):
        data, program, batch_size, chunk = _prepare(
            model,
            guide,
            data,
            args,
            kwargs,
            batch_size,
            chunk_size,
            memory_budget,
            plate=plate,
            strategy=strategy,
            discrete=discrete,
        )

        def run(batch: Batch) -> tuple[torch.Tensor]:
            acc: Any = 0.0  # sum over groups of the group's logsumexp
            if chunk >= k:  # whole groups of k in every pass
                for ks in chunks(total, chunk - chunk % k):
                    lw, _ = program.all_log_weights(batch, ks.stop - ks.start)
                    groups = lw.reshape(lw.shape[0], -1, k, lw.shape[-1])
                    acc = acc + groups.logsumexp((0, 2)).sum(0)
            else:  # one group spans several passes
                for _ in range(num_estimates):
                    parts = [
                        program.all_log_weights(batch, ks.stop - ks.start)[0].logsumexp((0, 1))
                        for ks in chunks(k, chunk)
                    ]
                    acc = acc + torch.stack(parts).logsumexp(0)
            return (acc / num_estimates - math.log(k),)

        (bound,) = per_pass(data, batch_size, run, distributed)
    return Bound(bound, num_particles, num_estimates)
