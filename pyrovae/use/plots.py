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
from pyrovae.use.applications import interpolate, latent_means, traversals


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


def image_rows(images: torch.Tensor, image_shape: Sequence[int], ncol: int, title: str) -> Figure:
    """Flat images ``(N, C*H*W)`` in rows of ``ncol``, with a title."""
    nrow = math.ceil(images.shape[0] / ncol)
    fig = Figure(figsize=(ncol * 0.6 + 0.4, nrow * 0.6 + 0.6))
    _show(fig.subplots(), image_grid(images, image_shape, ncol), title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def reconstructions(
    vae,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    image_shape: Sequence[int] | None = None,
    n: int = 16,
) -> Figure:
    """Inputs (top) beside the mean of p(x|z) at the posterior mean of z (bottom).

    ``y``: the labels of a conditional VAE's inputs.
    """
    shape = _shape(vae, image_shape)
    device = next(vae.parameters()).device
    x = x[:n].to(device)
    recon = vae.reconstruct(x, y[:n].to(device)) if y is not None else vae.reconstruct(x)
    ncol = min(n, x.shape[0])
    fig = Figure(figsize=(ncol * 0.6 + 0.4, 2.8))
    top, bottom = fig.subplots(2, 1)
    _show(top, image_grid(x, shape, ncol), "inputs")
    _show(bottom, image_grid(recon, shape, ncol), "reconstructions (mean of p(x|z))")
    fig.tight_layout()
    return fig


@torch.no_grad()
def seeded_samples(
    vae, n: int, seed: int = 0, y: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Mean of p(x|z) for ``n`` draws z from the prior, from their own seeded generator.

    A conditional VAE draws class ``y`` (by default the classes in turn).
    """
    device = next(vae.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return vae.sample(n, y=y) if y is not None else vae.sample(n)


@torch.no_grad()
def prior_samples(
    vae,
    n: int = 64,
    image_shape: Sequence[int] | None = None,
    seed: int = 0,
    y: int | None = None,
) -> Figure:
    """Mean of p(x|z) for ``n`` draws z from the prior (of class ``y``: conditional VAE)."""
    shape = _shape(vae, image_shape)
    samples = seeded_samples(vae, n, seed, y)
    classes = getattr(vae, "num_classes", None) if y is None else None
    ncol = classes or math.ceil(math.sqrt(n))  # a conditional VAE: one class per column
    title = "samples: z ~ p(z), mean of p(x|z" + (", y = column)" if classes else ")")
    fig = Figure(figsize=(ncol * 0.6 + 0.4, math.ceil(n / ncol) * 0.6 + 0.6))
    _show(fig.subplots(), image_grid(samples, shape, ncol), title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def cluster_samples(vae, per_cluster: int = 8, seed: int = 0) -> Figure:
    """Mean of p(x|z) for z ~ N(mu_c, sigma_c): one column per cluster c (cluster VAE)."""
    shape = _shape(vae, None)
    columns = [seeded_samples(vae, per_cluster, seed, c) for c in range(vae.clusters)]
    grid = torch.stack(columns, 1).reshape(per_cluster * vae.clusters, -1)
    fig = Figure(figsize=(vae.clusters * 0.6 + 0.4, per_cluster * 0.6 + 0.6))
    _show(fig.subplots(), image_grid(grid, shape, vae.clusters), "samples: cluster c = column")
    fig.tight_layout()
    return fig


@torch.no_grad()
def interpolation(
    vae,
    x: torch.Tensor,
    pairs: Sequence[tuple[int, int]] = ((0, 1), (2, 3), (4, 5)),
    steps: int = 10,
    image_shape: Sequence[int] | None = None,
) -> Figure:
    """Rows of decoder means along the line between the latent means of pairs of inputs."""
    shape = _shape(vae, image_shape)
    x = x.to(next(vae.parameters()).device)
    pairs = [(a, b) for a, b in pairs if max(a, b) < x.shape[0]]
    if not pairs:
        raise PyrovaeError("interpolation needs at least two inputs")
    rows = torch.cat([interpolate(vae, x[a], x[b], steps) for a, b in pairs])
    fig = Figure(figsize=(steps * 0.6 + 0.4, len(pairs) * 0.6 + 0.6))
    _show(fig.subplots(), image_grid(rows, shape, steps), "interpolation between latent means")
    fig.tight_layout()
    return fig


@torch.no_grad()
def latent_traversals(
    vae,
    x: torch.Tensor,
    num_dims: int = 8,
    span: float = 3.0,
    steps: int = 9,
    image_shape: Sequence[int] | None = None,
) -> Figure:
    """One row per latent coordinate (the ``num_dims`` with the most spread over ``x``),
    moved through ``[-span, span]`` from the first input's latent mean."""
    shape = _shape(vae, image_shape)
    x = x.to(next(vae.parameters()).device)
    spread = latent_means(vae, x).std(0) if x.shape[0] > 1 else torch.ones(vae.z_dim)
    dims = spread.argsort(descending=True)[: min(num_dims, vae.z_dim)].tolist()
    rows = traversals(vae, x[0], dims, span, steps).reshape(-1, x.shape[-1])
    fig = Figure(figsize=(steps * 0.6 + 0.4, len(dims) * 0.6 + 0.6))
    title = f"latent traversals, z_d in [-{span:g}, {span:g}]: dims {dims}"
    _show(fig.subplots(), image_grid(rows, shape, steps), title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def latent_scatter(vae, x: torch.Tensor, labels: torch.Tensor | None = None) -> Figure:
    """The latent means of ``x`` in 2-D (their first two principal components when
    z has more dimensions), coloured by label."""
    device = next(vae.parameters()).device
    condition = labels.to(device) if getattr(vae, "num_classes", None) else None
    z = latent_means(vae, x.to(device), y=condition).double().cpu()
    if z.shape[1] > 2:
        centred = z - z.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        z, axes = centred @ v[:2].T, ("PC 1", "PC 2")
    elif z.shape[1] == 2:
        axes = ("z_1", "z_2")
    else:
        z, axes = torch.cat([z, torch.zeros_like(z)], 1), ("z_1", "")
    fig = Figure(figsize=(5.2, 4.4))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.7)
    else:
        colours = labels[: z.shape[0]].cpu().numpy()
        points = ax.scatter(z[:, 0], z[:, 1], c=colours, s=4, cmap="tab10", alpha=0.7)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title("latent means" + (" (PCA)" if vae.z_dim > 2 else ""), fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(history: dict) -> Figure:
    """Per-epoch ELBO (train and validation), reconstruction term and KL term, in nats."""
    epochs = history.get("epoch", [])
    fig = Figure(figsize=(10, 3.2))
    left, middle, right = fig.subplots(1, 3)
    left.plot(epochs, history.get("train_elbo", []), label="train")
    if history.get("val_elbo"):
        left.plot(epochs, history["val_elbo"], label="validation")
    left.set_title("ELBO (nats per datapoint)", fontsize=10)
    left.legend(fontsize=8)
    if history.get("val_log_likelihood"):
        middle.plot(epochs, history["val_log_likelihood"], color="C2")
        right.plot(epochs, history["val_kl"], color="C3")
    middle.set_title("reconstruction E_q[log p(x|z)]", fontsize=10)
    right.set_title("KL(q(z|x) || p(z))", fontsize=10)
    for ax in (left, middle, right):
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def log_px_histogram(log_px: torch.Tensor | np.ndarray, bins: int = 50) -> Figure:
    """Histogram of per-datapoint log p(x) estimates (nats)."""
    values = np.asarray(log_px, dtype=np.float64).ravel()
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    ax.hist(values, bins=bins, color="C0", alpha=0.85)
    ax.axvline(
        values.mean(), color="k", linestyle="--", linewidth=1, label=f"mean {values.mean():.2f}"
    )
    ax.set_xlabel("log p(x) (nats)")
    ax.set_ylabel("datapoints")
    ax.legend(fontsize=8)
    ax.set_title("held-out log p(x), per datapoint", fontsize=10)
    fig.tight_layout()
    return fig


def latent_units(
    kl_per_dim: dict[str, Sequence[float] | None],
    variance: dict[str, Sequence[float]],
    threshold: float = 0.01,
) -> Figure:
    """Posterior collapse at a glance: per latent site, KL per unit and its activity.

    Top row: KL(q(z_u|x) || p(z_u)) per unit (nats, averaged over the data); bottom
    row: Cov_x(E_q[z_u|x]) per unit on a log scale, with the activity threshold. Active
    units are drawn in blue, inactive ones in grey (see :mod:`pyrovae.use.diagnostics`).
    """
    names = list(variance)
    fig = Figure(figsize=(max(5.2, 3.2 * len(names)), 5.0))
    axes = np.asarray(fig.subplots(2, len(names), squeeze=False))
    for j, name in enumerate(names):
        var = np.asarray(variance[name], dtype=np.float64)
        units = np.arange(var.size)
        colours = np.where(var > threshold, "C0", "0.7")
        kl = kl_per_dim.get(name)
        top, bottom = axes[0, j], axes[1, j]
        if kl is None:
            top.text(0.5, 0.5, "no per-unit marginals", ha="center", va="center")
        else:
            top.bar(units, np.asarray(kl, dtype=np.float64), color=colours)
        top.set_title(
            f"{name}: {int((var > threshold).sum())} of {var.size} units active", fontsize=10
        )
        top.set_ylabel("KL per unit (nats)")
        bottom.bar(units, np.maximum(var, 1e-12), color=colours)
        bottom.set_yscale("log")
        bottom.axhline(threshold, color="k", linestyle="--", linewidth=1)
        bottom.set_ylabel("Cov_x(E_q[z_u | x])")
        bottom.set_xlabel("latent unit")
    fig.tight_layout()
    return fig


@torch.no_grad()
def column_errors(vae, x: torch.Tensor, mask: torch.Tensor | None = None) -> Figure:
    """Per-column RMSE of the reconstructions over the observed entries (tables).

    The figure that replaces the image grids for data that are not images: which
    columns the model reproduces well and which it does not.
    """
    recon = vae.reconstruct(x)
    observed = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.bool()
    sq = torch.where(observed, (recon - x) ** 2, torch.zeros_like(x))
    rmse = (sq.sum(0) / observed.sum(0).clamp(min=1)).sqrt().cpu().numpy()
    fig = Figure(figsize=(max(5.2, 0.25 * len(rmse)), 3.4))
    ax = fig.subplots()
    ax.bar(np.arange(len(rmse)), rmse, color="C0")
    ax.set_xlabel("column")
    ax.set_ylabel("RMSE")
    ax.set_title("reconstruction error per column (observed held-out entries)", fontsize=10)
    fig.tight_layout()
    return fig
