"""Priors p(z): modules whose call returns a Pyro distribution over z.

A prior's ``forward()`` takes no data and returns a distribution with
``event_shape == (z_dim,)`` and an empty batch shape; the model's ``pyro.plate("data")``
broadcasts it over the minibatch. Learnable priors keep their parameters as ordinary
``nn.Parameter`` s of the module, so they are registered with Pyro together with the
rest of the VAE and the optimiser sees them.

``PRIORS`` is the registry: a name maps to a class constructed as ``cls(z_dim, **kwargs)``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn


class Prior(nn.Module):
    """Base class of priors over a ``z_dim``-dimensional latent vector."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = int(z_dim)

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


PRIORS: dict[str, type[Prior]] = {"standard": StandardNormal}
