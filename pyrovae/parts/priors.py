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
guide family brings it (:meth:`pyrovae.parts.guides.GuideFamily.implied_prior`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions import transforms as T
from torch import nn

from pyrovae.data.sequences import EOS, SPECIALS
from pyrovae.errors import Param, PyrovaeError
from pyrovae.parts.autoregressive import Autoregressive, RecurrentCore
from pyrovae.parts.distributions import (
    CodeSequence,
    UniformCodes,
    diagonal_normal,
    inv_softplus,
    mixture,
)

Encode = Callable[[torch.Tensor], dist.Distribution]


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


class LearnedNormal(Prior):
    """N(mu, diag(sigma^2)) with learnable mu and sigma, starting at N(0, I).

    Registered as ``"diagonal"``; called ``DiagonalNormal`` before 0.2, a name it shared
    with the guide family :class:`pyrovae.parts.guides.DiagonalNormal`.
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__(z_dim)
        self.loc = nn.Parameter(torch.zeros(self.z_dim))
        self.raw_scale = nn.Parameter(torch.full((self.z_dim,), inv_softplus(1.0)))

    def forward(self) -> dist.Distribution:
        return diagonal_normal(self.loc, self.raw_scale)


def _check_components(num_components: int) -> None:
    if num_components < 1:
        raise PyrovaeError(
            Param("num_components", within="prior_kwargs"),
            f" must be positive, got {num_components}",
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
        _check_components(num_components)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.locs = nn.Parameter(spread * torch.randn(num_components, self.z_dim))
        self.raw_scales = nn.Parameter(torch.full((num_components, self.z_dim), inv_softplus(1.0)))

    def forward(self) -> dist.Distribution:
        return mixture(self.logits, diagonal_normal(self.locs, self.raw_scales))


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
        _check_components(num_components)
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
        return mixture(self.pseudo_inputs.new_zeros(self.num_components), components)


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
            raise PyrovaeError(
                "the flow prior needs ", Param("z_dim"), " >= 2 (a coupling splits z in two)"
            )
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


class Codebook(Prior):
    """The prior of a vector-quantised latent: z is M codes, each uniform over K rows.

    Not chosen by name: the ``vq`` guide family (:class:`pyrovae.parts.guides.VectorQuantised`)
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

    @classmethod
    def over_codes(
        cls,
        z_dim: int,
        codebook: Callable[[], torch.Tensor],
        num_codes: int,
        codes: int,
        **kwargs: Any,
    ) -> Codebook:
        """The prior over a vq guide family's codes (:data:`CODE_PRIORS`); it has no
        settings, so ``kwargs`` (``prior_kwargs``) must be empty."""
        if kwargs:
            raise PyrovaeError(
                "the vq guide's codebook prior takes no ",
                Param("prior_kwargs"),
                "; leave them out, or choose ",
                Param("prior", "autoregressive"),
            )
        return cls(z_dim, codebook)

    def forward(self) -> dist.Distribution:
        # No argument checks in the training step, as for the other priors: the guide's
        # values are codebook rows by construction, and the check costs a host sync.
        return UniformCodes(self._codebook(), self.z_dim, validate_args=False)


class AutoregressiveCodes(Prior):
    """A learned prior over a vector-quantised latent: a GRU over its M code indices.

    p(k_1..k_M) = prod_m p(k_m | k_<m), the autoregressive distribution of
    :mod:`pyrovae.parts.autoregressive` with no context, over tokens that are the codes.
    Trained with the rest of the VAE (its log p(z) is in the ELBO), it learns which codes
    go together, so samples decode to data rather than noise and the bound pays
    -log p(k) instead of M log K.

    Parameters
    ----------
    z_dim
        Latent size ``M * D``.
    codebook
        A function that returns the current codebook ``(K, D)``.
    num_codes
        M, the codes per datapoint.
    hidden_size, embedding_dim
        Sizes of the GRU and its code embedding.
    """

    name = "autoregressive"

    def __init__(
        self,
        z_dim: int,
        codebook: Callable[[], torch.Tensor],
        num_codes: int,
        codes: int,
        hidden_size: int = 128,
        embedding_dim: int = 32,
    ) -> None:
        super().__init__(z_dim)
        self._codebook = codebook
        vocab = len(SPECIALS) + int(codes)
        self.core = RecurrentCore(
            vocab, num_codes + 1, 0, hidden_size, 1, embedding_dim, exact_length=True
        )
        self.register_buffer("context", torch.zeros(0))

    @classmethod
    def over_codes(
        cls,
        z_dim: int,
        codebook: Callable[[], torch.Tensor],
        num_codes: int,
        codes: int,
        **kwargs: Any,
    ) -> AutoregressiveCodes:
        """The prior over a vq guide family's M codes of K (:data:`CODE_PRIORS`)."""
        return cls(z_dim, codebook, num_codes, codes, **kwargs)

    def forward(self) -> dist.Distribution:
        indices = Autoregressive(self.core, self.context)
        return CodeSequence(self._codebook(), indices, len(SPECIALS), EOS)


#: The priors the ``vq`` guide family can bring over its codes, by name (``prior``); each
#: is built by ``over_codes(z_dim, codebook, num_codes, codes, **prior_kwargs)``.
CODE_PRIORS: dict[str, type[Prior]] = {
    "codebook": Codebook,
    "autoregressive": AutoregressiveCodes,
}


PRIORS: dict[str, type[Prior]] = {
    "standard": StandardNormal,
    "diagonal": LearnedNormal,
    "mog": MixtureOfGaussians,
    "vamp": VampPrior,
    "flow": Flow,
}
