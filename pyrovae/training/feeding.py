"""The training and validation data as minibatches on the training device.

Indexable data (a tensor, a tuple or dict of tensors, a Dataset) stay on the device for
the whole run when they fit, and each epoch walks them in an order drawn from its own
generator, seeded by the seed and the epoch, so that every process of a distributed
run and a resumed run see the same order. A re-iterable of batches is used as given.
Binarisation applies to the first tensor of each batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from pyrovae.data.batches import Batch, Data, Indexable, as_training_data
from pyrovae.data.binarization import Binarization, Static
from pyrovae.data.devices import place
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.processes import world

#: Minibatch size when indexable data are given without one.
DEFAULT_BATCH_SIZE = 128


def _check(data: Data, binarization: Binarization, seed: int, check: Any) -> None:
    first = data.first_batch().first if not isinstance(data, Indexable) else data.batch.first
    binarization.check(first)
    if check is not None:
        check(binarization.fixed(first, seed))


class Minibatches:
    """Training data, epoch by epoch, as :class:`~pyrovae.data.batches.Batch` es on the device.

    Parameters
    ----------
    data
        Training data in any form of :mod:`pyrovae.data.batches`.
    batch_size
        Datapoints per minibatch (indexable data only; ``None``: 128).
    binarization
        Applied to the first tensor: ``prepare`` once, ``batch`` on every minibatch.
    seed
        Seeds the binarisation and the order of the datapoints.
    device
        The training device.
    check
        The model's own data check (its contract's ``check_data``), or None.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int | None,
        binarization: Binarization,
        seed: int,
        device: torch.device,
        check: Any = None,
    ) -> None:
        self.data = as_training_data(data, "training data")
        self.binarization, self.seed, self.device = binarization, seed, device
        _check(self.data, binarization, seed, check)
        if isinstance(self.data, Indexable):
            self.batch_size = batch_size or DEFAULT_BATCH_SIZE
            batch = self.data.batch
            batch = batch.with_first(binarization.prepare(batch.first, seed))
            self.rows = batch.map(lambda t: place(t, device), rows_only=False)
            self.size: int | None = len(batch)
            self.steps: int | None = math.ceil(len(batch) / self.batch_size)
            return
        if batch_size is not None:
            raise PyrovaeError(
                Param("batch_size"),
                " does not apply to an iterable of batches, which are used as "
                "given; leave it out, or pass a tensor, tuple or dict to be batched",
            )
        if isinstance(binarization, Static):
            raise PyrovaeError(
                "static binarisation needs indexable data (a tensor, tuple or dict); use ",
                Param("binarize", "dynamic"),
                " or 'none' with an iterable of batches",
            )
        if world()[1] > 1:
            raise PyrovaeError(
                "distributed training takes indexable data (a tensor, tuple or dict), "
                "which fit shares out between the processes"
            )
        self.batch_size, self.size = None, None
        try:
            self.steps = len(self.data)  # type: ignore[arg-type]
        except TypeError:
            self.steps = None

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The epoch's minibatches from step ``start`` on, binarised, on the device."""
        batches = (
            self._indexed(epoch, start) if self.size is not None else self._streamed(epoch, start)
        )
        for batch in batches:
            yield batch.with_first(self.binarization.batch(batch.first))

    def _indexed(self, epoch: int, start: int) -> Iterator[Batch]:
        rank, size = world()
        device = self.rows.first.device
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, device=device, generator=gen)
        for step in range(start, self.steps):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.rows.index(index.tensor_split(size)[rank]).to(
                self.device, non_blocking=True
            )

    def _streamed(self, epoch: int, start: int) -> Iterator[Batch]:
        set_epoch = getattr(self.data.source, "set_epoch", None)  # type: ignore[attr-defined]
        if callable(set_epoch):  # as for DistributedSampler: a seeded, repeatable order
            set_epoch(epoch)
        for step, batch in enumerate(self.data):  # type: ignore[attr-defined]
            if step >= start:
                yield batch.to(self.device)


def validation_data(
    validation: Any, binarization: Binarization, seed: int, device: torch.device, check: Any
) -> Data | None:
    """Held-out data as the model sees them: one seeded binarisation, on the device."""
    if validation is None:
        return None
    data = as_training_data(validation, "validation data")
    _check(data, binarization, seed, check)
    return data.map(lambda b: b.with_first(binarization.heldout(b.first, seed)).to(device))
