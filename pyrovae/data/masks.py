"""Missing entries: the masking convention, and masks that hide pixels of images.

The masking convention, which pyrovae's :class:`~pyrovae.models.vae.VAE` follows and a
user's own program can follow too: the data reach ``model`` and ``guide`` as ``x`` with
the missing entries set to zero and a boolean ``mask`` (True where an entry is observed),
as keyword arguments ``model(x=..., mask=...)``; the model scores only the observed
entries (:class:`~pyrovae.parts.distributions.ObservedEntries`). :func:`as_masked` turns
data with NaN for missing entries into that form.

:data:`MASKS` are the ways ``impute`` can hide pixels of complete images, to fill them
again from the model (``pyrovae impute --mask``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pyrovae.data.batches import Batch, as_data
from pyrovae.errors import Param, PyrovaeError

#: How ``fit`` treats NaNs in the data: refuse them, or train on the observed entries.
MISSING = ("error", "mask")


def split_missing(batch: Batch) -> Batch:
    """NaNs in the first tensor become zeros and a ``mask`` keyword (True: observed)."""
    x = batch.first
    mask = torch.isfinite(x)
    filled = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    out = batch.with_first(filled)
    if "mask" in out.kwargs:
        raise PyrovaeError(
            "the data already have a 'mask' argument; ", Param("missing", "mask"), " adds one"
        )
    return Batch(out.args, {**out.kwargs, "mask": mask})


def as_masked(data: Any, name: str = "data") -> Any:
    """Data with NaNs as a zero-filled first tensor and a mask, as the convention says.

    A lone tensor ``x`` becomes ``{"x": filled, "mask": mask}`` (so ``model(x=, mask=)``);
    a tuple or dict keeps its arguments and gains ``mask``. Rows with no observed entry
    are refused: they carry no information.
    """
    if isinstance(data, torch.Tensor):
        data = {"x": data}
    elif hasattr(data, "__array__") and not isinstance(data, tuple | dict):
        data = {"x": torch.as_tensor(data, dtype=torch.get_default_dtype())}
    loaded = as_data(data, name, allow_nan=True)
    loaded = loaded.map(split_missing)
    first = loaded.first_batch() if not hasattr(loaded, "batch") else loaded.batch
    mask = first.kwargs["mask"]
    if mask.dim() > 1:
        empty = ~mask.reshape(mask.shape[0], -1).any(-1)
        if bool(empty.any()):
            rows = empty.nonzero().flatten()[:5].tolist()
            raise PyrovaeError(
                f"{name}: {int(empty.sum())} rows are missing everywhere (rows {rows}...); "
                "drop them: they carry no information"
            )
    return loaded


def _half(shape: tuple[int, ...], image_shape: tuple[int, int, int], axis: int) -> torch.Tensor:
    """True for the pixels in the second half of each image along ``axis`` (1: rows)."""
    mask = torch.zeros(image_shape, dtype=torch.bool)
    mask.narrow(axis, image_shape[axis] // 2, image_shape[axis] - image_shape[axis] // 2).fill_(
        True
    )
    return mask.reshape(-1).expand(shape).clone()


def bottom_half(shape: tuple[int, ...], image_shape: tuple[int, int, int]) -> torch.Tensor:
    """True for the pixels in the bottom half of each image."""
    return _half(shape, image_shape, 1)


def right_half(shape: tuple[int, ...], image_shape: tuple[int, int, int]) -> torch.Tensor:
    """True for the pixels in the right half of each image."""
    return _half(shape, image_shape, 2)


def random_half(shape: tuple[int, ...], image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Each pixel missing with probability 1/2 (seeded)."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=gen) < 0.5


#: Ways to say which pixels of images are missing (``pyrovae impute --mask``).
MASKS: dict[str, Callable[[tuple[int, ...], tuple[int, int, int]], torch.Tensor]] = {
    "bottom-half": bottom_half,
    "right-half": right_half,
    "random-half": random_half,
}
