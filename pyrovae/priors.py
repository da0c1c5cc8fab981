"""Priors p(z): modules whose call returns a Pyro distribution over z.

A prior's ``forward()`` takes no data and returns a distribution with
``event_shape == (z_dim,)`` and an empty batch shape; the model's ``pyro.plate("data")``
broadcasts it over the minibatch. Learnable priors keep their parameters as ordinary
``nn.Parameter`` s of the module, so they are registered with Pyro together with the
rest of the VAE and the optimiser sees them.

Every prior is told about the encoder once, through :meth:`Prior.attach`; the VampPrior
uses it, the others ignore it. No prior needs to know which other parts it is paired
with.

``PRIORS`` is the registry: a name maps to a class constructed as ``cls(z_dim, **kwargs)``.
:class:`Codebook`, uniform over a vector quantiser's codebook, is not in it: the ``vq``
guide family brings it (:meth:`pyrovae.guides.GuideFamily.implied_prior`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions import transforms as T
from pyro.distributions.torch_distribution import TorchDistribution
from torch import nn

from pyrovae.errors import PyrovaeError

#: Smallest prior standard deviation, as in the guide families.
MIN_SCALE = 1e-4

Encode = Callable[[torch.Tensor], dist.Distribution]


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


class Prior(nn.Module):
    """Base class of priors over a ``z_dim``-dimensional latent vector."""

    #: Whether the prior is made of the encoder's posterior (see :meth:`attach`): it then
    #: lives in the space of the latent the encoder gives, sees inputs without a label,
    #: and so applies neither to a conditional VAE nor to a hierarchical one's top layer.
    reads_encoder: bool = False

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = int(z_dim)

    def attach(self, encode: Encode, x_dim: int) -> None:
        """Hear of the VAE's encoder: ``encode(x)`` returns the Gaussian q(z|x).

        Called once by :class:`~pyrovae.VAE`; priors that do not depend on the encoder
        ignore it.
        """

    def forward(self) -> dist.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError


class StandardNormal(Prior):
    """The standard normal prior N(0, I), with nothing to learn."""

    def __init__(self, z_dim: int) -> None:
        super().__init__(z_dim)
        # Buffers, not constants: they follow the module to its device and dtype.
        self.register_buffer("loc", torch.zeros(self.z_dim))
        self.register_buffer("scale", torch.ones(self.z_dim))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale, validate_args=False).to_event(1)


class DiagonalNormal(Prior):
    """N(mu, diag(sigma^2)) with learnable mu and sigma, starting at N(0, I)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__(z_dim)
        self.loc = nn.Parameter(torch.zeros(self.z_dim))
        self.raw_scale = nn.Parameter(torch.full((self.z_dim,), _inv_softplus(1.0)))

    def forward(self) -> dist.Distribution:
        scale = F.softplus(self.raw_scale) + MIN_SCALE
        return dist.Normal(self.loc, scale, validate_args=False).to_event(1)


def _mixture(logits: torch.Tensor, components: dist.Distribution) -> dist.Distribution:
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits, validate_args=False), components, validate_args=False
    )


class MixtureOfGaussians(Prior):
    """A mixture of diagonal Gaussians with learnable weights, means and scales.

    Parameters
    ----------
    z_dim
        Latent size.
    num_components
        Number of mixture components (default 10).
    spread
        Standard deviation of the initial component means around 0.
    """

    def __init__(self, z_dim: int, num_components: int = 10, spread: float = 1.0) -> None:
        super().__init__(z_dim)
        if num_components < 1:
            raise PyrovaeError(f"num_components must be positive, got {num_components}")
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.locs = nn.Parameter(spread * torch.randn(num_components, self.z_dim))
        self.raw_scales = nn.Parameter(
            torch.full((num_components, self.z_dim), _inv_softplus(1.0))
        )

    def forward(self) -> dist.Distribution:
        scales = F.softplus(self.raw_scales) + MIN_SCALE
        components = dist.Normal(self.locs, scales, validate_args=False).to_event(1)
        return _mixture(self.logits, components)


class VampPrior(Prior):
    """The VampPrior (Tomczak & Welling, 2018): p(z) = (1/C) sum_c q(z | u_c).

    A uniform mixture of the encoder's posteriors at C learnable pseudo-inputs u_c, kept
    in [0, 1] like the data. For guide families with a flow on top of a Gaussian the
    components are the Gaussians before the flow (what ``encode`` returns), which keeps
    the prior's density cheap to evaluate.

    Parameters
    ----------
    z_dim
        Latent size.
    num_components
        Number of pseudo-inputs C (default 100; the paper uses 500).
    """

    reads_encoder = True

    def __init__(self, z_dim: int, num_components: int = 100) -> None:
        super().__init__(z_dim)
        if num_components < 1:
            raise PyrovaeError(f"num_components must be positive, got {num_components}")
        self.num_components = int(num_components)
        self.pseudo_inputs: nn.Parameter | None = None
        self._encode: Encode | None = None

    def attach(self, encode: Encode, x_dim: int) -> None:
        # A plain attribute holding a function, not a submodule: the encoder belongs
        # to the VAE and is registered there once.
        self._encode = encode
        init = 0.05 + 0.01 * torch.randn(self.num_components, x_dim)
        self.pseudo_inputs = nn.Parameter(init)

    def forward(self) -> dist.Distribution:
        if self._encode is None or self.pseudo_inputs is None:
            raise PyrovaeError("the vamp prior needs an encoder: use it inside pyrovae.VAE")
        components = self._encode(self.pseudo_inputs.clamp(0.0, 1.0))
        return _mixture(self.pseudo_inputs.new_zeros(self.num_components), components)


class Flow(Prior):
    """A normalising flow over N(0, I): affine coupling layers (RealNVP) with reversals.

    Built from ``pyro.distributions.transforms.AffineCoupling``, whose forward and
    inverse are both one network pass, so the prior's density (needed every step) and
    its samples (needed for generation) are equally cheap.

    Parameters
    ----------
    z_dim
        Latent size (at least 2).
    num_layers
        Number of coupling layers (default 4).
    hidden
        Hidden size of each coupling network (default ``4 * z_dim``).
    """

    def __init__(self, z_dim: int, num_layers: int = 4, hidden: int | None = None) -> None:
        super().__init__(z_dim)
        if z_dim < 2:
            raise PyrovaeError("the flow prior needs z_dim >= 2 (a coupling splits z in two)")
        hidden = hidden or 4 * self.z_dim
        self.layers = nn.ModuleList(
            T.affine_coupling(self.z_dim, hidden_dims=[hidden]) for _ in range(num_layers)
        )
        for layer in self.layers:  # start at the identity, so the prior starts at N(0, I)
            nn.init.zeros_(layer.nn.layers[-1].weight)
            nn.init.zeros_(layer.nn.layers[-1].bias)
        self.register_buffer("loc", torch.zeros(self.z_dim))
        self.register_buffer("scale", torch.ones(self.z_dim))
        self.register_buffer("reverse", torch.arange(self.z_dim - 1, -1, -1))

    def forward(self) -> dist.Distribution:
        base = dist.Normal(self.loc, self.scale, validate_args=False).to_event(1)
        transforms: list = []
        for layer in self.layers:
            transforms += [layer, T.Permute(self.reverse)]
        return dist.TransformedDistribution(base, transforms, validate_args=False)


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


class Codebook(Prior):
    """The prior of a vector-quantised latent: z is M codes, each uniform over K rows.

    Not chosen by name: the ``vq`` guide family (:class:`pyrovae.guides.VectorQuantised`)
    brings it, over its own codebook, as van den Oord et al. (2017) train a VQ-VAE.
    Every code costs log K nats of KL, whatever x is.

    Parameters
    ----------
    z_dim
        Latent size ``M * D``.
    codebook
        A function that returns the current codebook ``(K, D)`` (a plain attribute,
        not a submodule: the codebook belongs to the guide family).
    """

    #: The prior's name in a run's config.json.
    name = "codebook"

    def __init__(self, z_dim: int, codebook: Callable[[], torch.Tensor]) -> None:
        super().__init__(z_dim)
        self._codebook = codebook

    def forward(self) -> dist.Distribution:
        # No argument checks in the training step, as for the other priors: the guide's
        # values are codebook rows by construction, and the check costs a host sync.
        return UniformCodes(self._codebook(), self.z_dim, validate_args=False)


PRIORS: dict[str, type[Prior]] = {
    "standard": StandardNormal,
    "diagonal": DiagonalNormal,
    "mog": MixtureOfGaussians,
    "vamp": VampPrior,
    "flow": Flow,
}
