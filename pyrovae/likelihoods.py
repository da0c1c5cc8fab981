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

``LIKELIHOODS`` is the registry: a name maps to a class constructed as
``cls(x_dim, **kwargs)``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
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


class IndependentBernoulli(dist.Independent):
    """Independent Bernoulli pixels given by logits l, with a faster ``log_prob``.

    log p(x) = sum_d [x_d l_d - softplus(l_d)], summed as two reductions; this is the
    same density as ``Bernoulli(logits=l).to_event(1)`` (the tests check it) at about
    half the memory traffic of the elementwise binary cross-entropy, which dominates
    the cost of importance sampling with many particles.
    """

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None) -> None:
        base = dist.Bernoulli(logits=logits, validate_args=validate_args)
        super().__init__(base, 1, validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self.base_dist._validate_sample(value)
        logits = self.base_dist.logits
        return (logits * value).sum(-1) - F.softplus(logits).sum(-1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(IndependentBernoulli, _instance)
        return super().expand(batch_shape, _instance=new)


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder, for binary data.

    Grey levels are *not* in its support (a Bernoulli "density" on values in (0, 1) is
    not normalised): binarise them first (``binarize="dynamic"`` or ``"static"``).
    """

    def forward(self, params: torch.Tensor) -> dist.Distribution:
        return IndependentBernoulli(params, validate_args=False)

    def check_support(self, x: torch.Tensor) -> None:
        if not bool(((x == 0) | (x == 1)).all()):
            lo, hi = float(x.min()), float(x.max())
            raise PyrovaeError(
                f"the bernoulli likelihood needs binary data (0 or 1) but the values range "
                f"over [{lo:g}, {hi:g}]; binarise grey levels in [0, 1] with "
                "binarize='dynamic' or 'static' (--binarize)"
            )


LIKELIHOODS: dict[str, type[Likelihood]] = {"bernoulli": Bernoulli}
