"""Data: the bundled MNIST sample, torchvision datasets, user arrays, and binarisation.

Every loader returns a :class:`Dataset` whose ``train`` and ``test`` tensors are float32
of shape ``(N, D)``: one flattened datapoint per row. Images of 8-bit grey levels are
mapped to [0, 1] by dividing by 255; other values are kept as they are, and each
likelihood checks its own support before training.

``DATASETS`` maps the names accepted by ``--dataset`` to loaders; anything else is read
as a path to a ``.npy`` or ``.npz`` file. ``BINARIZATIONS`` maps the names accepted by
``--binarize`` to the three schemes:

* ``dynamic``: a fresh Bernoulli draw of every pixel for every minibatch (the standard
  for "dynamically binarised MNIST"; held-out data get one seeded draw);
* ``static``: one seeded draw of the whole dataset, used for every epoch;
* ``none``: the values as they are (grey levels need a likelihood for grey levels).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.registry import lookup

#: Images 0..TRAIN_SIZE-1 of the bundled sample train, the rest test.
SAMPLE_TRAIN_SIZE = 8000


@dataclass
class Dataset:
    """A train/test split of flattened datapoints.

    Attributes
    ----------
    train, test
        Float32 tensors of shape ``(N, D)``.
    train_labels, test_labels
        Integer class labels, when the source has them.
    image_shape
        ``(channels, height, width)`` when the datapoints are images, else ``None``.
    name
        Where the data came from (a dataset name or a path).
    """

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    image_shape: tuple[int, int, int] | None = None
    name: str = ""

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
        raise PyrovaeError(
            f"{source} contains {bad} NaN or infinite values; remove or impute them, or train "
            "on the observed entries (--missing mask)"
        )
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
def load_sample(data_dir: str | None = None) -> Dataset:
    """The bundled sample: MNIST's official 10,000 test images, split 8,000 / 2,000."""
    files = resources.files("pyrovae") / "data"
    with resources.as_file(files / "t10k-images-idx3-ubyte.gz") as p:
        images = read_idx(p)
    with resources.as_file(files / "t10k-labels-idx1-ubyte.gz") as p:
        labels = torch.from_numpy(read_idx(p).astype(np.int64))
    x, shape = _flatten(images, "the bundled sample")
    x = _as_float(x, "the bundled sample")
    n = SAMPLE_TRAIN_SIZE
    return Dataset(x[:n], x[n:], labels[:n], labels[n:], shape, "sample")


def _torchvision_loader(cls_name: str, label: str) -> Callable[[str | None], Dataset]:
    def load(data_dir: str | None = None) -> Dataset:
        import torchvision  # heavy import, only when a torchvision dataset is asked for

        cls = getattr(torchvision.datasets, cls_name)
        root = data_dir or str(Path.home() / ".cache" / "pyrovae")
        splits = []
        for train in (True, False):
            try:
                ds = cls(root, train=train, download=data_dir is None)
            except Exception as err:  # torchvision raises RuntimeError, URLError, OSError...
                where = f"in --data-dir {data_dir}" if data_dir else f"online (into {root})"
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise PyrovaeError(
                    f"cannot load {label} {where}: {reason}; "
                    "pass --data-dir with the torchvision files, or use --dataset sample"
                ) from None
            images, shape = _flatten(ds.data.numpy(), label)
            splits.append((_as_float(images, label), ds.targets.clone().long(), shape))
        (xtr, ytr, shape), (xte, yte, _) = splits
        return Dataset(xtr, xte, ytr, yte, shape, label)

    load.__doc__ = f"{label} through torchvision: downloaded, or read from ``data_dir``."
    return load


def load_array(path: str | Path, test_fraction: float = 0.2, allow_nan: bool = False) -> Dataset:
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
        n_test = min(len(x) - 1, max(1, round(len(x) * test_fraction)))
        xtr, xte = x[:-n_test], x[-n_test:]
        y = arrays.get("y")
        ytr, yte = (y[:-n_test], y[-n_test:]) if y is not None else (None, None)

    def labels(y: np.ndarray | None) -> torch.Tensor | None:
        return None if y is None else torch.as_tensor(np.asarray(y, dtype=np.int64))

    return Dataset(
        _as_float(xtr, source, allow_nan),
        _as_float(xte, source, allow_nan),
        labels(ytr),
        labels(yte),
        shape,
        source,
    )


DATASETS: dict[str, Callable[[str | None], Dataset]] = {
    "sample": load_sample,
    "mnist": _torchvision_loader("MNIST", "MNIST"),
    "fashion-mnist": _torchvision_loader("FashionMNIST", "Fashion-MNIST"),
}


def load_csv(path: str | Path, test_fraction: float = 0.2) -> Dataset:
    """A numeric ``.csv`` table (see :mod:`pyrovae.tables`); the last part is held out.

    Empty cells and ``NaN`` are kept as NaN: train on them with ``--missing mask``.
    """
    from pyrovae.tables import read_csv

    values, _ = read_csv(path)
    if len(values) < 2:
        raise PyrovaeError(f"{path} holds {len(values)} datapoint; need at least 2 to split")
    n_test = min(len(values) - 1, max(1, round(len(values) * test_fraction)))
    x = torch.from_numpy(values).float()
    return Dataset(x[:-n_test], x[-n_test:], name=str(path))


def load_dataset(
    name: str, data_dir: str | None = None, allow_nan: bool = False, test_fraction: float = 0.2
) -> Dataset:
    """Load a dataset by registry name (``sample``, ``mnist``, ...) or by file path.

    ``.csv`` tables keep their missing entries as NaN; ``.npy``/``.npz`` files may hold
    NaN with ``allow_nan`` (training with ``missing="mask"``).
    """
    if name in DATASETS:
        return DATASETS[name](data_dir)
    if not 0 < test_fraction < 1:
        raise PyrovaeError(f"test_fraction must lie between 0 and 1, got {test_fraction}")
    if name.endswith(".csv"):
        return load_csv(name, test_fraction)
    if name.endswith((".npy", ".npz")) or Path(name).exists():
        return load_array(name, test_fraction, allow_nan=allow_nan)
    names = ", ".join(sorted(DATASETS))
    raise PyrovaeError(
        f"unknown dataset {name!r}; choose one of: {names}, or a .npy/.npz/.csv path"
    )


# ------------------------------------------------------------------------------ labels
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
#: :class:`pyrovae.semisupervised.SemiSupervisedBatches`). Either way the model is told
#: the number of classes.
LABEL_USES: dict[str, Callable[[Any, torch.Tensor | None], Any]] = {
    "condition": _as_condition,
    "semi-supervised": _summed_out,
}


def with_labels(x: Any, labels: torch.Tensor | None, use: str | None) -> Any:
    """The data the programs take given the labels' use (None: ``x`` itself)."""
    return x if use is None else lookup(LABEL_USES, use, "use of labels")(x, labels)


def num_classes(data: Dataset) -> int:
    """How many classes the labels of both splits name (the largest label, plus one)."""
    labels = [t for t in (data.train_labels, data.test_labels) if t is not None]
    if not labels:
        raise PyrovaeError(
            f"{data.name or 'the dataset'} has no labels to condition on; use the sample, "
            "mnist, or a .npz with y_train and y_test"
        )
    return int(max(int(t.max()) for t in labels)) + 1


# ------------------------------------------------------------------------ binarisation
class Binarization:
    """How observations are binarised.

    ``prepare`` runs once on the training set, ``batch`` on every minibatch, and
    ``fixed`` gives the one seeded version used for held-out evaluation.
    """

    def prepare(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        return x

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fixed(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        return x

    def check(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` can be binarised by this scheme."""

    def heldout(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """The one seeded version of held-out data that every evaluation of a run uses."""
        return self.fixed(x, seed + 1)


def _seeded_bernoulli(x: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    return torch.bernoulli(x, generator=gen)


class _Binarizing(Binarization):
    def check(self, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise PyrovaeError(
                f"binarisation needs values in [0, 1] but the data range over [{lo:g}, {hi:g}]; "
                "rescale them or use --binarize none with a likelihood for such values"
            )

    def fixed(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        return _seeded_bernoulli(x, seed)


class Dynamic(_Binarizing):
    """A fresh Bernoulli draw per minibatch.

    Drawn as ``uniform < p``: the same distribution as ``torch.bernoulli(p)`` at a
    quarter of its cost on the CPU (where it took a fifth of a training step).
    """

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.rand(x.shape, dtype=x.dtype, device=x.device) < x).to(x.dtype)


class Static(_Binarizing):
    """One seeded Bernoulli draw of the training set."""

    def prepare(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        return _seeded_bernoulli(x, seed)


BINARIZATIONS: dict[str, type[Binarization]] = {
    "dynamic": Dynamic,
    "static": Static,
    "none": Binarization,
}


def get_binarization(name: str) -> Binarization:
    """The binarisation scheme called ``name`` (a key of ``BINARIZATIONS``)."""
    return lookup(BINARIZATIONS, name, "binarization")()
