"""Named arrays: the data of a user's own model, passed to ``model`` and ``guide`` by name.

A ``.npz`` whose arrays are passed to ``model`` and ``guide`` as keyword arguments:
arrays named ``NAME_train`` / ``NAME_test`` give the split, otherwise the last 20% of
every array is held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyrovae.data.batches import as_data
from pyrovae.data.datasets import TEST_FRACTION, holdout_size
from pyrovae.errors import Param, PyrovaeError


@dataclass
class NamedArrays:
    """Training and held-out arrays by name, as keyword arguments of model and guide.

    ``image_shape`` and ``test_labels`` are None: the figures of image runs do not apply.
    """

    train: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]
    source: str
    image_shape: tuple | None = None
    test_labels: torch.Tensor | None = None


def _tensor(array: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.to(torch.get_default_dtype()) if t.is_floating_point() else t


def load_named_arrays(path: str | Path, test_fraction: float = TEST_FRACTION) -> NamedArrays:
    """The arrays of a ``.npz``, split by their names or by holding out the last part."""
    path = Path(path)
    if path.suffix != ".npz" or not path.is_file():
        raise PyrovaeError(
            Param("dataset", str(path)), ": a user model takes a .npz file of named arrays"
        )
    try:
        with np.load(path, allow_pickle=False) as loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    except Exception as err:  # pickled objects, corrupt zip, ...
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    if not arrays:
        raise PyrovaeError(f"{path} holds no arrays")
    named = [k for k in arrays if k.endswith(("_train", "_test"))]
    if named:
        names = {k.rsplit("_", 1)[0] for k in arrays}
        missing = [
            f"{n}_{s}"
            for n in sorted(names)
            for s in ("train", "test")
            if f"{n}_{s}" not in arrays
        ]
        if missing or len(named) != len(arrays):
            raise PyrovaeError(
                f"{path}: name every array NAME_train and NAME_test, or none of them "
                f"(missing: {', '.join(missing) or 'the split of some arrays'})"
            )
        train = {n: _tensor(arrays[f"{n}_train"]) for n in sorted(names)}
        test = {n: _tensor(arrays[f"{n}_test"]) for n in sorted(names)}
    else:
        lengths = {len(a) if a.ndim else 0 for a in arrays.values()}
        if len(lengths) != 1 or min(lengths) < 2:
            raise PyrovaeError(
                f"{path}: every array needs the same number (>= 2) of rows to be split"
            )
        n = lengths.pop()
        n_test = holdout_size(n, test_fraction)
        train = {k: _tensor(a[:-n_test]) for k, a in arrays.items()}
        test = {k: _tensor(a[-n_test:]) for k, a in arrays.items()}
    as_data(train, f"{path} (training arrays)")
    as_data(test, f"{path} (held-out arrays)")
    return NamedArrays(train, test, str(path))
