"""The reference: the same VAE written in plain PyTorch, without Pyro.

Same architecture and parametrisation as ``pyrovae.VAE`` with its defaults (MLP encoder
x -> hidden -> (loc, softplus scale + 1e-4), MLP decoder z -> reversed hidden -> Bernoulli
logits, ReLU), the same one-sample Monte Carlo ELBO as ``Trace_ELBO``, and Adam with
torch's defaults. Nothing here imports pyrovae or Pyro: it is an independent
implementation that the benchmarks measure pyrovae against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)
MIN_SCALE = 1e-4


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def _normal_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


class PlainVAE(nn.Module):
    """A Bernoulli VAE with a diagonal Gaussian encoder and a N(0, I) prior."""

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: Sequence[int] = (400,)):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = _mlp([x_dim, *hidden, 2 * z_dim])
        self.decoder = _mlp([z_dim, *reversed(hidden), x_dim])

    def log_weights(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x), shape ``(num_samples, batch)``."""
        loc, raw = self.encoder(x).split(self.z_dim, -1)
        scale = F.softplus(raw) + MIN_SCALE
        eps = torch.randn((num_samples, *loc.shape), device=x.device, dtype=x.dtype)
        z = loc + scale * eps
        logits = self.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_pz = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
        log_qz = _normal_log_prob(z, loc, scale)
        return log_px + log_pz - log_qz

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Minus the one-sample ELBO, summed over the minibatch (as Trace_ELBO's loss)."""
        return -self.log_weights(x, 1).sum()

    @torch.no_grad()
    def log_marginal_likelihood(
        self, x: torch.Tensor, num_samples: int, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Importance-sampling estimate of log p(x_i), per datapoint, in chunks of samples."""
        chunk_size = chunk_size or num_samples
        parts = []
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            parts.append(self.log_weights(x, k).logsumexp(0))
        return torch.stack(parts).logsumexp(0) - math.log(num_samples)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Per-datapoint ELBO, averaged over ``num_samples`` draws."""
        return self.log_weights(x, num_samples).mean(0)


class PlainTrainer:
    """Adam on :class:`PlainVAE`, with dynamic binarisation and minibatches on the device."""

    def __init__(self, vae: PlainVAE, lr: float = 1e-3, foreach: bool | None = None) -> None:
        self.vae = vae
        self.optim = torch.optim.Adam(vae.parameters(), lr=lr, foreach=foreach)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        loss = self.vae.loss(x)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss.detach()

    def epoch(self, data: torch.Tensor, batch_size: int) -> float:
        """One pass with dynamic binarisation; returns the train ELBO per datapoint."""
        order = torch.randperm(data.shape[0], device=data.device)
        total = data.new_zeros(())
        for i in range(0, data.shape[0], batch_size):
            total += self.step(torch.bernoulli(data[order[i : i + batch_size]]))
        return -float(total) / data.shape[0]
