"""Approximate posterior families q(z|x): modules that map encoder output to a distribution.

The encoder network produces ``param_dim`` numbers per datapoint; a guide family turns
them into a Pyro distribution over z with ``event_shape == (z_dim,)`` and the batch shape
of the encoder's output. Keeping the family apart from the network lets one swap a
diagonal Gaussian for a richer family without touching the encoder.

``GUIDES`` is the registry: a name maps to a class constructed as ``cls(z_dim, **kwargs)``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

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


class DiagonalNormal(GuideFamily):
    """Amortised diagonal Gaussian: the encoder outputs a mean and a softplus-scale."""

    @property
    def param_dim(self) -> int:
        return 2 * self.z_dim

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = params.split(self.z_dim, dim=-1)
        # The scale is positive by construction, so Pyro's argument checks are skipped.
        scale = F.softplus(raw_scale) + MIN_SCALE
        return dist.Normal(loc, scale, validate_args=False).to_event(1)


GUIDES: dict[str, type[GuideFamily]] = {"diagonal": DiagonalNormal}
