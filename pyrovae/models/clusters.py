"""A VAE with a discrete cluster latent: c ~ Cat(pi), z ~ N(mu_c, sigma_c), x ~ p(x | z).

Reading guide::

    model(x):  with plate("data"):  c ~ Cat(pi)                      [enumerated]
                                    z ~ N(mu_c, diag sigma_c^2);  x ~ likelihood(decoder(z))
    guide(x):  with plate("data"):  z ~ posterior(encoder(x))

mu_c and sigma_c are learnt (the GMVAE / VaDE family: Dilokthanakul et al. 2016,
Jiang et al. 2017); pi is uniform by default and learnt with ``learn_weights=True``.
The guide has no site for c: in training, ``TraceEnum_ELBO`` sums
c out of the model exactly, so the objective is

    E_q(z|x)[ log p(x | z) + log sum_c pi_c N(z; mu_c, sigma_c) - log q(z | x) ],

the ELBO of the same VAE with the mixture prior p(z) = sum_c pi_c N(z; mu_c, sigma_c).
Outside training (``module.eval()``: validation, log p(x), the applications) the model
writes that sum in closed form, as the mixture's density, with no c site: the value is
the same, and every estimator of log p(x) applies unchanged. A test checks the two
agree.

A datapoint's cluster is the most probable c under p(c | z) at the posterior mean of
z: ``argmax_c pi_c N(E_q[z]; mu_c, sigma_c)`` (:meth:`ClusterVAE.cluster`).

Initialisation (VaDE, Jiang et al. 2017): the mixture's random start is a poor prior for
clustering, so after ``init_after`` epochs (:func:`pyrovae.fit` calls
:meth:`ClusterVAE.end_of_epoch`) mu_c and sigma_c (and pi, when learnt) are set once to
the k-means clusters of the encoder's posterior means of the training data: each
cluster's mean, per-unit standard deviation and share (:func:`fit_mixture`), and
training goes on from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.data.batches import as_data
from pyrovae.errors import Param, PyrovaeError
from pyrovae.models.clustering import best_match_accuracy, fit_mixture
from pyrovae.models.vae import VAE
from pyrovae.parts.distributions import MIN_SCALE, diagonal_normal, mean_of, mixture


class ClusterVAE(VAE):
    """c ~ Cat(pi), z_L ~ N(mu_c, diag sigma_c^2), then the VAE's p(x | z).

    Parameters
    ----------
    x_dim, z_dim, hidden, ...
        As for :class:`~pyrovae.models.vae.VAE`. The mixture is the prior of the top latent layer
        (z itself with one layer), so the ``prior`` argument does not apply; every
        likelihood, guide family and network does.
    clusters
        K, the number of values of c.
    spread
        Standard deviation of the random initial cluster means (their scales start at 1,
        pi uniform): far enough apart that the clusters do not start as one.
    init_after
        After this many epochs of :func:`pyrovae.fit`, set the mixture to the one
        :meth:`fit_clusters` fits to the training data's posterior means (default 20;
        0: never).
    learn_weights
        Learn pi (True), or keep p(c) = 1/K (False, the default). On the bundled MNIST
        sample a learnt pi let clusters merge and lowered the matched accuracy
        (``docs/howto/clusters.md``).
    **kwargs
        The other arguments of :class:`~pyrovae.VAE`.
    """

    #: Epochs ``pyrovae train --clusters`` runs unless told: ``init_after`` and as many
    #: again from the fitted mixture (20 epochs gave 0.586 matched accuracy, 40 0.6165).
    default_epochs = 40

    #: c is enumerated in the model (no guide site): fit picks ``TraceEnum_ELBO``.
    enumerates_in_model = True
    discrete_latent = "c"

    def __init__(
        self,
        x_dim: int = 784,
        z_dim: int | Sequence[int] = 10,
        hidden: Sequence[int] = (500, 500, 2000),
        *,
        clusters: int = 10,
        spread: float = 1.0,
        init_after: int = 20,
        learn_weights: bool = False,
        **kwargs: Any,
    ) -> None:
        prior = kwargs.pop("prior", "standard")
        if prior != "standard":
            raise PyrovaeError(
                "a cluster VAE's prior is its mixture over the clusters, so ",
                Param("prior"),
                " does not apply with ",
                Param("clusters"),
                "; leave it out",
            )
        if int(clusters) < 2:
            raise PyrovaeError(Param("clusters"), f" needs at least 2 clusters, got {clusters}")
        if kwargs.get("num_classes"):
            raise PyrovaeError(
                Param("clusters"), " and ", Param("num_classes"), " do not combine; pick one"
            )
        super().__init__(x_dim, z_dim, hidden, **kwargs)
        if self.posterior.brings_prior:
            raise PyrovaeError(
                f"the {self.config['posterior']} guide brings its own prior, and a cluster "
                "VAE's prior is its mixture over the clusters; they do not combine"
            )
        if int(init_after) < 0:
            raise PyrovaeError(Param("init_after"), f" must be >= 0 epochs, got {init_after}")
        self.clusters, self.spread, self.init_after = int(clusters), float(spread), int(init_after)
        top = self.z_dims[-1]
        self.learn_weights = bool(learn_weights)
        if self.learn_weights:
            self.cluster_logits = nn.Parameter(torch.zeros(self.clusters))
        else:  # the same name in the state dict either way
            self.register_buffer("cluster_logits", torch.zeros(self.clusters))
        self.cluster_locs = nn.Parameter(self.spread * torch.randn(self.clusters, top))
        self.cluster_raw_scales = nn.Parameter(torch.full((self.clusters, top), 0.5413))
        self.config.update(
            variant="clusters",
            clusters=self.clusters,
            spread=self.spread,
            init_after=self.init_after,
            learn_weights=self.learn_weights,
        )

    def end_of_epoch(self, epoch: int, data: Any) -> None:
        """Called by :func:`pyrovae.fit` after each epoch: at ``init_after``, fit the mixture."""
        if epoch == self.init_after:
            self.fit_clusters(data)

    @torch.no_grad()
    def fit_clusters(self, data: Any, batch_size: int = 1000, seed: int = 0) -> None:
        """Set mu_c, sigma_c (and a learnt pi) to a mixture fitted to the posterior means.

        The means E_q[z_L | x] of every datapoint (in ``eval()`` mode, the data as given,
        not binarised) are fitted by :func:`fit_mixture`. Under torch.distributed the
        fit of process 0 is given to every process.
        """
        was_training = self.training
        self.eval()
        try:
            device = self.cluster_locs.device
            means = [
                self._posterior_mean(batch.args[0].to(device)).float().cpu()
                for batch in as_data(data, "data").passes(batch_size)
            ]
        finally:
            self.train(was_training)
        logits, locs, scales = fit_mixture(torch.cat(means), self.clusters, seed)
        raw = (scales - MIN_SCALE).clamp(min=1e-6).expm1().log()  # softplus^-1
        fitted = {"cluster_locs": locs, "cluster_raw_scales": raw}
        if self.learn_weights:
            fitted["cluster_logits"] = logits
        for name, value in fitted.items():
            param = getattr(self, name)
            param.copy_(value.to(param))
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(param.data, 0)

    def _components(self, c: torch.Tensor | slice = slice(None)) -> dist.Distribution:
        """N(mu_c, diag sigma_c^2) of the clusters ``c`` (all: batch shape ``(K,)``)."""
        return diagonal_normal(self.cluster_locs[c], self.cluster_raw_scales[c])

    def mixture(self) -> dist.Distribution:
        """p(z_L) = sum_c pi_c N(z_L; mu_c, sigma_c), c summed in closed form."""
        return mixture(self.cluster_logits, self._components())

    def _top_prior(self) -> dist.Distribution:
        """In training c is a site that TraceEnum_ELBO enumerates; else the mixture."""
        if not self.training:
            return self.mixture()
        c = pyro.sample(
            "c", dist.Categorical(logits=self.cluster_logits), infer={"enumerate": "parallel"}
        )
        return self._components(c)

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
        z = mean_of(self.encode(x))
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
                raise PyrovaeError(Param("y"), f": clusters are numbered 0..{self.clusters - 1}")
        z = self._components(c).sample()
        for layer in reversed(self.down):
            z = layer(z).sample()
        px = self.decode(z)
        return px.mean if mean else px.sample()
