"""Likelihoods p(x|z): modules that map the decoder's output to a distribution over x.

The decoder produces ``param_dim = channels * x_dim`` numbers per latent sample, laid out
channel-major (``channels`` blocks of ``x_dim``); a likelihood turns them into a Pyro
distribution with ``event_shape == (x_dim,)``. Parameters that belong to the likelihood
rather than to the decoder (a learned global noise scale, say) are ``nn.Parameter`` s of
the likelihood module and are trained with the rest of the VAE.

Each likelihood states the data it accepts in ``check_support``, which is called once on
the whole dataset before training, so that a mismatch is reported in one line instead of
surfacing as a NaN many steps later.

``LIKELIHOODS`` is the registry: a name maps to a class constructed as
``cls(x_dim, **kwargs)``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.errors import PyrovaeError


class Likelihood(nn.Module):
    """Base class of likelihoods over an ``x_dim``-dimensional observation.

    Attributes
    ----------
    channels
        Decoder outputs per observed dimension.
    """

    channels: int = 1

    def __init__(self, x_dim: int) -> None:
        super().__init__()
        self.x_dim = int(x_dim)

    @property
    def param_dim(self) -> int:
        """How many numbers per latent sample the decoder must produce."""
        return self.channels * self.x_dim

    def forward(self, params: torch.Tensor) -> dist.Distribution:  # pragma: no cover
        raise NotImplementedError

    def check_support(self, x: torch.Tensor) -> None:
        """Raise :class:`~pyrovae.errors.PyrovaeError` if ``x`` lies outside the support."""


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder, for binary data.

    Grey levels are *not* in its support (a Bernoulli "density" on values in (0, 1) is
    not normalised): binarise them first (``binarize="dynamic"`` or ``"static"``).
    """

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=params).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        if not bool(((x == 0) | (x == 1)).all()):
            lo, hi = float(x.min()), float(x.max())
            raise PyrovaeError(
                f"the bernoulli likelihood needs binary data (0 or 1) but the values range "
                f"over [{lo:g}, {hi:g}]; binarise grey levels in [0, 1] with "
                "binarize='dynamic' or 'static' (--binarize)"
            )


LIKELIHOODS: dict[str, type[Likelihood]] = {"bernoulli": Bernoulli}
