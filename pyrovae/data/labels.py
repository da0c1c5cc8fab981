"""Class labels: how a run uses them, which to keep for semi-supervised training.

* :data:`LABEL_USES`: the labels as the condition of a conditional VAE, or as M2's latent
  class, summed out in held-out evaluation (:func:`with_labels`);
* :func:`balanced_labels`: which training datapoints keep their label in semi-supervised
  training, the same number per class;
* :class:`SemiSupervisedBatches`: the training data of M2, unlabelled minibatches with a
  labelled one every few steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from pyrovae._util import lookup
from pyrovae.data.datasets import DataSplit
from pyrovae.errors import Param, PyrovaeError


def _as_condition(x: Any, labels: torch.Tensor | None) -> Any:
    """``{"x": x, "y": labels}``: the labels are an input of both programs."""
    if labels is None:
        raise PyrovaeError(
            "conditioning on labels needs a dataset that has them (the sample, mnist, or a "
            ".npz with y_train and y_test)"
        )
    return {"x": x, "y": labels.to(x.device if isinstance(x, torch.Tensor) else "cpu")}


def _summed_out(x: Any, labels: torch.Tensor | None) -> Any:
    """``x`` alone: y is a latent variable that the estimators sum out (M2)."""
    return x


#: How a run uses its dataset's labels (``config["data"]["labels"]``; absent: not at
#: all), as the data its held-out evaluation takes: the condition of a conditional VAE,
#: or M2's latent class, summed out (M2's training data are built by
#: :class:`SemiSupervisedBatches`). Either way the model is told
#: the number of classes.
LABEL_USES: dict[str, Callable[[Any, torch.Tensor | None], Any]] = {
    "condition": _as_condition,
    "semi-supervised": _summed_out,
}


def with_labels(x: Any, labels: torch.Tensor | None, use: str | None) -> Any:
    """The data the programs take given the labels' use (None: ``x`` itself)."""
    return x if use is None else lookup(LABEL_USES, use, "use of labels")(x, labels)


def num_classes(data: DataSplit) -> int:
    """How many classes the labels of both splits name (the largest label, plus one)."""
    labels = [t for t in (data.train_labels, data.test_labels) if t is not None]
    if not labels:
        raise PyrovaeError(
            f"{data.name or 'the dataset'} has no labels to condition on; use the sample, "
            "mnist, or a .npz with y_train and y_test"
        )
    return int(max(int(t.max()) for t in labels)) + 1


def balanced_labels(labels: torch.Tensor, num_labelled: int, seed: int) -> torch.Tensor:
    """Indices of ``num_labelled`` datapoints to keep labelled, the same number per class.

    Parameters
    ----------
    labels
        Class of every training datapoint, ``(N,)``.
    num_labelled
        How many to keep; a multiple of the number of classes K, at most what each
        class holds times K.
    seed
        Picks which ones.
    """
    classes = int(labels.max()) + 1
    if num_labelled < classes or num_labelled % classes:
        raise PyrovaeError(
            Param("num_labelled", num_labelled),
            f": give a multiple of the {classes} classes, so that each class "
            "has the same number of labelled datapoints",
        )
    per_class = num_labelled // classes
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(classes):
        members = (labels == c).nonzero().flatten()
        if len(members) < per_class:
            raise PyrovaeError(
                Param("num_labelled", num_labelled),
                f" asks for {per_class} labelled datapoints of class {c}, "
                f"which has only {len(members)}",
            )
        picked.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
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
