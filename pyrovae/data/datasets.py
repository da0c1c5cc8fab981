"""Datasets: the bundled MNIST sample, torchvision datasets, user arrays and tables.

Every loader returns a :class:`DataSplit` whose ``train`` and ``test`` tensors are float32
of shape ``(N, D)``: one flattened datapoint per row. Images of 8-bit grey levels are
mapped to [0, 1] by dividing by 255; other values are kept as they are, and each
likelihood checks its own support before training.

``DATASETS`` maps the names accepted by ``load_dataset`` (``--dataset``) to loaders;
anything else is read as a path to a ``.npy``, ``.npz`` or ``.csv`` file, whose last
part (``test_fraction``) is held out unless the file names its split
(:func:`holdout_size`). Binarisation is in :mod:`pyrovae.data.binarization`.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from pyrovae.data.batches import non_finite_error
from pyrovae.data.tables import read_csv
from pyrovae.errors import Param, PyrovaeError

#: Images 0..TRAIN_SIZE-1 of the bundled sample train, the rest test.
SAMPLE_TRAIN_SIZE = 8000
#: The fraction of a file held out when it does not name its split.
TEST_FRACTION = 0.2


def holdout_size(n: int, fraction: float) -> int:
    """How many of ``n`` datapoints the last ``fraction`` holds out: at least 1, at most n-1."""
    return min(n - 1, max(1, round(n * fraction)))


@dataclass
class DataSplit:
    """A train/test split of flattened datapoints (``pyrovae.Dataset`` before 0.2).

    Attributes
    ----------
    train, test
        Float32 tensors of shape ``(N, D)``.
    train_labels, test_labels
        Integer class labels, when the source has them.
    image_shape
        ``(channels, height, width)`` when the datapoints are images, else ``None``.
    name
        Where the data came from: the name or path :func:`load_dataset` was given.
    data_dir, test_fraction
        What else :func:`load_dataset` was given, so the same split can be read again.
    """

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    image_shape: tuple[int, int, int] | None = None
    name: str = ""
    data_dir: str | None = None
    test_fraction: float = TEST_FRACTION

    @property
    def x_dim(self) -> int:
        return int(self.train.shape[1])


# ----------------------------------------------------------------------------- readers
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed), as published for MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise PyrovaeError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise PyrovaeError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + math.prod(shape):
        raise PyrovaeError(f"{path} is truncated or corrupt: its header says shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _as_float(array: np.ndarray, source: str, allow_nan: bool = False) -> torch.Tensor:
    """uint8 grey levels to [0, 1]; other numbers kept; NaN (unless allowed, as missing
    entries), Inf and non-numbers refused."""
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise PyrovaeError(f"{source} holds {array.dtype} values; expected numbers")
    out = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    bad = int((torch.isinf(out) if allow_nan else ~torch.isfinite(out)).sum())
    if bad:
        raise non_finite_error(source, bad)
    return out


def _flatten(array: np.ndarray, source: str) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """(N, H, W), (N, C, H, W) or (N, D) to (N, D) plus the image shape, if any."""
    if array.ndim == 3:
        shape: tuple[int, int, int] | None = (1, array.shape[1], array.shape[2])
    elif array.ndim == 4:
        shape = (array.shape[1], array.shape[2], array.shape[3])
    elif array.ndim == 2:
        side = math.isqrt(array.shape[1])
        shape = (1, side, side) if side * side == array.shape[1] and side > 1 else None
    else:
        raise PyrovaeError(
            f"{source} has shape {array.shape}; expected (N, H, W), (N, C, H, W) or (N, D)"
        )
    if array.shape[0] == 0:
        raise PyrovaeError(f"{source} is empty: it holds no datapoints")
    return array.reshape(array.shape[0], -1), shape


# ----------------------------------------------------------------------------- loaders
def load_sample(data_dir: str | None = None) -> DataSplit:
    """The bundled sample: MNIST's official 10,000 test images, split 8,000 / 2,000."""
    files = resources.files("pyrovae.data") / "bundled"
    with resources.as_file(files / "t10k-images-idx3-ubyte.gz") as p:
        images = read_idx(p)
    with resources.as_file(files / "t10k-labels-idx1-ubyte.gz") as p:
        labels = torch.from_numpy(read_idx(p).astype(np.int64))
    x, shape = _flatten(images, "the bundled sample")
    x = _as_float(x, "the bundled sample")
    n = SAMPLE_TRAIN_SIZE
    return DataSplit(x[:n], x[n:], labels[:n], labels[n:], shape, "sample")


def _torchvision_loader(cls_name: str, label: str) -> Callable[[str | None], DataSplit]:
    def load(data_dir: str | None = None) -> DataSplit:
        import torchvision  # heavy import, only when a torchvision dataset is asked for

        cls = getattr(torchvision.datasets, cls_name)
        root = data_dir or str(Path.home() / ".cache" / "pyrovae")
        splits = []
        for train in (True, False):
            try:
                ds = cls(root, train=train, download=data_dir is None)
            except Exception as err:  # torchvision raises RuntimeError, URLError, OSError...
                raise _not_loaded(label, err, data_dir, root) from None
            images, shape = _flatten(ds.data.numpy(), label)
            splits.append((_as_float(images, label), ds.targets.clone().long(), shape))
        (xtr, ytr, shape), (xte, yte, _) = splits
        return DataSplit(xtr, xte, ytr, yte, shape, label)

    load.__doc__ = f"{label} through torchvision: downloaded, or read from ``data_dir``."
    return load


def _not_loaded(label: str, err: Exception, data_dir: str | None, root: str) -> PyrovaeError:
    """The error for a torchvision dataset that neither loads from disk nor downloads."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    where = ("in ", Param("data_dir", data_dir)) if data_dir else (f"online (into {root})",)
    return PyrovaeError(
        f"cannot load {label} ",
        *where,
        f": {reason}; pass ",
        Param("data_dir"),
        " with the torchvision files, or use ",
        Param("dataset", "sample"),
    )


def load_array(
    path: str | Path, test_fraction: float = TEST_FRACTION, allow_nan: bool = False
) -> DataSplit:
    """A user's ``.npy`` or ``.npz`` file (NaN entries allowed with ``allow_nan``).

    A ``.npz`` with ``x_train`` and ``x_test`` (and optionally ``y_train``, ``y_test``)
    gives the split; otherwise the single array (``.npy``, or the ``.npz``'s ``x`` or only
    array) is split so that its last ``test_fraction`` is held out.
    """
    path = Path(path)
    if not path.exists():
        raise PyrovaeError(f"data file {path} does not exist")
    if path.suffix not in (".npy", ".npz"):
        raise PyrovaeError(f"data file {path} must be .npy or .npz")
    with open(path, "rb") as f:
        magic = f.read(6)
    expected = b"PK\x03\x04" if path.suffix == ".npz" else b"\x93NUMPY"
    if not magic.startswith(expected):
        writer = "numpy.savez" if path.suffix == ".npz" else "numpy.save"
        raise PyrovaeError(f"{path} is corrupt or not a {path.suffix} file (written by {writer})")
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays = {k: loaded[k] for k in loaded.files} if path.suffix == ".npz" else {"x": loaded}
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickled" in str(err):
            raise PyrovaeError(
                f"{path} holds Python objects; pyrovae reads numeric arrays only"
            ) from None
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    except Exception as err:  # OSError, zipfile errors, truncated data...
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    source = str(path)
    if "x_train" in arrays and "x_test" in arrays:
        xtr, shape = _flatten(arrays["x_train"], f"{source}[x_train]")
        xte, _ = _flatten(arrays["x_test"], f"{source}[x_test]")
        ytr, yte = arrays.get("y_train"), arrays.get("y_test")
    else:
        key = "x" if "x" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise PyrovaeError(
                f"{path} holds arrays {sorted(arrays)}; name them x_train/x_test or x"
            )
        x, shape = _flatten(arrays[key], source)
        if len(x) < 2:
            raise PyrovaeError(f"{source} holds {len(x)} datapoint; need at least 2 to split")
        n_test = holdout_size(len(x), test_fraction)
        xtr, xte = x[:-n_test], x[-n_test:]
        y = arrays.get("y")
        ytr, yte = (y[:-n_test], y[-n_test:]) if y is not None else (None, None)

    def labels(y: np.ndarray | None) -> torch.Tensor | None:
        return None if y is None else torch.as_tensor(np.asarray(y, dtype=np.int64))

    return DataSplit(
        _as_float(xtr, source, allow_nan),
        _as_float(xte, source, allow_nan),
        labels(ytr),
        labels(yte),
        shape,
        source,
    )


DATASETS: dict[str, Callable[[str | None], DataSplit]] = {
    "sample": load_sample,
    "mnist": _torchvision_loader("MNIST", "MNIST"),
    "fashion-mnist": _torchvision_loader("FashionMNIST", "Fashion-MNIST"),
}


def load_csv(path: str | Path, test_fraction: float = TEST_FRACTION) -> DataSplit:
    """A numeric ``.csv`` table (see :mod:`pyrovae.data.tables`); the last part is held out.

    Empty cells and ``NaN`` are kept as NaN: train on them with ``missing="mask"``.
    """
    values, _ = read_csv(path)
    if len(values) < 2:
        raise PyrovaeError(f"{path} holds {len(values)} datapoint; need at least 2 to split")
    n_test = holdout_size(len(values), test_fraction)
    x = torch.from_numpy(values).float()
    return DataSplit(x[:-n_test], x[-n_test:], name=str(path))


def load_dataset(
    dataset: str,
    data_dir: str | None = None,
    allow_nan: bool = False,
    test_fraction: float = TEST_FRACTION,
) -> DataSplit:
    """Load a dataset by registry name (``sample``, ``mnist``, ...) or by file path.

    ``.csv`` tables keep their missing entries as NaN; ``.npy``/``.npz`` files may hold
    NaN with ``allow_nan`` (training with ``missing="mask"``).
    """
    dataset = str(dataset)
    loaded = _load(dataset, data_dir, allow_nan, test_fraction)
    return dataclasses.replace(
        loaded, name=dataset, data_dir=data_dir, test_fraction=float(test_fraction)
    )


def _load(dataset: str, data_dir: str | None, allow_nan: bool, test_fraction: float) -> DataSplit:
    if dataset in DATASETS:
        return DATASETS[dataset](data_dir)
    if not 0 < test_fraction < 1:
        raise PyrovaeError(
            Param("test_fraction"), f" must lie between 0 and 1, got {test_fraction}"
        )
    if dataset.endswith(".csv"):
        return load_csv(dataset, test_fraction)
    if dataset.endswith((".npy", ".npz")) or Path(dataset).exists():
        return load_array(dataset, test_fraction, allow_nan=allow_nan)
    names = ", ".join(sorted(DATASETS))
    raise PyrovaeError(
        f"unknown dataset {dataset!r}; choose one of: {names}, or a .npy/.npz/.csv path"
    )
