"""Clustering without a model: k-means, a Gaussian mixture from it, matched accuracy.

The cluster VAE (:mod:`pyrovae.models.clusters`) starts its mixture from the k-means
clusters of the encoder's means (:func:`fit_mixture`, VaDE's initialisation) and is
scored by the accuracy of its clusters under the best one-to-one matching with the
classes (:func:`best_match_accuracy`, the Hungarian algorithm).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from pyrovae.errors import PyrovaeError


def fit_mixture(
    z: torch.Tensor,
    k: int,
    seed: int = 0,
    restarts: int = 4,
    iterations: int = 100,
    em_steps: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A mixture of ``k`` diagonal Gaussians fitted to the rows of ``z`` ``(N, D)``.

    k-means (``restarts`` runs of at most ``iterations`` from k-means++ starts, the one
    of least inertia kept) gives each cluster's share, mean and per-unit standard
    deviation; ``em_steps`` of EM may then refine them (none by default: on the
    posterior means of MNIST, EM's broad components cost matched accuracy), all in
    float64. Returns the log weights ``(k,)``, means ``(k, D)`` and standard deviations
    ``(k, D)``, each floored at 1e-3 of the data's.
    """
    z = z.detach().double()
    if len(z) < k:
        raise PyrovaeError(f"fitting {k} clusters needs at least {k} datapoints, got {len(z)}")
    gen = torch.Generator().manual_seed(seed)
    centres = min((_kmeans(z, k, gen, iterations) for _ in range(restarts)), key=_inertia(z))
    resp = F.one_hot(torch.cdist(z, centres).argmin(1), k).double()
    floor = 1e-3 * z.std(0).clamp(min=1e-12)
    log_weights, locs, scales = _moments(resp, z, floor)
    for _ in range(em_steps):
        joint = dist.Normal(locs, scales).log_prob(z.unsqueeze(1)).sum(-1) + log_weights
        log_weights, locs, scales = _moments(joint.softmax(-1), z, floor)
    return log_weights, locs, scales


def _moments(resp: torch.Tensor, z: torch.Tensor, floor: torch.Tensor) -> tuple:
    """Log shares, means and floored standard deviations of soft clusters ``resp`` (N, k)."""
    counts = resp.sum(0) + 1e-12
    locs = resp.T @ z / counts[:, None]
    scales = ((resp.T @ z.square()) / counts[:, None] - locs.square()).clamp(min=0).sqrt()
    return (counts / counts.sum()).log(), locs, torch.maximum(scales, floor)


def _kmeans(z: torch.Tensor, k: int, gen: torch.Generator, iterations: int) -> torch.Tensor:
    """Lloyd's k-means from a k-means++ start: the centres ``(k, D)``."""
    centres = z[torch.randint(len(z), (1,), generator=gen)]
    for _ in range(1, k):
        gap = torch.cdist(z, centres).min(1).values.square()
        centres = torch.cat([centres, z[torch.multinomial(gap + 1e-300, 1, generator=gen)]])
    for _ in range(iterations):
        member = F.one_hot(torch.cdist(z, centres).argmin(1), k).double()
        counts = member.sum(0)
        moved = torch.where(
            counts[:, None] > 0, member.T @ z / counts.clamp(min=1)[:, None], centres
        )
        if torch.equal(moved, centres):
            break
        centres = moved
    return centres


def _inertia(z: torch.Tensor):
    """The k-means objective of a set of centres on ``z``."""
    return lambda centres: float(torch.cdist(z, centres).min(1).values.square().sum())


def best_match_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of clusters against labels under the best one-to-one matching.

    The usual score of unsupervised clustering: the contingency table of clusters by
    classes, and the assignment of clusters to classes that covers the most datapoints
    (the Hungarian algorithm, :func:`_max_assignment`).
    """
    k = int(max(int(predicted.max()), int(labels.max()))) + 1
    table = torch.zeros(k, k, dtype=torch.long)
    ones = torch.ones(len(labels), dtype=torch.long)
    table.index_put_((predicted.long().cpu(), labels.long().cpu()), ones, accumulate=True)
    return _max_assignment(table.tolist()) / len(labels)


def _max_assignment(table: list[list[int]]) -> int:
    """The largest sum of one entry per row and column of a square table (Hungarian).

    The O(n^3) shortest-augmenting-path form (Kuhn-Munkres with potentials), on costs
    ``-table``.
    """
    n = len(table)
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (n + 1)
    match, way = [0] * (n + 1), [0] * (n + 1)  # match[j]: the row given column j
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv, used = [inf] * (n + 1), [False] * (n + 1)
        while match[j0]:
            used[j0], i0, delta, j1 = True, match[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = -table[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            match[j0], j0 = match[j1], j1
    return sum(table[match[j] - 1][j - 1] for j in range(1, n + 1))
