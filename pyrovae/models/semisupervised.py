"""The semi-supervised VAE M2 (Kingma et al., 2014): a class label that is sometimes seen.

Reading guide::

    model(x, y=None):  with plate("data"):  y ~ Cat(1/K)          [observed when given]
                                            z ~ prior();  x ~ likelihood(decoder([z, y]))
    guide(x, y=None):  with plate("data"):  y ~ q(y | x) = Cat(classifier(x))  [only if
                                                                  not given; enumerated]
                                            z ~ posterior(encoder([x, y]))

For a labelled batch the ELBO is that of a conditional VAE, log p(x, y) >= L(x, y); for
an unlabelled one y is a latent variable that ``TraceEnum_ELBO`` sums out exactly::

    log p(x) >= U(x) = sum_y q(y | x) L(x, y) + H(q(y | x))

The classifier q(y | x) appears only in U, so on its own it would learn nothing from the
labels; M2 adds the classification term ``alpha * log q(y | x)`` on labelled data
(Kingma et al. 2014, eq. 9). It is a guide factor, present only while the module is in
training mode (``module.train()``, as :func:`pyrovae.fit` sets it), so that every
estimate of log p(x) (made in ``eval()`` mode) is the model's alone.

:class:`~pyrovae.data.labels.SemiSupervisedBatches` is the training data: each epoch a
seeded shuffle of the unlabelled datapoints in minibatches, with a labelled minibatch
after every ``every`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from pyrovae._util import lookup
from pyrovae.errors import Param, PyrovaeError
from pyrovae.models.vae import VAE
from pyrovae.parts.nets import CLASSIFIERS, INITS

#: The default weight alpha of the classification term, per labelled datapoint.
DEFAULT_AUX_WEIGHT = 500.0


class SemiSupervisedVAE(VAE):
    """M2: p(y) p(z) p(x | z, y) with the guide q(y | x) q(z | x, y).

    Parameters
    ----------
    x_dim, z_dim, hidden, ...
        As for :class:`~pyrovae.VAE`; every prior, likelihood, guide family and
        ``z_dim`` (one size or several, for a hierarchical M2) applies as there.
    num_classes
        K, the number of classes; y takes the values ``0 .. K - 1``, p(y) = 1/K.
    aux_weight
        alpha of the classification term ``alpha * log q(y | x)`` added to the ELBO of
        each labelled datapoint in training. Kingma et al. (2014) use alpha = 0.1 N for
        N datapoints; the default, 500, is of that order for the bundled sample's
        8,000 training images (0.1 N = 800). See ``docs/howto/semi_supervised.md`` for
        what it reaches.
    classifier
        The network of q(y | x), a key of ``CLASSIFIERS``: ``"conv"``
        (:class:`~pyrovae.parts.nets.ConvClassifier`, with dropout; needs ``image_shape``),
        ``"mlp"`` (the encoder's hidden sizes), or ``"auto"`` (the default): conv for
        images, mlp otherwise. ``config["classifier"]`` records the choice made.
    **kwargs
        The other arguments of :class:`~pyrovae.VAE`.

    Notes
    -----
    The programs take ``(x,)`` for unlabelled and ``(x, y)`` for labelled data; mix the
    two kinds of batch in training
    (:class:`~pyrovae.data.labels.SemiSupervisedBatches`). The guide marks y for parallel
    enumeration, so :func:`pyrovae.fit` trains with ``TraceEnum_ELBO`` and
    :func:`pyrovae.log_marginal_likelihood` sums y out exactly. :meth:`classify` gives
    the most probable class under q(y | x).
    """

    discrete_latent = "y"

    def __init__(
        self,
        x_dim: int = 784,
        z_dim: int | Sequence[int] = 50,
        hidden: Sequence[int] = (400,),
        *,
        num_classes: int = 10,
        aux_weight: float = DEFAULT_AUX_WEIGHT,
        classifier: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(x_dim, z_dim, hidden, num_classes=num_classes, **kwargs)
        if not aux_weight >= 0:
            raise PyrovaeError(Param("aux_weight"), f" must be >= 0, got {aux_weight}")
        self.aux_weight = float(aux_weight)
        if classifier == "auto":
            classifier = "conv" if self.image_shape is not None else "mlp"
        build = lookup(CLASSIFIERS, classifier, "classifier")
        self.classifier = build(
            self.x_dim,
            self.num_classes,
            tuple(hidden),
            self.config["activation"],
            self.image_shape,
        )
        # p(y) = 1/K; a buffer, so that it moves with the module and is made once.
        self.register_buffer("label_logits", torch.zeros(self.num_classes), persistent=False)
        lookup(INITS, self.config["init"], "init")(self.classifier)
        self.config.update(
            variant="semi-supervised", aux_weight=self.aux_weight, classifier=classifier
        )

    def _model_label(self, y: torch.Tensor | None) -> torch.Tensor:
        """y ~ Cat(1/K), observed when given."""
        return pyro.sample("y", dist.Categorical(logits=self.label_logits), obs=y)

    def _guide_label(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """y ~ q(y | x), enumerated, when not given; alpha log q(y | x) when given."""
        q_y = dist.Categorical(logits=self.classifier(x).to(x.dtype))
        if y is None:
            return pyro.sample("y", q_y, infer={"enumerate": "parallel"})
        if self.training and self.aux_weight:
            # A guide factor f enters the ELBO as -f: this adds +alpha log q(y | x). It
            # is a deterministic function of the parameters, hence has_rsample=True.
            pyro.factor("classification", -self.aux_weight * q_y.log_prob(y), has_rsample=True)
        return y

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """q(z | x, y); without ``y``, at the class that q(y | x) finds most probable."""
        if y is None:
            y = self.classifier(x).argmax(-1)
        return super().encode(x, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`VAE.reconstruct`; without ``y``, at the class q(y | x) finds."""
        return super().reconstruct(x, self.classify(x) if y is None else y)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class of each row of ``x`` under q(y | x): shape ``(N,)``."""
        return self.classifier(x).argmax(-1)

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x) for each row of ``x``: shape ``(N, K)``."""
        return self.classifier(x).softmax(-1)

    def label_scores(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``test_accuracy``: how often q(y | x)'s most probable class is the label."""
        return {"test_accuracy": float((self.classify(x) == labels.to(x.device)).float().mean())}
