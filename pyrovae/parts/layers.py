"""Stochastic layers of a hierarchical VAE (Burda et al., 2016): small conditional Gaussians.

A :class:`GaussianLayer` maps a latent vector (or any input) of shape ``(..., in_dim)``
to a diagonal Gaussian over ``out_dim`` units whose mean and softplus-scale come from a
one-hidden-layer MLP::

    h = MLP(input);  loc, raw_scale = split(h);  N(loc, diag((softplus(raw_scale) + 1e-4)^2))

:class:`~pyrovae.models.vae.VAE` uses them between stochastic layers: p(z_l | z_{l+1}) in the model
(top-down) and q(z_{l+1} | z_l) in the guide (bottom-up). Like the networks in
:mod:`pyrovae.parts.nets`, they hold no Pyro state; the VAE registers their parameters.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.parts.distributions import diagonal_normal
from pyrovae.parts.nets import MLP


class GaussianLayer(nn.Module):
    """A conditional diagonal Gaussian ``N(mu(h), diag(sigma(h)^2))`` over ``out_dim`` units.

    Parameters
    ----------
    in_dim, out_dim
        Sizes of the conditioning input and of the Gaussian's event.
    hidden
        Width of the MLP's one hidden layer.
    activation
        Nonlinearity of the MLP (a key of ``nets.ACTIVATIONS``).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int, activation: str = "relu") -> None:
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.net = MLP(self.in_dim, 2 * self.out_dim, (int(hidden),), activation)

    def forward(self, h: torch.Tensor) -> dist.Distribution:
        """The Gaussian given ``h`` of shape ``(..., in_dim)``: batch ``h.shape[:-1]``.

        The network's output is cast back to the dtype of ``h``, as in the VAE's
        ``encode``/``decode`` (under autocast the MLP runs in half precision).
        """
        loc, raw_scale = self.net(h).to(h.dtype).split(self.out_dim, dim=-1)
        return diagonal_normal(loc, raw_scale)
