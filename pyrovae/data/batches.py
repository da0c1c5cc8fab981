"""Data in any shape: the arguments that ``model`` and ``guide`` are called with.

A Pyro program takes whatever its author chose: ``model(x)``, ``model(xs, ys)``,
``model(counts=..., batch_index=...)``. Everywhere pyrovae takes data (``fit``, its
validation, the estimators of log p(x), the applications), it accepts

* a tensor or array: one argument, ``model(x)``;
* a tuple of tensors or arrays (``None`` allowed): ``model(*batch)``;
* a dict of them: ``model(**batch)``;
* a map-style ``torch.utils.data.Dataset``, whose items are collated once;
* any other re-iterable of batches (a list, a ``DataLoader``, a user's own iterable),
  each item a tensor, tuple or dict, used as given, one minibatch each.

The first four are *indexable*: their tensors share the first (datapoint) axis and
minibatches are indexed from them on the device. A re-iterable is *streamed*: its
batches are taken as they come, so a user can interleave labelled ``(x, y)`` and
unlabelled ``(x,)`` batches as Pyro's semi-supervised VAE does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from pyrovae.errors import Param, PyrovaeError

#: Datapoints in the batch that a program is first traced on to learn its shape.
PROBE_SIZE = 5


def _tensor(value: Any) -> Any:
    """Arrays become tensors (floating ones in torch's default dtype); others pass."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
        if value.is_floating_point():
            value = value.to(torch.get_default_dtype())
    return value


@dataclass
class Batch:
    """One call's arguments: ``model(*args, **kwargs)``.

    Attributes
    ----------
    args, kwargs
        The positional and keyword arguments; tensors among them whose first axis has
        the batch's size hold one row per datapoint.
    """

    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, item: Any) -> Batch:
        """A tensor, tuple/list or dict as the arguments it stands for."""
        if isinstance(item, Batch):
            return item
        if isinstance(item, dict):
            return cls((), {k: _tensor(v) for k, v in item.items()})
        if isinstance(item, tuple | list):
            return cls(tuple(_tensor(v) for v in item))
        return cls((_tensor(item),))

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor argument, positional first."""
        values = list(self.args) + list(self.kwargs.values())
        return [v for v in values if isinstance(v, torch.Tensor)]

    @property
    def first(self) -> torch.Tensor:
        """The first tensor argument: the one binarisation applies to."""
        tensors = self.tensors()
        if not tensors:
            raise PyrovaeError("a batch of data must hold at least one tensor")
        return tensors[0]

    def __len__(self) -> int:
        """Datapoints: the length of the first tensor's first axis."""
        first = self.first
        if first.dim() == 0:
            raise PyrovaeError("data tensors need a datapoint axis first; got a 0-dim tensor")
        return first.shape[0]

    def map(self, fn: Callable[[torch.Tensor], Any], rows_only: bool = True) -> Batch:
        """Apply ``fn`` to every tensor (with ``rows_only``, those with a row per datapoint)."""
        n = len(self)

        def apply(v: Any) -> Any:
            is_rows = isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n
            if isinstance(v, torch.Tensor) and (is_rows or not rows_only):
                return fn(v)
            return v

        return Batch(
            tuple(apply(v) for v in self.args), {k: apply(v) for k, v in self.kwargs.items()}
        )

    def index(self, index: torch.Tensor | slice) -> Batch:
        """The datapoints at ``index`` (a slice or a tensor of indices)."""
        return self.map(
            lambda t: t[index.to(t.device) if isinstance(index, torch.Tensor) else index]
        )

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """Every tensor on ``device``."""
        return self.map(lambda t: t.to(device, non_blocking=non_blocking), rows_only=False)

    def repeat_interleave(self, k: int) -> Batch:
        """Each datapoint k times in a row: rows i*k ... i*k + k - 1 are datapoint i."""
        return self.map(lambda t: t.repeat_interleave(k, dim=0))

    def with_first(self, value: torch.Tensor) -> Batch:
        """The same arguments with the first tensor replaced (binarised, say)."""
        first = self.first
        args = tuple(value if v is first else v for v in self.args)
        if any(v is value for v in args):
            return Batch(args, dict(self.kwargs))
        kwargs = {k: (value if v is first else v) for k, v in self.kwargs.items()}
        return Batch(args, kwargs)

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*self.args, *args, **self.kwargs, **kwargs)``."""
        return fn(*self.args, *args, **self.kwargs, **kwargs)


def check_rows(batch: Batch, name: str, allow_nan: bool = False, values: bool = True) -> None:
    """Raise unless the tensors share the first axis and (unless allowed) floats are finite.

    ``values=False`` checks the shapes only (no pass over the numbers, no device sync).
    """
    n = len(batch)
    if n == 0:
        raise PyrovaeError(f"{name} is empty: it holds no datapoints")
    for i, t in enumerate(batch.tensors()):
        if t.dim() == 0 or t.shape[0] != n:
            shape = tuple(t.shape)
            raise PyrovaeError(
                f"{name}: tensor {i} has shape {shape} but the first has {n} datapoints; "
                "every tensor needs one row per datapoint along its first axis"
            )
        if not values or not t.is_floating_point():
            continue
        if allow_nan and bool(torch.isinf(t).any()):
            raise PyrovaeError(f"{name} contains infinite values; only NaN means missing")
        if not allow_nan and not bool(torch.isfinite(t).all()):
            raise non_finite_error(name, int((~torch.isfinite(t)).sum()))


def non_finite_error(source: str, count: int) -> PyrovaeError:
    """The error for data holding ``count`` NaN or infinite values."""
    return PyrovaeError(
        f"{source} contains {count} NaN or infinite values; remove or impute them, or train "
        "on the observed entries (",
        Param("missing", "mask"),
        ")",
    )


class Data:
    """Data as pyrovae reads them: ``passes`` yields batches covering every datapoint."""

    indexable: bool = False

    def passes(self, batch_size: int | None) -> Iterator[Batch]:
        """Batches in order, each of at most ``batch_size`` datapoints."""
        raise NotImplementedError

    def first_batch(self) -> Batch:
        """A small batch for probing the program (a few datapoints)."""
        return next(iter(self.passes(None))).index(slice(0, PROBE_SIZE))

    def map(self, fn: Callable[[Batch], Batch]) -> Data:
        """The same data with ``fn`` applied to every batch (at once when indexable)."""
        raise NotImplementedError


class Indexable(Data):
    """Tensors sharing their first axis, indexed into minibatches.

    Attributes
    ----------
    batch
        All datapoints as one :class:`Batch`.
    """

    indexable = True

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch)

    def passes(self, batch_size: int | None) -> Iterator[Batch]:
        n = len(self)
        size = n if batch_size is None else max(1, int(batch_size))
        for start in range(0, n, size):
            yield self.batch.index(slice(start, min(start + size, n)))

    def first_batch(self) -> Batch:
        return self.batch.index(slice(0, PROBE_SIZE))

    def map(self, fn: Callable[[Batch], Batch]) -> Indexable:
        return Indexable(fn(self.batch))


class Stream(Data):
    """A re-iterable of batches, used as given (larger batches split for evaluation)."""

    def __init__(
        self,
        source: Iterable,
        name: str,
        fn: Callable[[Batch], Batch] | None = None,
        allow_nan: bool = False,
    ) -> None:
        self.source, self.name, self.fn, self.allow_nan = source, name, fn, allow_nan
        self._checked = False

    def __len__(self) -> int:
        """Batches per pass, when the source knows (``TypeError`` otherwise)."""
        return len(self.source)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        checked = self._checked  # values are checked on the first full pass only
        for item in self.source:
            batch = Batch.of(item)
            check_rows(batch, self.name, allow_nan=self.allow_nan, values=not checked)
            yield self.fn(batch) if self.fn is not None else batch
        self._checked = True

    def map(self, fn: Callable[[Batch], Batch]) -> Stream:
        inner = self.fn
        mapped = fn if inner is None else lambda b: fn(inner(b))
        return Stream(self.source, self.name, mapped, self.allow_nan)

    def passes(self, batch_size: int | None) -> Iterator[Batch]:
        for batch in self:
            yield from Indexable(batch).passes(batch_size)

    def first_batch(self) -> Batch:
        for batch in self:
            return batch.index(slice(0, PROBE_SIZE))
        raise PyrovaeError(f"{self.name} is empty: its iterator yielded no batch")


def _collate(dataset: Dataset, name: str) -> Batch:
    try:
        items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    except TypeError:
        raise PyrovaeError(f"{name} is a Dataset without __len__; pass a DataLoader") from None
    if not items:
        raise PyrovaeError(f"{name} is empty: it holds no datapoints")
    return Batch.of(default_collate(items))


def as_data(data: Any, name: str = "data", allow_nan: bool = False) -> Data:
    """Read ``data`` in any of the accepted forms (see the module docstring).

    ``allow_nan`` lets NaNs through (they mean missing entries, see :mod:`pyrovae.data.masks`).
    """
    if isinstance(data, Data):
        return data
    if data is None:
        raise PyrovaeError(f"{name} is None; pass a tensor, tuple, dict or iterable of batches")
    if isinstance(data, torch.Tensor | np.ndarray | tuple | dict):
        batch = Batch.of(data)
    elif isinstance(data, Dataset) and hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        batch = _collate(data, name)
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        if iter(data) is data:
            raise PyrovaeError(
                f"{name} is a one-shot iterator; pass something that can be iterated again "
                "every epoch (a list of batches, a DataLoader, an object with __iter__)"
            )
        return Stream(data, name, allow_nan=allow_nan)
    else:
        raise PyrovaeError(
            f"{name} must be a tensor, array, tuple, dict, Dataset or iterable of batches, "
            f"not {type(data).__name__}"
        )
    check_rows(batch, name, allow_nan)
    return Indexable(batch)


def as_training_data(data: Any, name: str = "data") -> Data:
    """:func:`as_data`, with a lone tensor or array read by :func:`as_tensor_data`."""
    if isinstance(data, torch.Tensor | np.ndarray):
        return Indexable(Batch((as_tensor_data(data, name),)))
    return as_data(data, name)


def as_tensor_data(data: Any, name: str = "data") -> torch.Tensor:
    """One float tensor, batch dimension first: uint8 grey levels are divided by 255."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if not isinstance(data, torch.Tensor):
        raise PyrovaeError(
            f"{name} must be a torch tensor or numpy array, not {type(data).__name__}"
        )
    if data.dim() == 0 or data.shape[0] == 0:
        raise PyrovaeError(f"{name} is empty: it holds no datapoints")
    if data.dtype == torch.uint8:
        data = data.float() / 255
    data = data.float()
    check_rows(Batch((data,)), name)
    return data
