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

:class:`SemiSupervisedBatches` is the training data: each epoch a seeded shuffle of the
unlabelled datapoints in minibatches, with a labelled minibatch after every ``every``
of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.nets import INITS, MLP, ConvClassifier
from pyrovae.registry import lookup
from pyrovae.vae import VAE

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
        (:class:`~pyrovae.nets.ConvClassifier`, with dropout; needs ``image_shape``),
        ``"mlp"`` (the encoder's hidden sizes), or ``"auto"`` (the default): conv for
        images, mlp otherwise. ``config["classifier"]`` records the choice made.
    **kwargs
        The other arguments of :class:`~pyrovae.VAE`.

    Notes
    -----
    The programs take ``(x,)`` for unlabelled and ``(x, y)`` for labelled data; mix the
    two kinds of batch in training (:class:`SemiSupervisedBatches`). The guide marks y
    for parallel enumeration, so :func:`pyrovae.fit` trains with ``TraceEnum_ELBO`` and
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
            raise PyrovaeError(f"aux_weight must be >= 0, got {aux_weight}")
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
        lookup(INITS, self.config.get("init", "default"), "init")(self.classifier)
        self.config.update(
            variant="semi-supervised", aux_weight=self.aux_weight, classifier=classifier
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SemiSupervisedVAE:
        """As :meth:`VAE.from_config`; a config written before ``classifier`` means mlp."""
        return cls(**{"classifier": "mlp", **config})

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


def _mlp_classifier(
    x_dim: int, classes: int, hidden: tuple[int, ...], activation: str, image_shape: Any
) -> nn.Module:
    return MLP(x_dim, classes, hidden, activation)


def _conv_classifier(
    x_dim: int, classes: int, hidden: tuple[int, ...], activation: str, image_shape: Any
) -> nn.Module:
    shape = tuple(int(s) for s in image_shape or ())
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != x_dim or min(shape[1:]) < 4:
        raise PyrovaeError(
            "the conv classifier needs image_shape=(channels, height, width) of at least "
            f"4x4 pixels matching x_dim={x_dim}; got {image_shape}: use classifier 'mlp'"
        )
    return ConvClassifier(shape, classes, activation)


#: The networks of q(y | x), by name: ``build(x_dim, K, hidden, activation, image_shape)``.
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp_classifier,
    "conv": _conv_classifier,
}


def balanced_labels(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` datapoints to keep labelled: ``n / K`` of each class, seeded.

    Parameters
    ----------
    labels
        Class of every training datapoint, ``(N,)``.
    n
        How many to keep; a multiple of the number of classes K, at most what each
        class holds times K.
    seed
        Picks which ones.
    """
    classes = int(labels.max()) + 1
    if n < classes or n % classes:
        raise PyrovaeError(
            f"--labels {n}: give a multiple of the {classes} classes, so that each class "
            "has the same number of labelled datapoints"
        )
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(classes):
        members = (labels == c).nonzero().flatten()
        if len(members) < n // classes:
            raise PyrovaeError(
                f"--labels {n} asks for {n // classes} labelled datapoints of class {c}, "
                f"which has only {len(members)}"
            )
        picked.append(members[torch.randperm(len(members), generator=gen)[: n // classes]])
    return torch.cat(picked).sort().values


class SemiSupervisedBatches:
    """Unlabelled ``(x,)`` minibatches with a labelled ``(x, y)`` one every ``every``.

    Each epoch the unlabelled datapoints are shuffled (seeded by ``seed`` and the epoch,
    which :func:`pyrovae.fit` sets through :meth:`set_epoch`, as for PyTorch's
    ``DistributedSampler``, so a resumed epoch repeats its order) and cut into
    minibatches of ``batch_size``; after every ``every`` of them (and at least once per
    epoch) comes a minibatch of ``min(batch_size, L)`` labelled datapoints drawn
    without replacement from the L labelled ones. The first minibatch is unlabelled.

    Parameters
    ----------
    x_unlabelled
        ``(N, D)``.
    x_labelled, y_labelled
        ``(L, D)`` and the labels as the programs take them: ``(L,)`` classes for
        :class:`SemiSupervisedVAE`, or one-hot rows for a program that wants them.
    batch_size, every, seed
        As above. The order is drawn on the CPU and moved once per epoch to the data's
        device, where the minibatches are indexed.
    """

    def __init__(
        self,
        x_unlabelled: torch.Tensor,
        x_labelled: torch.Tensor,
        y_labelled: torch.Tensor,
        batch_size: int = 128,
        every: int = 1,
        seed: int = 0,
    ) -> None:
        if len(x_unlabelled) == 0 or len(x_labelled) == 0:
            raise PyrovaeError("semi-supervised training needs labelled and unlabelled data")
        if batch_size < 1 or every < 1:
            raise PyrovaeError("batch_size and every must be positive")
        self.x_unlabelled, self.x_labelled = x_unlabelled, x_labelled
        self.y_labelled = y_labelled
        self.batch_size, self.every, self.seed, self.epoch = batch_size, every, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Seed the next iteration's order with ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        device = self.x_unlabelled.device
        order = torch.randperm(len(self.x_unlabelled), generator=gen).to(device)
        size = min(self.batch_size, len(self.x_labelled))
        steps = -(-len(order) // self.batch_size)
        picks = (
            torch.randperm(len(self.x_labelled), generator=gen)[:size]
            for _ in range(max(steps // self.every, 1))
        )
        labelled = iter(torch.stack(list(picks)).to(self.x_labelled.device))
        for i in range(steps):
            yield (self.x_unlabelled[order[i * self.batch_size : (i + 1) * self.batch_size]],)
            if (i + 1) % self.every == 0 or (i + 1 == steps < self.every):
                pick = next(labelled)
                yield self.x_labelled[pick], self.y_labelled[pick]

    def __len__(self) -> int:
        steps = -(-len(self.x_unlabelled) // self.batch_size)
        return steps + max(steps // self.every, 1)
