"""The torch distributions that pyrovae's parts build, and helpers shared by the parts.

Each is a ``pyro.distributions`` object with ``batch_shape`` and ``event_shape``,
``log_prob`` and ``sample``, so Pyro's inference handles it like any other:

* pixels and entries: :class:`IndependentBernoulli` (a faster Bernoulli over pixels),
  :class:`DiscretizedLogisticMixtureDist` and :class:`QuantizedCategoricalDist` (8-bit
  levels), :class:`ColumnsDist` (a likelihood per group of columns),
  :class:`ObservedEntries` (the observed entries of x only);
* codes: :class:`UniformCodes`, uniform over vectors made of codebook rows (VQ-VAE);
* helpers: :func:`diagonal_normal` and :func:`mixture`, the softplus-scaled diagonal
  Gaussian and the mixture every part builds the same way; :func:`mean_of`, a
  distribution's mean, or the average of draws where it has none in closed form;
  :func:`entry_log_prob`, log p(x_d | z) for every entry.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.distributions.util import broadcast_shape

from pyrovae.errors import PyrovaeError

#: Number of 8-bit grey levels.
LEVELS = 256
#: Smallest standard deviation of every softplus-scaled Gaussian: keeps log q and log p
#: finite early in training.
MIN_SCALE = 1e-4


def inv_softplus(y: float) -> float:
    """The x with softplus(x) = y: the raw value a softplus-scaled setting starts from."""
    return math.log(math.expm1(y))


def diagonal_normal(loc: torch.Tensor, raw_scale: torch.Tensor) -> dist.Distribution:
    """N(loc, diag(softplus(raw_scale) + MIN_SCALE)^2) over the last axis.

    The scale is positive by construction, so Pyro's argument checks are skipped.
    """
    scale = F.softplus(raw_scale) + MIN_SCALE
    return dist.Normal(loc, scale, validate_args=False).to_event(1)


def mixture(logits: torch.Tensor, components: dist.Distribution) -> dist.Distribution:
    """sum_c softmax(logits)_c components_c, the components along the last batch axis."""
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits, validate_args=False), components, validate_args=False
    )


def mean_of(fn: dist.Distribution, num_samples: int = 32) -> torch.Tensor:
    """The mean of ``fn``, or the average of ``num_samples`` draws where it has none (a flow)."""
    try:
        return fn.mean
    except NotImplementedError:
        return fn.sample((num_samples,)).mean(0)


def entry_log_prob(px: Any, x: torch.Tensor) -> torch.Tensor:
    """log p(x_d | z) for every entry d, for likelihoods that factorise over entries."""
    if hasattr(px, "pixel_log_prob"):
        return px.pixel_log_prob(x)
    if hasattr(px, "base_dist") and getattr(px, "reinterpreted_batch_ndims", 0) == 1:
        return px.base_dist.log_prob(x)
    raise PyrovaeError(
        f"missing values need a likelihood that factorises over entries; {type(px).__name__} "
        "does not say how (give it a pixel_log_prob method)"
    )


class ObservedEntries(TorchDistribution):
    """A likelihood over x that scores the observed entries only.

    Parameters
    ----------
    base
        The likelihood p(x | z), factorising over the last axis.
    mask
        True (or 1) where an entry is observed; broadcasts against the base's shape.
    """

    arg_constraints: dict = {}

    def __init__(self, base: Any, mask: torch.Tensor) -> None:
        self.base, self.mask = base, mask
        batch_shape = broadcast_shape(tuple(base.batch_shape), tuple(mask.shape[:-1]))
        super().__init__(torch.Size(batch_shape), base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (entry_log_prob(self.base, value) * self.mask).sum(-1)

    def sample(self, sample_shape: tuple = ()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    def expand(self, batch_shape, _instance=None):
        return ObservedEntries(self.base.expand(batch_shape), self.mask)


class IndependentBernoulli(dist.Independent):
    """Independent Bernoulli pixels given by logits l, with a faster ``log_prob``.

    log p(x) = sum_d [x_d l_d - softplus(l_d)], the same density as
    ``Bernoulli(logits=l).to_event(1)`` (the tests check it). Without gradients it is
    summed as two reductions, at about half the memory traffic of the elementwise binary
    cross-entropy, which dominates the cost of importance sampling with many particles;
    with gradients (training) torch's fused binary cross-entropy is used, whose backward
    pass is one kernel instead of four.
    """

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None) -> None:
        base = dist.Bernoulli(logits=logits, validate_args=validate_args)
        super().__init__(base, 1, validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self.base_dist._validate_sample(value)
        logits = self.base_dist.logits
        if logits.requires_grad and torch.is_grad_enabled():
            logits, value = torch.broadcast_tensors(logits, value.to(logits.dtype))
            return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)
        return (logits * value).sum(-1) - F.softplus(logits).sum(-1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(IndependentBernoulli, _instance)
        return super().expand(batch_shape, _instance=new)


class _PixelDistribution(dist.TorchDistribution):
    """Base for distributions over images of 8-bit levels k/255, one event of x_dim."""

    arg_constraints: dict = {}
    support = constraints.unit_interval

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        for name in self._params:
            value = getattr(self, name)
            extra = value.dim() - len(self.batch_shape)
            setattr(new, name, value.expand(batch_shape + value.shape[len(value.shape) - extra :]))
        dist.TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        return new


class DiscretizedLogisticMixtureDist(_PixelDistribution):
    """A mixture of M logistics per pixel, discretised to the 256 levels k/255.

    As in PixelCNN++ (Salimans et al., 2017): the data are mapped to [-1, 1], each level
    gets the logistic mass of its bin of width 2/255, and the two end levels get the
    tails. ``logits``, ``locs`` and ``log_scales`` have shape ``batch + (M, D)``.
    """

    _params = ("logits", "locs", "log_scales")

    def __init__(self, logits: torch.Tensor, locs: torch.Tensor, log_scales: torch.Tensor):
        self.logits, self.locs, self.log_scales = logits, locs, log_scales
        super().__init__(logits.shape[:-2], logits.shape[-1:], validate_args=False)

    def _bin_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log P(level of x) under each component, shape ``batch + (M, D)``."""
        x = (2 * x - 1).unsqueeze(-2)
        half = 1.0 / (LEVELS - 1)
        inv_s = torch.exp(-self.log_scales)
        centered = x - self.locs
        plus = inv_s * (centered + half)
        minus = inv_s * (centered - half)
        log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus), for level 0
        log_sf_minus = -F.softplus(minus)  # log(1 - sigmoid(minus)), for level 255
        delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_s * centered
        log_pdf_mid = mid - self.log_scales - 2 * F.softplus(mid) + math.log(2 * half)
        log_delta = torch.where(delta > 1e-5, delta.clamp(min=1e-12).log(), log_pdf_mid)
        return torch.where(
            x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_sf_minus, log_delta)
        )

    def pixel_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(x_d) for every pixel d."""
        log_w = self.logits.log_softmax(-2)
        return (log_w + self._bin_log_probs(value)).logsumexp(-2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.pixel_log_prob(value).sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        shape = self._extended_shape(sample_shape)
        m = dist.Categorical(logits=self.logits.movedim(-2, -1)).sample(sample_shape)
        loc = self.locs.expand(*sample_shape, *self.locs.shape).gather(-2, m.unsqueeze(-2))
        log_s = self.log_scales.expand(*sample_shape, *self.log_scales.shape)
        log_s = log_s.gather(-2, m.unsqueeze(-2))
        u = torch.rand(shape, device=loc.device).clamp(1e-5, 1 - 1e-5)
        y = (loc.squeeze(-2) + log_s.squeeze(-2).exp() * (u.log() - (-u).log1p())).clamp(-1, 1)
        return torch.round((y + 1) / 2 * (LEVELS - 1)) / (LEVELS - 1)

    @property
    def mean(self) -> torch.Tensor:
        """E[x] = 1 - (1/255) sum_{j<255} P(x <= j/255), the levels' sum by parts.

        Each P(x <= j/255) is the mixture's logistic CDF at the level's upper edge, the
        same bin masses :meth:`log_prob` uses; levels go in chunks, to bound memory.
        """
        w = self.logits.softmax(-2)
        inv_s = torch.exp(-self.log_scales)
        below = torch.zeros_like(self.locs[..., 0, :])
        edges = torch.arange(LEVELS - 1, device=self.locs.device, dtype=self.locs.dtype)
        edges = (2 * edges + 1) / (LEVELS - 1) - 1  # upper edges of levels 0..254 in [-1, 1]
        for chunk in edges.split(32):
            upper = chunk.reshape(-1, *([1] * self.locs.dim()))
            below = below + (w * torch.sigmoid((upper - self.locs) * inv_s)).sum((0, -2))
        return 1 - below / (LEVELS - 1)


class QuantizedCategoricalDist(_PixelDistribution):
    """One 256-way categorical per pixel over the levels k/255; ``logits``: batch + (D, 256)."""

    _params = ("logits",)

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        super().__init__(logits.shape[:-2], logits.shape[-2:-1], validate_args=False)

    def pixel_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(x_d) for every pixel d."""
        level = (value * (LEVELS - 1)).round().long().unsqueeze(-1)
        log_p = self.logits.log_softmax(-1)
        level = level.expand(*log_p.shape[:-1], 1)
        return log_p.gather(-1, level).squeeze(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.pixel_log_prob(value).sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        level = dist.Categorical(logits=self.logits).sample(sample_shape)
        return level.to(self.logits.dtype) / (LEVELS - 1)

    @property
    def mean(self) -> torch.Tensor:
        levels = torch.arange(LEVELS, device=self.logits.device, dtype=self.logits.dtype)
        return (self.logits.softmax(-1) * levels).sum(-1) / (LEVELS - 1)


class ColumnsDist(dist.TorchDistribution):
    """Independent groups of columns, each with its own likelihood, as one distribution."""

    arg_constraints: dict = {}

    def __init__(self, parts: list[dist.Distribution], order: torch.Tensor) -> None:
        self.parts, self.order = parts, order
        batch = torch.broadcast_shapes(*[p.batch_shape for p in parts])
        super().__init__(batch, torch.Size([len(order)]), validate_args=False)

    def _join(self, values: list[torch.Tensor]) -> torch.Tensor:
        shape = torch.broadcast_shapes(*[v.shape[:-1] for v in values])
        joined = torch.cat([v.expand(*shape, v.shape[-1]) for v in values], -1)
        return joined[..., self.order.to(joined.device)]

    def _split(self, value: torch.Tensor) -> list[torch.Tensor]:
        sizes = [p.event_shape[0] for p in self.parts]
        ordered = value[..., torch.argsort(self.order).to(value.device)]
        return list(ordered.split(sizes, -1))

    def pixel_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self._join(
            [entry_log_prob(p, v) for p, v in zip(self.parts, self._split(value), strict=True)]
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.pixel_log_prob(value).sum(-1)

    def sample(self, sample_shape: tuple = ()) -> torch.Tensor:
        return self._join([p.sample(sample_shape) for p in self.parts])

    @property
    def mean(self) -> torch.Tensor:
        return self._join([p.mean for p in self.parts])

    def expand(self, batch_shape, _instance=None):
        return ColumnsDist([p.expand(batch_shape) for p in self.parts], self.order)


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the codebook row nearest to each D-vector of ``z`` ``(..., M, D)``: ``(..., M)``.

    Squared distances through one matrix product, computed in float32 even under
    autocast, so that the choice does not depend on the training precision.
    """
    with torch.autocast(z.device.type, enabled=False):
        z, codebook = z.float(), codebook.float()
        cross = z @ codebook.T  # (..., M, K)
        return ((codebook * codebook).sum(-1) - 2 * cross).argmin(-1)


class _CodebookPoints(constraints.Constraint):
    """Vectors of M codes, each code a row of ``codebook`` exactly: a discrete set."""

    is_discrete = True
    event_dim = 1

    def __init__(self, codebook: torch.Tensor) -> None:
        super().__init__()
        self.codebook = codebook

    def check(self, value: torch.Tensor) -> torch.Tensor:
        codes = value.reshape(*value.shape[:-1], -1, self.codebook.shape[-1])
        on = (self.codebook[nearest_codes(codes, self.codebook)] == codes).all(-1)
        if not bool(on.all()):  # two rows closer than rounding: compare with every row
            on[~on] = (codes[~on].unsqueeze(-2) == self.codebook).all(-1).any(-1)
        return on.all(-1)


class CodeSequence(TorchDistribution):
    """M codebook rows chosen in turn by an autoregressive model of their indices.

    A distribution over vectors of ``M * D`` numbers (the codes end to end), like
    :class:`UniformCodes`, but the indices k_1..k_M have the probability
    ``indices.log_prob`` gives (a distribution over token sequences of M + 1 positions,
    code k being token ``k + offset`` and EOS closing it): the VQ-VAE's learned prior
    (van den Oord et al., 2017, fit a PixelCNN over the codes after training; here it is
    a Pyro prior trained with the rest).

    Parameters
    ----------
    codebook
        ``(K, D)``.
    indices
        A distribution over token sequences with ``event_shape == (M + 1,)`` and
        ``sample``/``log_prob`` (:class:`~pyrovae.parts.autoregressive.Autoregressive`).
    offset
        Token id of code 0.
    eos
        The token that ends every sequence of codes.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(
        self, codebook: torch.Tensor, indices: TorchDistribution, offset: int, eos: int
    ) -> None:
        self.codebook, self.indices, self.offset, self.eos = codebook, indices, offset, eos
        self.num_codes = indices.event_shape[0] - 1
        z_dim = self.num_codes * codebook.shape[-1]
        super().__init__(indices.batch_shape, torch.Size((z_dim,)), validate_args=False)

    def expand(self, batch_shape: torch.Size | tuple, _instance=None) -> CodeSequence:
        return CodeSequence(self.codebook, self.indices.expand(batch_shape), self.offset, self.eos)

    def tokens(self, value: torch.Tensor) -> torch.Tensor:
        """The token sequence of code vectors ``(..., M * D)``: ``(..., M + 1)``."""
        rows = value.reshape(*value.shape[:-1], self.num_codes, self.codebook.shape[-1])
        k = nearest_codes(rows, self.codebook.detach()) + self.offset
        return torch.cat([k, torch.full_like(k[..., :1], self.eos)], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.indices.log_prob(self.tokens(value))

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        k = self.indices.sample(sample_shape)[..., :-1] - self.offset
        return self.codebook.detach()[k].reshape(*k.shape[:-1], -1)


class UniformCodes(TorchDistribution):
    """M codes drawn independently and uniformly from the K rows of a codebook.

    A distribution over vectors of ``M * D`` numbers (the codes laid end to end) whose
    support is the K^M points made of codebook rows; its density with respect to
    counting measure there is K^-M, so ``log_prob`` is ``-M log K`` at every such point
    (and, with argument validation on, an error anywhere else).

    Parameters
    ----------
    codebook
        ``(K, D)``.
    z_dim
        ``M * D``.
    """

    arg_constraints: dict = {}

    def __init__(
        self,
        codebook: torch.Tensor,
        z_dim: int,
        batch_shape: torch.Size | tuple = (),
        validate_args: bool | None = None,
    ) -> None:
        self.codebook = codebook
        self.num_codes = z_dim // codebook.shape[-1]
        super().__init__(torch.Size(batch_shape), torch.Size((z_dim,)), validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self) -> constraints.Constraint:
        return _CodebookPoints(self.codebook)

    def expand(self, batch_shape: torch.Size | tuple, _instance=None) -> UniformCodes:
        new = self._get_checked_instance(UniformCodes, _instance)
        new.codebook, new.num_codes = self.codebook, self.num_codes
        super(UniformCodes, new).__init__(torch.Size(batch_shape), self.event_shape, False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + (self.num_codes,)
        k = torch.randint(len(self.codebook), shape, device=self.codebook.device)
        return self.codebook.detach()[k].reshape(*shape[:-1], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return value.new_full(shape, -self.num_codes * math.log(len(self.codebook)))
