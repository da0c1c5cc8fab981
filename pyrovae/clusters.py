"""A VAE with a discrete cluster latent: c ~ Cat(pi), z ~ N(mu_c, sigma_c), x ~ p(x | z).

Reading guide::

    model(x):  with plate("data"):  c ~ Cat(pi)                      [enumerated]
                                    z ~ N(mu_c, diag sigma_c^2);  x ~ likelihood(decoder(z))
    guide(x):  with plate("data"):  z ~ posterior(encoder(x))

pi, mu_c and sigma_c are learnt (the GMVAE / VaDE family: Dilokthanakul et al. 2016,
Jiang et al. 2017). The guide has no site for c: in training, ``TraceEnum_ELBO`` sums
c out of the model exactly, so the objective is

    E_q(z|x)[ log p(x | z) + log sum_c pi_c N(z; mu_c, sigma_c) - log q(z | x) ],

the ELBO of the same VAE with the mixture prior p(z) = sum_c pi_c N(z; mu_c, sigma_c).
Outside training (``module.eval()``: validation, log p(x), the applications) the model
writes that sum in closed form, as the mixture's density, with no c site: the value is
the same, and every estimator of log p(x) applies unchanged. A test checks the two
agree.

A datapoint's cluster is the most probable c under p(c | z) at the posterior mean of
z: ``argmax_c pi_c N(E_q[z]; mu_c, sigma_c)`` (:meth:`ClusterVAE.cluster`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.guides import MIN_SCALE
from pyrovae.vae import VAE


class ClusterVAE(VAE):
    """c ~ Cat(pi), z_L ~ N(mu_c, diag sigma_c^2), then the VAE's p(x | z).

    Parameters
    ----------
    x_dim, z_dim, hidden, ...
        As for :class:`~pyrovae.VAE`. The mixture is the prior of the top latent layer
        (z itself with one layer), so the ``prior`` argument does not apply; every
        likelihood, guide family and network does.
    clusters
        K, the number of values of c.
    spread
        Standard deviation of the random initial cluster means (their scales start at 1,
        pi uniform): far enough apart that the clusters do not start as one.
    **kwargs
        The other arguments of :class:`~pyrovae.VAE`.
    """

    #: c is enumerated in the model (no guide site): fit picks ``TraceEnum_ELBO``.
    enumerates_in_model = True
    discrete_latent = "c"

    def __init__(
        self,
        x_dim: int = 784,
        z_dim: int | Sequence[int] = 10,
        hidden: Sequence[int] = (400,),
        *,
        clusters: int = 10,
        spread: float = 1.0,
        **kwargs: Any,
    ) -> None:
        prior = kwargs.pop("prior", "standard")
        if prior != "standard":
            raise PyrovaeError(
                "a cluster VAE's prior is its mixture over the clusters, so --prior does "
                "not apply with --clusters; leave it out"
            )
        if int(clusters) < 2:
            raise PyrovaeError(f"--clusters needs at least 2 clusters, got {clusters}")
        if kwargs.get("num_classes"):
            raise PyrovaeError("--clusters and --conditional do not combine; pick one")
        super().__init__(x_dim, z_dim, hidden, **kwargs)
        self.clusters, self.spread = int(clusters), float(spread)
        top = self.z_dims[-1]
        self.cluster_logits = nn.Parameter(torch.zeros(self.clusters))
        self.cluster_locs = nn.Parameter(self.spread * torch.randn(self.clusters, top))
        self.cluster_raw_scales = nn.Parameter(torch.full((self.clusters, top), 0.5413))
        self.config.update(variant="clusters", clusters=self.clusters, spread=self.spread)

    def _components(self) -> dist.Distribution:
        """N(mu_c, diag sigma_c^2) for every c: batch shape ``(K,)``."""
        scale = F.softplus(self.cluster_raw_scales) + MIN_SCALE
        return dist.Normal(self.cluster_locs, scale).to_event(1)

    def mixture(self) -> dist.Distribution:
        """p(z_L) = sum_c pi_c N(z_L; mu_c, sigma_c), c summed in closed form."""
        return dist.MixtureSameFamily(
            dist.Categorical(logits=self.cluster_logits), self._components()
        )

    def _top_prior(self) -> dist.Distribution:
        """In training c is a site that TraceEnum_ELBO enumerates; else the mixture."""
        if not self.training:
            return self.mixture()
        c = pyro.sample(
            "c", dist.Categorical(logits=self.cluster_logits), infer={"enumerate": "parallel"}
        )
        scale = F.softplus(self.cluster_raw_scales[c]) + MIN_SCALE
        return dist.Normal(self.cluster_locs[c], scale).to_event(1)

    @torch.no_grad()
    def cluster_probs(self, x: torch.Tensor) -> torch.Tensor:
        """p(c | z) at z = E_q[z_L | x] for each row of ``x``: shape ``(N, K)``."""
        z = self._posterior_mean(x)
        joint = self._components().log_prob(z.unsqueeze(-2)) + self.cluster_logits.log_softmax(-1)
        return joint.softmax(-1)

    @torch.no_grad()
    def cluster(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable cluster of each row of ``x``: shape ``(N,)``."""
        return self.cluster_probs(x).argmax(-1)

    def label_scores(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``test_cluster_accuracy``: matched accuracy (:func:`best_match_accuracy`)."""
        return {"test_cluster_accuracy": best_match_accuracy(self.cluster(x), labels)}

    def _posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[z] of the top layer (the mean of each layer fed to the next)."""
        q = self.encode(x)
        z = q.mean if _has_mean(q) else q.sample()
        for layer in self.up:
            z = layer(z).mean
        return z

    @torch.no_grad()
    def sample(
        self, num_samples: int, mean: bool = True, y: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Draw observations; ``y`` (an int or one per sample) picks the cluster c.

        By default c is drawn from pi; with ``y`` every sample comes from that cluster.
        """
        if y is None:
            c = dist.Categorical(logits=self.cluster_logits).sample((num_samples,))
        else:
            c = torch.as_tensor(y, device=self.cluster_logits.device).long().expand(num_samples)
            if bool((c < 0).any()) or bool((c >= self.clusters).any()):
                raise PyrovaeError(f"clusters are numbered 0..{self.clusters - 1}")
        scale = F.softplus(self.cluster_raw_scales[c]) + MIN_SCALE
        z = dist.Normal(self.cluster_locs[c], scale).sample()
        for layer in reversed(self.down):
            z = layer(z).sample()
        px = self.decode(z)
        return px.mean if mean else px.sample()


def _has_mean(q: dist.Distribution) -> bool:
    try:
        q.mean  # noqa: B018 - some families (flows) have none
    except NotImplementedError:
        return False
    return True


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
