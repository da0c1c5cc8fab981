"""Approximate posterior families q(z|x): modules that map encoder output to a distribution.

The encoder network produces ``param_dim`` numbers per datapoint; a guide family turns
them into a Pyro distribution over z with ``event_shape == (z_dim,)`` and the batch shape
of the encoder's output. Keeping the family apart from the network lets one swap a
diagonal Gaussian for a richer family without touching the encoder.

Each family also exposes :meth:`GuideFamily.gaussian`, the Gaussian part of q(z|x) (the
whole of it for the Gaussian families, the base of the flow for ``iaf``), which the
VampPrior mixes over its pseudo-inputs.

``GUIDES`` is the registry: a name maps to a class constructed as ``cls(z_dim, **kwargs)``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import transforms as T
from torch import nn

from pyrovae.errors import PyrovaeError

#: Smallest posterior standard deviation; keeps log q(z|x) finite early in training.
MIN_SCALE = 1e-4


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


def _diagonal(loc: torch.Tensor, raw_scale: torch.Tensor) -> dist.Distribution:
    # The scale is positive by construction, so Pyro's argument checks are skipped.
    scale = F.softplus(raw_scale) + MIN_SCALE
    return dist.Normal(loc, scale, validate_args=False).to_event(1)


class DiagonalNormal(GuideFamily):
    """Amortised diagonal Gaussian: the encoder outputs a mean and a softplus-scale."""

    @property
    def param_dim(self) -> int:
        return 2 * self.z_dim

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = params.split(self.z_dim, dim=-1)
        return _diagonal(loc, raw_scale)


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
            raise PyrovaeError(f"rank must be positive, got {rank}")
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
            raise PyrovaeError("the iaf guide needs z_dim >= 2")
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
        return _diagonal(loc, raw_scale)

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        context = params[..., 2 * self.z_dim :]
        flows = [flow.condition(context) for flow in self.flows]
        return dist.TransformedDistribution(self.gaussian(params), flows, validate_args=False)


GUIDES: dict[str, type[GuideFamily]] = {
    "diagonal": DiagonalNormal,
    "lowrank": LowRankNormal,
    "iaf": InverseAutoregressiveFlow,
}
