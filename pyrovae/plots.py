"""Figures of a trained VAE. Each function returns a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: no global
state, no backend, no window, safe on headless machines and in threads. Save one with
``fig.savefig(path)``; nothing here calls ``show()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from pyrovae.errors import PyrovaeError


def _shape(vae, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    shape = image_shape or getattr(vae, "image_shape", None)
    if shape is None:
        raise PyrovaeError("image figures need image_shape=(channels, height, width)")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def image_grid(images: torch.Tensor, image_shape: Sequence[int], ncol: int) -> np.ndarray:
    """Tile flat images ``(N, C*H*W)`` into one ``(rows*H, ncol*W[, C])`` array in [0, 1]."""
    c, h, w = image_shape
    imgs = images.detach().float().cpu().clamp(0, 1).reshape(-1, c, h, w).numpy()
    n = imgs.shape[0]
    nrow = math.ceil(n / ncol)
    grid = np.ones((c, nrow * (h + 1) - 1, ncol * (w + 1) - 1), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = imgs[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def _show(ax, grid: np.ndarray, title: str) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


@torch.no_grad()
def reconstructions(
    vae, x: torch.Tensor, image_shape: Sequence[int] | None = None, n: int = 16
) -> Figure:
    """Inputs (top) beside the mean of p(x|z) at the posterior mean of z (bottom)."""
    shape = _shape(vae, image_shape)
    x = x[:n].to(next(vae.parameters()).device)
    recon = vae.reconstruct(x)
    ncol = min(n, x.shape[0])
    fig = Figure(figsize=(ncol * 0.6 + 0.4, 2.8))
    top, bottom = fig.subplots(2, 1)
    _show(top, image_grid(x, shape, ncol), "inputs")
    _show(bottom, image_grid(recon, shape, ncol), "reconstructions (mean of p(x|z))")
    fig.tight_layout()
    return fig


@torch.no_grad()
def prior_samples(
    vae, n: int = 64, image_shape: Sequence[int] | None = None, seed: int = 0
) -> Figure:
    """Mean of p(x|z) for ``n`` draws z from the prior."""
    shape = _shape(vae, image_shape)
    device = next(vae.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        samples = vae.sample(n)
    ncol = math.ceil(math.sqrt(n))
    fig = Figure(figsize=(ncol * 0.6 + 0.4, math.ceil(n / ncol) * 0.6 + 0.6))
    _show(fig.subplots(), image_grid(samples, shape, ncol), "samples: z ~ p(z), mean of p(x|z)")
    fig.tight_layout()
    return fig
