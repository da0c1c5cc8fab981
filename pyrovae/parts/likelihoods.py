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
``autoregressive``          token sequences (SMILES, text): a GRU language model
                            conditioned on z, :mod:`pyrovae.parts.autoregressive`
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
from torch import nn

from pyrovae.data.sequences import BOS, EOS, PAD, UNK
from pyrovae.errors import Param, PyrovaeError
from pyrovae.parts.autoregressive import Autoregressive, RecurrentCore, after_end
from pyrovae.parts.distributions import (
    LEVELS,
    ColumnsDist,
    DiscretizedLogisticMixtureDist,
    IndependentBernoulli,
    QuantizedCategoricalDist,
)


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
    #: Whether it models token sequences (then the VAE gives it ``vocab_size``).
    models_sequences: bool = False

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
            "other values (binarised? use ",
            Param("binarize", "none"),
            " with 8-bit grey images)",
        )


def _check_counts(likelihood: Likelihood, x: torch.Tensor) -> None:
    x = x.detach()
    Likelihood.check_support(likelihood, x)
    if float(x.min()) < 0 or bool((x != x.round()).any()):
        raise PyrovaeError(
            f"the {_name(likelihood)} likelihood needs non-negative integer counts but the "
            f"data range over {_range(x)} with fractions; binarise grey levels (",
            Param("binarize", "dynamic"),
            ") or pass integer counts",
        )


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
                f"over {_range(x)}; binarise grey levels in [0, 1] with ",
                Param("binarize", "dynamic"),
                " or 'static', or use a likelihood for grey levels such as ",
                Param("likelihood", "continuous-bernoulli"),
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
            Param(name, within="likelihood_kwargs"),
            f" must be 'learned', 'decoder' or a positive number, got {mode!r}",
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
            raise PyrovaeError(
                Param("num_components", within="likelihood_kwargs"),
                f" must be positive, got {num_components}",
            )
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
            if not sep or name not in _COLUMN_LIKELIHOODS():
                raise PyrovaeError(
                    f"cannot read {item!r} in spec; write NAME:COLUMNS with NAME one of "
                    f"{', '.join(sorted(_COLUMN_LIKELIHOODS()))}"
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


def _COLUMN_LIKELIHOODS() -> set[str]:  # noqa: N802
    """The likelihoods a group of columns may have: those of vectors of entries."""
    return {n for n, c in LIKELIHOODS.items() if n != "columns" and not c.models_sequences}


def _group_columns(seen: list[int], sizes: list[int]) -> list[list[int]]:
    out, start = [], 0
    for size in sizes:
        out.append(seen[start : start + size])
        start += size
    return out


class AutoregressiveLikelihood(Likelihood):
    """Token sequences under a GRU language model conditioned on z (Bowman et al., 2016).

    The decoder's output is a context c of ``hidden_size`` numbers; the distribution is
    :class:`~pyrovae.parts.autoregressive.Autoregressive`: the GRU starts from a state
    computed from c and reads c beside every input token, so z can shape every step.
    ``x_dim`` is L, the padded length (EOS included).

    Parameters
    ----------
    x_dim
        L, the length sequences are padded to.
    vocab_size
        Tokens in the vocabulary; the VAE passes the dataset's.
    hidden_size, num_layers, embedding_dim
        Sizes of the decoding GRU and its token embedding.
    word_dropout
        Probability, while training, that a teacher-forced input token is replaced by
        UNK, so the decoder cannot predict from the prefix alone and must use z.
    temperature
        Temperature of ``sample`` (the likelihood itself is always at 1).
    """

    default_binarize = "none"
    models_sequences = True

    def __init__(
        self,
        x_dim: int,
        vocab_size: int | None = None,
        hidden_size: int = 256,
        num_layers: int = 1,
        embedding_dim: int = 64,
        word_dropout: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(x_dim)
        if vocab_size is None:
            raise PyrovaeError(
                "the autoregressive likelihood models token sequences: train on a "
                "sequence dataset (.smi, .txt or a CSV column of strings), or pass ",
                Param("vocab_size"),
            )
        if not 0 <= word_dropout < 1 or not temperature > 0:
            raise PyrovaeError(
                Param("word_dropout"),
                f" must lie in [0, 1) and temperature be positive; got {word_dropout}, "
                f"{temperature}",
            )
        self.word_dropout, self.temperature = float(word_dropout), float(temperature)
        self.core = RecurrentCore(
            vocab_size, x_dim, hidden_size, hidden_size, num_layers, embedding_dim
        )

    @property
    def param_dim(self) -> int:
        return self.core.context_dim

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        dropout = self.word_dropout if self.training else 0.0
        return Autoregressive(self.core, params.float(), self.temperature, dropout)

    def check_support(self, x: torch.Tensor) -> None:
        check_sequences(x, self.core.vocab_size)


def check_sequences(x: torch.Tensor, vocab_size: int) -> None:
    """Raise unless ``x`` holds token ids below ``vocab_size``, each row a sequence
    ended by EOS, PAD after it and nowhere before."""
    x = x.detach()
    if x.is_floating_point() and bool((x != x.round()).any()):
        raise PyrovaeError("the autoregressive likelihood needs token ids, not fractions")
    tokens = x.long()
    if bool(((tokens < 0) | (tokens >= vocab_size)).any()):
        raise PyrovaeError(
            f"token ids must lie in 0..{vocab_size - 1} (the vocabulary) but range over "
            f"{_range(x)}; encode the data with the run's vocabulary"
        )
    ended = (tokens == EOS).any(-1)
    never = (tokens == PAD) | (tokens == BOS) | (tokens == UNK)  # never emitted
    padded_early = (never & ~after_end(tokens)).any(-1)
    if not bool(ended.all()) or bool(padded_early.any()):
        row = int((~ended | padded_early).nonzero()[0, 0])
        raise PyrovaeError(
            f"sequence {row} is not one sequence ended by EOS and padded after it, with "
            "no special token before its end; encode the data with "
            "pyrovae.data.sequences.Vocabulary.encode"
        )


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
    "autoregressive": AutoregressiveLikelihood,
}
