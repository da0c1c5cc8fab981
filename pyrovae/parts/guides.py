"""Approximate posterior families q(z|x): modules that map encoder output to a distribution.

The encoder network produces ``param_dim`` numbers per datapoint; a guide family turns
them into a Pyro distribution over z with ``event_shape == (z_dim,)`` and the batch shape
of the encoder's output. Keeping the family apart from the network lets one swap a
diagonal Gaussian for a richer family without touching the encoder.

Each family also exposes :meth:`GuideFamily.gaussian`, the Gaussian part of q(z|x) (the
whole of it for the Gaussian families, the base of the flow for ``iaf``), which the
VampPrior mixes over its pseudo-inputs. A family may fix the prior it is made for
(:meth:`GuideFamily.implied_prior`: the ``vq`` family's codebook prior) and add terms to
the training loss (:meth:`GuideFamily.training_factors`: its codebook and commitment
terms), which the VAE's guide writes as ``pyro.factor`` sites in training only.

``GUIDES`` is the registry: a name maps to a class constructed as ``cls(z_dim, **kwargs)``.
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import transforms as T
from torch import nn

from pyrovae._util import lookup
from pyrovae.errors import Param, PyrovaeError
from pyrovae.parts.distributions import MIN_SCALE, diagonal_normal, nearest_codes
from pyrovae.parts.priors import CODE_PRIORS, Prior


class GuideFamily(nn.Module):
    """Base class: ``forward(params)`` returns q(z|x) given the encoder's output."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = int(z_dim)

    @property
    def param_dim(self) -> int:
        """How many numbers per datapoint the encoder must produce."""
        raise NotImplementedError

    def forward(self, params: torch.Tensor) -> dist.Distribution:  # pragma: no cover
        raise NotImplementedError

    def gaussian(self, params: torch.Tensor) -> dist.Distribution:
        """The Gaussian part of q(z|x); the whole distribution for Gaussian families."""
        return self(params)

    #: Whether :meth:`implied_prior` gives a prior (then ``--prior`` does not apply).
    brings_prior: bool = False

    def implied_prior(self, name: str | None = None, **kwargs: Any) -> Prior | None:
        """The prior p(z) this family is made for, if it fixes one (``vq``); else None.

        ``name`` picks among the priors the family can bring (``vq``: ``"codebook"``, the
        default, or ``"autoregressive"``), built with ``kwargs``.
        """
        return None

    def training_factors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """Terms added to the loss in training only, one value per datapoint, by name.

        The VAE's guide adds each as ``pyro.factor(name, value)``, which Pyro's ELBOs
        subtract from the ELBO; outside training (``eval()``) they are left out, so
        every estimate of log p(x) is the model's and the guide's alone.
        """
        return {}


class DiagonalNormal(GuideFamily):
    """Amortised diagonal Gaussian: the encoder outputs a mean and a softplus-scale."""

    @property
    def param_dim(self) -> int:
        return 2 * self.z_dim

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = params.split(self.z_dim, dim=-1)
        return diagonal_normal(loc, raw_scale)


class LowRankNormal(GuideFamily):
    """Gaussian with covariance W W^T + diag(d): low rank plus diagonal, all amortised.

    Parameters
    ----------
    z_dim
        Latent size.
    rank
        Columns of the factor W (default 5).
    """

    def __init__(self, z_dim: int, rank: int = 5) -> None:
        super().__init__(z_dim)
        if rank < 1:
            raise PyrovaeError(
                Param("rank", within="posterior_kwargs"), f" must be positive, got {rank}"
            )
        self.rank = int(rank)

    @property
    def param_dim(self) -> int:
        return self.z_dim * (2 + self.rank)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        z, r = self.z_dim, self.rank
        loc, factor, raw_diag = params.split([z, z * r, z], dim=-1)
        factor = factor.reshape(*factor.shape[:-1], z, r) / r**0.5
        diag = F.softplus(raw_diag) + MIN_SCALE**2
        return dist.LowRankMultivariateNormal(loc, factor, diag, validate_args=False)


class InverseAutoregressiveFlow(GuideFamily):
    """A diagonal Gaussian followed by inverse autoregressive flows (Kingma et al., 2016).

    The encoder outputs the Gaussian's mean and scale and a context vector h; each flow
    step is Pyro's ``ConditionalAffineAutoregressive`` conditioned on h, in the
    numerically stable gated form of the paper. Sampling and the density of the
    sampled z are one pass of each autoregressive network.

    Parameters
    ----------
    z_dim
        Latent size (at least 2).
    num_flows
        Number of IAF steps (default 2).
    context_dim
        Size of the context h (default ``z_dim``).
    hidden
        Hidden size of each autoregressive network (default ``4 * z_dim``).
    """

    def __init__(
        self,
        z_dim: int,
        num_flows: int = 2,
        context_dim: int | None = None,
        hidden: int | None = None,
    ) -> None:
        super().__init__(z_dim)
        if z_dim < 2:
            raise PyrovaeError("the iaf guide needs ", Param("z_dim"), " >= 2")
        self.context_dim = int(context_dim or z_dim)
        hidden = hidden or 4 * self.z_dim
        self.flows = nn.ModuleList(
            T.conditional_affine_autoregressive(
                self.z_dim, self.context_dim, hidden_dims=[hidden], stable=True
            )
            for _ in range(num_flows)
        )

    @property
    def param_dim(self) -> int:
        return 2 * self.z_dim + self.context_dim

    def gaussian(self, params: torch.Tensor) -> dist.Distribution:
        loc, raw_scale, _ = params.split([self.z_dim, self.z_dim, self.context_dim], dim=-1)
        return diagonal_normal(loc, raw_scale)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        context = params[..., 2 * self.z_dim :]
        flows = [flow.condition(context) for flow in self.flows]
        return dist.TransformedDistribution(self.gaussian(params), flows, validate_args=False)


class VectorQuantised(GuideFamily):
    """Vector quantisation (VQ-VAE, van den Oord et al., 2017) as a Pyro guide.

    The encoder's output z_e is cut into M = z_dim / D vectors of D numbers, and each is
    replaced by its nearest row e_k of a learnt codebook of K rows, so the latent is M
    discrete codes k_1..k_M. As a pair of Pyro distributions::

        p(z) = prod_m Uniform(k_m; K)             (pyrovae.parts.priors.Codebook, implied)
        q(z | x) = Delta(z = [e_k1, ..., e_kM]),   k_m = argmin_k ||z_e,m - e_k||

    so log q(z | x) = 0, log p(z) = -M log K, and the ELBO is
    log p(x | z_q) - M log K: an honest lower bound on log p(x) under this model (one
    term of the sum over all K^M codes), with KL = M log K whatever x is.

    Training follows the paper. The decoder's gradient reaches the encoder by the
    straight-through estimator (the value is exactly z_q, the gradient with respect
    to z_e is the identity), and two terms, :meth:`training_factors`, move the
    codebook and the encoder towards each other::

        codebook:   ||sg[z_e] - z_q||^2          commitment:  beta ||z_e - sg[z_q]||^2

    Parameters
    ----------
    z_dim
        Latent size M * D.
    codes
        K, the number of codebook rows (default 512).
    code_dim
        D, the size of each code; it must divide ``z_dim``. Default: the largest
        divisor of ``z_dim`` not above 10 (10 for the default ``z_dim`` of 50: five
        codes per datapoint).
    commitment
        beta of the commitment term (default 0.25, the paper's).
    """

    brings_prior = True

    def __init__(
        self,
        z_dim: int,
        codes: int = 512,
        code_dim: int | None = None,
        commitment: float = 0.25,
    ) -> None:
        super().__init__(z_dim)
        if code_dim is None:
            code_dim = max(d for d in range(1, min(self.z_dim, 10) + 1) if self.z_dim % d == 0)
        if codes < 2 or code_dim < 1 or self.z_dim % code_dim:
            raise PyrovaeError(
                f"the vq guide needs codes >= 2 and a code_dim that divides z_dim; got "
                f"codes={codes}, code_dim={code_dim}, z_dim={self.z_dim} (set ",
                Param("code_dim", within="posterior_kwargs"),
                " to a divisor of ",
                Param("z_dim"),
                ")",
            )
        if not commitment >= 0:
            raise PyrovaeError(
                Param("commitment", within="posterior_kwargs"),
                f" must be >= 0, got {commitment}",
            )
        self.codes, self.code_dim, self.commitment = int(codes), int(code_dim), float(commitment)
        # N(0, 1) rows start where the encoder's outputs are; the paper's U(-1/K, 1/K)
        # left most rows unused here (43 of 512 after 10 epochs on MNIST, against 460).
        self.codebook = nn.Parameter(torch.randn(codes, code_dim))

    @property
    def param_dim(self) -> int:
        return self.z_dim

    def _quantise(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_e and z_q, each ``(..., M, D)``."""
        z_e = params.reshape(*params.shape[:-1], -1, self.code_dim)
        return z_e, self.codebook[nearest_codes(z_e, self.codebook)]

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        z_e, z_q = self._quantise(params)
        # Exactly z_q in value (z_e - z_e is 0), the identity in gradient to z_e.
        value = z_q.detach() + (z_e - z_e.detach())
        return dist.Delta(value.reshape(params.shape), event_dim=1)

    def gaussian(self, params: torch.Tensor) -> dist.Distribution:
        raise PyrovaeError("the vq guide has no Gaussian part")

    def implied_prior(self, name: str | None = None, **kwargs: Any) -> Prior:
        cls = lookup(CODE_PRIORS, name or "codebook", "prior of the vq guide")
        num_codes = self.z_dim // self.code_dim
        return cls.over_codes(self.z_dim, self.codebook_rows, num_codes, self.codes, **kwargs)

    def codebook_rows(self) -> torch.Tensor:
        """The codebook, ``(K, D)``."""
        return self.codebook

    def training_factors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        z_e, z_q = self._quantise(params)
        return {
            "codebook": (z_e.detach() - z_q).pow(2).sum((-2, -1)),
            "commitment": self.commitment * (z_e - z_q.detach()).pow(2).sum((-2, -1)),
        }


GUIDES: dict[str, type[GuideFamily]] = {
    "diagonal": DiagonalNormal,
    "lowrank": LowRankNormal,
    "iaf": InverseAutoregressiveFlow,
    "vq": VectorQuantised,
}
