"""Likelihoods p(x|z): modules that map the decoder's output to a distribution over x.

The decoder produces ``param_dim = channels * x_dim`` numbers per latent sample, laid out
channel-major (``channels`` blocks of ``x_dim``); a likelihood turns them into a Pyro
distribution with ``event_shape == (x_dim,)``. Parameters that belong to the likelihood
rather than to the decoder (a learned global noise scale, say) are ``nn.Parameter`` s of
the likelihood module and are trained with the rest of the VAE.

Each likelihood states the data it accepts in ``check_support``, which is called once on
the whole dataset before training, so that a mismatch is reported in one line instead of
surfacing as a NaN many steps later. Having checked the data once, the distributions are
built with ``validate_args=False``: Pyro's per-call argument checks would otherwise scan
every decoder output on every step.

How data are read (pyrovae's loaders give float32, 8-bit images divided by 255):

==========================  ==========================================================
``bernoulli``               binary pixels {0, 1}; grey levels must be binarised
``continuous-bernoulli``    grey levels in [0, 1], with the normalised density
``gaussian``, ``laplace``   any real values (grey levels in [0, 1] here); a density,
                            so its log-likelihood is not comparable with discrete ones
``discretized-logistic``    8-bit levels k/255, k = 0..255: a mixture of logistics
                            discretised to 256 bins, so NLL is in bits per dimension
``categorical``             8-bit levels k/255, one 256-way softmax per pixel
``poisson``,                non-negative integer counts (binarised images are counts
``negative-binomial``       of 0 and 1)
``student-t``               any real values, heavy-tailed (real tables)
``columns``                 a likelihood per group of columns (mixed tables)
==========================  ==========================================================

``default_binarize`` tells the command line which binarisation suits the data a
likelihood models.

``LIKELIHOODS`` is the registry: a name maps to a class constructed as
``cls(x_dim, **kwargs)``.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import nn

from pyrovae.errors import PyrovaeError

#: Number of 8-bit grey levels.
LEVELS = 256


class Likelihood(nn.Module):
    """Base class of likelihoods over an ``x_dim``-dimensional observation.

    Attributes
    ----------
    channels
        Decoder outputs per observed dimension.
    default_binarize
        The binarisation that matches the data this likelihood models.
    """

    channels: int = 1
    default_binarize: str = "none"

    def __init__(self, x_dim: int) -> None:
        super().__init__()
        self.x_dim = int(x_dim)

    @property
    def param_dim(self) -> int:
        """How many numbers per latent sample the decoder must produce."""
        return self.channels * self.x_dim

    def split(self, params: torch.Tensor) -> list[torch.Tensor]:
        """The decoder output as ``channels`` tensors of shape ``(..., x_dim)``."""
        return list(params.split(self.x_dim, dim=-1))

    def forward(self, params: torch.Tensor) -> dist.Distribution:  # pragma: no cover
        raise NotImplementedError

    def check_support(self, x: torch.Tensor) -> None:
        """Raise :class:`~pyrovae.errors.PyrovaeError` if ``x`` lies outside the support."""
        if not bool(torch.isfinite(x.detach()).all()):
            raise PyrovaeError("the data contain NaN or infinite values")


def _name(likelihood: Likelihood) -> str:
    for key, cls in LIKELIHOODS.items():
        if type(likelihood) is cls:
            return key
    return type(likelihood).__name__


def _range(x: torch.Tensor) -> str:
    return f"[{float(x.min()):g}, {float(x.max()):g}]"


def _check_unit_interval(likelihood: Likelihood, x: torch.Tensor) -> None:
    x = x.detach()
    Likelihood.check_support(likelihood, x)
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise PyrovaeError(
            f"the {_name(likelihood)} likelihood needs values in [0, 1] but the data range "
            f"over {_range(x)}; rescale them (8-bit images: divide by 255)"
        )


def _check_levels(likelihood: Likelihood, x: torch.Tensor) -> None:
    x = x.detach()
    _check_unit_interval(likelihood, x)
    scaled = x * (LEVELS - 1)
    if bool(((scaled - scaled.round()).abs() > 1e-3).any()):
        raise PyrovaeError(
            f"the {_name(likelihood)} likelihood needs 8-bit levels k/255 but the data hold "
            "other values (binarised? use --binarize none with 8-bit grey images)"
        )


def _check_counts(likelihood: Likelihood, x: torch.Tensor) -> None:
    x = x.detach()
    Likelihood.check_support(likelihood, x)
    if float(x.min()) < 0 or bool((x != x.round()).any()):
        raise PyrovaeError(
            f"the {_name(likelihood)} likelihood needs non-negative integer counts but the "
            f"data range over {_range(x)} with fractions; binarise grey levels "
            "(--binarize dynamic) or pass integer counts"
        )


# ----------------------------------------------------------------------- distributions
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
        levels = torch.arange(LEVELS, device=self.locs.device, dtype=self.locs.dtype)
        grid = (levels / (LEVELS - 1)).reshape(LEVELS, *([1] * (self.locs.dim() - 1)))
        grid = grid.expand(LEVELS, *self.batch_shape, self.event_shape[0])
        log_w = self.logits.log_softmax(-2)
        probs = (log_w + self._bin_log_probs(grid)).logsumexp(-2).exp()
        return (probs * grid).sum(0)


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


# ------------------------------------------------------------------------- likelihoods
class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder, for binary data.

    Grey levels are *not* in its support (a Bernoulli "density" on values in (0, 1) is
    not normalised): binarise them first (``binarize="dynamic"`` or ``"static"``).
    """

    default_binarize = "dynamic"

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        return IndependentBernoulli(params, validate_args=False)

    def check_support(self, x: torch.Tensor) -> None:
        x = x.detach()
        if not bool(((x == 0) | (x == 1)).all()):
            raise PyrovaeError(
                f"the bernoulli likelihood needs binary data (0 or 1) but the values range "
                f"over {_range(x)}; binarise grey levels in [0, 1] with "
                "binarize='dynamic' or 'static' (--binarize), or use a likelihood for grey "
                "levels such as continuous-bernoulli"
            )


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019) on grey levels in [0, 1].

    Unlike a Bernoulli evaluated at grey levels, its density is normalised on [0, 1].
    """

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        return dist.ContinuousBernoulli(logits=params, validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        _check_unit_interval(self, x)


def _positive_setting(module: nn.Module, name: str, mode: float | str, raw: torch.Tensor) -> int:
    """Register a positive setting of a likelihood, given as ``"decoder"``, ``"learned"``
    or a number: nothing (the decoder outputs it), ``raw_NAME`` (a parameter) or
    ``fixed_NAME`` (a buffer). Returns the decoder channels it takes (1 or 0)."""
    if mode == "decoder":
        return 1
    if mode == "learned":
        setattr(module, f"raw_{name}", nn.Parameter(raw))
        return 0
    try:
        fixed = float(mode)
    except (TypeError, ValueError):
        fixed = -1.0
    if not fixed > 0:
        raise PyrovaeError(
            f"{name} must be 'learned', 'decoder' or a positive number, got {mode!r}"
        )
    module.register_buffer(f"fixed_{name}", torch.tensor(fixed))
    return 0


def _positive_value(
    module: nn.Module, name: str, mode: float | str, part: list[torch.Tensor], floor: float
) -> torch.Tensor:
    """The value of a setting made by :func:`_positive_setting`: floor + softplus of the
    decoder's channel ``part[0]`` or of the learned parameter, or the fixed number."""
    if mode == "decoder":
        return F.softplus(part[0]) + floor
    if mode == "learned":
        return F.softplus(getattr(module, f"raw_{name}")) + floor
    return getattr(module, f"fixed_{name}")


class _LocationScale(Likelihood):
    """Shared by the Gaussian and Laplace likelihoods: a mean from the decoder, and a scale.

    Parameters
    ----------
    x_dim
        Observation size.
    scale
        ``"learned"`` (one global scale, trained with the VAE), ``"decoder"`` (a scale
        per pixel, output by the decoder), or a number (fixed).
    init_scale
        Starting value of a learned scale (default 0.1, for data in [0, 1]).
    """

    family: type[dist.Distribution] = dist.Normal

    def __init__(self, x_dim: int, scale: float | str = "learned", init_scale: float = 0.1):
        super().__init__(x_dim)
        self.scale_mode = scale
        raw = torch.tensor(math.log(math.expm1(init_scale)))
        self.channels += _positive_setting(self, "scale", scale, raw)

    def _scale(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return _positive_value(self, "scale", self.scale_mode, parts[1:2], floor=1e-3)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        parts = self.split(params)
        loc = parts[0]
        scale = self._scale(parts).expand_as(loc)
        return self.family(loc, scale, validate_args=False).to_event(1)


class Gaussian(_LocationScale):
    """Independent Gaussian pixels N(mean from the decoder, scale^2).

    ``scale`` is ``"learned"`` (default), ``"decoder"`` or a fixed number; see
    :class:`_LocationScale`.
    """

    family = dist.Normal


class Laplace(_LocationScale):
    """Independent Laplace pixels with location from the decoder.

    ``scale`` is ``"learned"`` (default), ``"decoder"`` or a fixed number; see
    :class:`_LocationScale`.
    """

    family = dist.Laplace


class DiscretizedLogistic(Likelihood):
    """A mixture of discretised logistics per pixel, for 8-bit data (PixelCNN++ style).

    The NLL is that of the 256-level data, so it converts to bits per dimension and is
    comparable with other models of 8-bit images.

    Parameters
    ----------
    x_dim
        Observation size.
    num_components
        Logistic components per pixel (default 5).
    """

    def __init__(self, x_dim: int, num_components: int = 5) -> None:
        super().__init__(x_dim)
        if num_components < 1:
            raise PyrovaeError(f"num_components must be positive, got {num_components}")
        self.num_components = int(num_components)
        self.channels = 3 * self.num_components

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        m = self.num_components
        p = params.reshape(*params.shape[:-1], 3, m, self.x_dim)
        locs = torch.tanh(p[..., 1, :, :])
        log_scales = p[..., 2, :, :].clamp(min=-7.0)
        return DiscretizedLogisticMixtureDist(p[..., 0, :, :], locs, log_scales)

    def check_support(self, x: torch.Tensor) -> None:
        _check_levels(self, x)


class Categorical(Likelihood):
    """A 256-way softmax per pixel over the 8-bit levels k/255."""

    channels = LEVELS

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        logits = params.reshape(*params.shape[:-1], LEVELS, self.x_dim).movedim(-2, -1)
        return QuantizedCategoricalDist(logits)

    def check_support(self, x: torch.Tensor) -> None:
        _check_levels(self, x)


class Poisson(Likelihood):
    """Independent Poisson counts with rate softplus(decoder output)."""

    default_binarize = "dynamic"

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        rate = F.softplus(params) + 1e-6
        return dist.Poisson(rate, validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        _check_counts(self, x)


class NegativeBinomial(Likelihood):
    """Independent negative-binomial counts: decoder gives logits and a total count."""

    channels = 2
    default_binarize = "dynamic"

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        logits, raw_count = self.split(params)
        total = F.softplus(raw_count) + 1e-3
        return dist.NegativeBinomial(total, logits=logits, validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        _check_counts(self, x)


class StudentT(_LocationScale):
    """Independent Student's t entries: heavy tails for real tables (the MIWAE choice).

    Parameters
    ----------
    x_dim
        Observation size.
    scale
        ``"decoder"`` (default: a scale per entry from the decoder), ``"learned"`` or a
        number; see :class:`_LocationScale`.
    init_scale
        Starting value of a learned scale.
    df
        Degrees of freedom: ``"decoder"`` (default: per entry, 3 + softplus of the
        decoder's output, so the variance stays finite, as Mattei & Frellsen 2019 do),
        ``"learned"`` (one per column) or a positive number.
    """

    family = dist.StudentT

    def __init__(
        self,
        x_dim: int,
        scale: float | str = "decoder",
        init_scale: float = 1.0,
        df: float | str = "decoder",
    ) -> None:
        super().__init__(x_dim, scale, init_scale)
        self.df_mode = df
        self.channels += _positive_setting(self, "df", df, torch.zeros(self.x_dim))

    def _df(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return _positive_value(self, "df", self.df_mode, parts[-1:], floor=3.0)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        parts = self.split(params)
        loc = parts[0]
        scale = self._scale(parts).expand_as(loc)
        df = self._df(parts).expand_as(loc)
        return dist.StudentT(df, loc, scale, validate_args=False).to_event(1)


def _columns(text: str, x_dim: int) -> list[int]:
    """``"0-9"``, ``"13"`` (0-based, inclusive) or ``"all"`` as a list of column indices."""
    if text.strip() == "all":
        return list(range(x_dim))
    first, _, last = text.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise PyrovaeError(f"cannot read columns {text!r}; write 3 or 0-9") from None
    if not 0 <= lo <= hi < x_dim:
        raise PyrovaeError(f"columns {text!r} lie outside 0-{x_dim - 1}")
    return list(range(lo, hi + 1))


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
        from pyrovae.missing import entry_log_prob

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


class Columns(Likelihood):
    """A likelihood per group of columns, for mixed tables.

    ``spec`` names each group's likelihood and its (0-based, inclusive) columns, e.g.
    ``"student-t:0-9,bernoulli:10-12,poisson:13"``; every column belongs to exactly one
    group (``all`` names every column). On the command line: ``--likelihood columns
    --likelihood-arg spec=student-t:0-9,bernoulli:10-12``.
    """

    def __init__(self, x_dim: int, spec: str = "student-t:all") -> None:
        super().__init__(x_dim)
        groups, seen = [], []
        for item in str(spec).split(","):
            name, sep, cols = item.strip().partition(":")
            if not sep or name not in LIKELIHOODS or name == "columns":
                raise PyrovaeError(
                    f"cannot read {item!r} in spec; write NAME:COLUMNS with NAME one of "
                    f"{', '.join(n for n in sorted(LIKELIHOODS) if n != 'columns')}"
                )
            columns = _columns(cols, self.x_dim)
            groups.append(LIKELIHOODS[name](len(columns)))
            seen += columns
        if sorted(seen) != list(range(self.x_dim)):
            raise PyrovaeError(
                f"spec {spec!r} must name every column 0-{self.x_dim - 1} exactly once"
            )
        self.groups = nn.ModuleList(groups)
        self.register_buffer("order", torch.argsort(torch.tensor(seen)))
        self.columns = [list(c) for c in _group_columns(seen, [g.x_dim for g in groups])]

    @property
    def param_dim(self) -> int:
        return sum(g.param_dim for g in self.groups)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        chunks = params.split([g.param_dim for g in self.groups], -1)
        return ColumnsDist([g(c) for g, c in zip(self.groups, chunks, strict=True)], self.order)

    def check_support(self, x: torch.Tensor) -> None:
        for group, columns in zip(self.groups, self.columns, strict=True):
            group.check_support(x[..., columns])


def _group_columns(seen: list[int], sizes: list[int]) -> list[list[int]]:
    out, start = [], 0
    for size in sizes:
        out.append(seen[start : start + size])
        start += size
    return out


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": Bernoulli,
    "continuous-bernoulli": ContinuousBernoulli,
    "gaussian": Gaussian,
    "laplace": Laplace,
    "discretized-logistic": DiscretizedLogistic,
    "categorical": Categorical,
    "poisson": Poisson,
    "negative-binomial": NegativeBinomial,
    "student-t": StudentT,
    "columns": Columns,
}
