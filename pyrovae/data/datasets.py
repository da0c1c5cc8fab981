"""Datasets: the bundled MNIST and MOSES samples, torchvision datasets, user arrays,
tables and sequences.

Every loader returns a :class:`DataSplit` whose ``train`` and ``test`` tensors are float32
of shape ``(N, D)``: one flattened datapoint per row. Images of 8-bit grey levels are
mapped to [0, 1] by dividing by 255; other values are kept as they are, and each
likelihood checks its own support before training. Sequences (SMILES, text) are the
exception: LongTensors ``(N, L)`` of token ids with their :class:`Vocabulary`
(:mod:`pyrovae.data.sequences`).

``DATASETS`` maps the names accepted by ``load_dataset`` (``--dataset``) to loaders;
anything else is read as a path to a ``.npy``, ``.npz`` or ``.csv`` file, or a ``.smi``
or ``.txt`` file of sequences (a ``.csv`` too, given ``column``), whose last part
(``test_fraction``) is held out unless the file names its split (:func:`holdout_size`).
Binarisation is in :mod:`pyrovae.data.binarization`.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.data.batches import non_finite_error
from pyrovae.data.sequences import (
    Vocabulary,
    default_tokenizer,
    encode_splits,
    read_csv_column,
    read_lines,
    suffix_of,
)
from pyrovae.data.tables import read_csv
from pyrovae.errors import Param, PyrovaeError

#: Images 0..TRAIN_SIZE-1 of the bundled sample train, the rest test.
SAMPLE_TRAIN_SIZE = 8000
#: The fraction of a file held out when it does not name its split.
TEST_FRACTION = 0.2
#: Files read as sequences, one a line (gzipped too: ``.smi.gz``).
SEQUENCE_SUFFIXES = (".smi", ".txt")
#: The MOSES train and test files in the package folder of the ``molsets`` wheel.
MOSES_FILES = ("dataset/data/train.csv.gz", "dataset/data/test.csv.gz")


def holdout_size(n: int, fraction: float) -> int:
    """How many of ``n`` datapoints the last ``fraction`` holds out: at least 1, at most n-1."""
    return min(n - 1, max(1, round(n * fraction)))


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise PyrovaeError(
            Param("test_fraction"), f" must lie between 0 and 1, got {test_fraction}"
        )


@dataclass
class DataSplit:
    """A train/test split of flattened datapoints (``pyrovae.Dataset`` before 0.2).

    Attributes
    ----------
    train, test
        Float32 tensors of shape ``(N, D)``; for sequences, LongTensors ``(N, L)`` of token
        ids, L the longest sequence of either split and its end token.
    train_labels, test_labels
        Integer class labels, when the source has them.
    image_shape
        ``(channels, height, width)`` when the datapoints are images, else ``None``.
    name
        Where the data came from: the name or path :func:`load_dataset` was given.
    data_dir, test_fraction
        What else :func:`load_dataset` was given, so the same split can be read again.
    vocabulary
        For sequences, the token ids (built from the training split, or given); a run
        stores it to encode data the same way when it is reloaded.
    column
        The ``.csv`` column the sequences were read from, if any.
    """

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    image_shape: tuple[int, int, int] | None = None
    name: str = ""
    data_dir: str | None = None
    test_fraction: float = TEST_FRACTION
    vocabulary: Vocabulary | None = None
    column: str | None = None

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


# ----------------------------------------------------------------------------- sequences
def load_sequences(
    source: str | Path | Sequence[str],
    tokenizer: str | None = None,
    test_fraction: float = TEST_FRACTION,
    vocabulary: Vocabulary | None = None,
    column: str | None = None,
) -> DataSplit:
    """Sequences as token ids: a ``.smi``/``.txt`` file, a CSV column, or a list of texts.

    The tokenizer defaults to ``smiles`` for a ``.smi`` file or a column named SMILES,
    else ``words``; a vocabulary's own applies when one is given. A CSV whose ``split``
    column says ``train``/``test`` names its split; otherwise the last ``test_fraction``
    of the sequences is held out. The vocabulary is built from the training part
    unless given (a reloaded run passes the one it stored).
    """
    _check_fraction(test_fraction)
    if isinstance(source, str | Path):
        texts, split = _read_sequences(Path(source), column)
        if tokenizer is None and vocabulary is None:
            tokenizer = default_tokenizer(source, column)
        name = str(source)
    elif column is not None:
        raise PyrovaeError(Param("column"), " names a column of a .csv file; leave it out")
    else:
        texts, split, name = list(source), None, "the sequences"
    if split is not None:
        train, test = _named_split(texts, split, name)
    else:
        if len(texts) < 2:
            raise PyrovaeError(f"{name} holds {len(texts)} sequence; need at least 2 to split")
        n_test = holdout_size(len(texts), test_fraction)
        train, test = texts[:-n_test], texts[-n_test:]
    return _sequence_split(train, test, tokenizer, vocabulary, name)


def _read_sequences(path: Path, column: str | None) -> tuple[list[str], list[str] | None]:
    """The texts of a sequence file, and the split it names (a CSV's ``split`` column)."""
    if suffix_of(path) == ".csv":
        if column is None:
            raise PyrovaeError(
                f"pass the {path} column that holds the sequences as ", Param("column")
            )
        return read_csv_column(path, column)
    if column is not None:
        raise PyrovaeError(Param("column"), f" names a column of a .csv file, not of {path}")
    return read_lines(path), None


def _named_split(texts: list[str], split: list[str], name: str) -> tuple[list[str], list[str]]:
    """The rows a ``split`` column marks ``train`` and ``test``."""
    other = next((s for s in split if s not in ("train", "test")), None)
    if other is not None:
        raise PyrovaeError(f"{name}'s split column holds {other!r}; expected train or test")
    train = [t for t, s in zip(texts, split, strict=True) if s == "train"]
    test = [t for t, s in zip(texts, split, strict=True) if s == "test"]
    if not train or not test:
        raise PyrovaeError(
            f"{name}'s split column names no {'train' if not train else 'test'} row"
        )
    return train, test


def _sequence_split(
    train: list[str],
    test: list[str],
    tokenizer: str | None,
    vocabulary: Vocabulary | None,
    name: str,
) -> DataSplit:
    vocab, x_train, x_test = encode_splits(train, test, tokenizer, vocabulary)
    return DataSplit(x_train, x_test, name=name, vocabulary=vocab)


def load_moses_sample(
    data_dir: str | None = None,
    tokenizer: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> DataSplit:
    """The bundled MOSES sample: 50,000 training and 5,000 test SMILES (offline; like
    ``sample``, it reads no ``data_dir``). See ``bundled/README.md`` for how it was drawn."""
    with resources.as_file(
        resources.files("pyrovae.data") / "bundled" / "moses_sample.csv.gz"
    ) as p:
        texts, split = read_csv_column(p, "SMILES")
    if split is None:
        raise PyrovaeError("the bundled MOSES sample has lost its SPLIT column; reinstall pyrovae")
    train, test = _named_split(texts, split, "the bundled MOSES sample")
    default = None if vocabulary is not None else "smiles"
    return _sequence_split(train, test, tokenizer or default, vocabulary, "moses-sample")


def load_moses(
    data_dir: str | None = None,
    tokenizer: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> DataSplit:
    """MOSES (Polykovskiy et al. 2020): 1.58 M training and 176 k test SMILES, read from the
    data files of an installed ``molsets`` wheel without importing its code (no
    ``data_dir``)."""
    folder = molsets_folder()
    train, test = (read_csv_column(folder / f, "SMILES")[0] for f in MOSES_FILES)
    default = None if vocabulary is not None else "smiles"
    return _sequence_split(train, test, tokenizer or default, vocabulary, "moses")


def molsets_folder() -> Path:
    """The package folder of the installed ``molsets`` wheel (``moses``).

    ``find_spec`` of a top-level name locates it without running its ``__init__``, which
    imports dependencies that no longer install.
    """
    try:
        spec = find_spec("moses")
    except (ImportError, ValueError):  # ValueError: a "moses" module without a spec
        spec = None
    for folder in map(Path, (spec and spec.submodule_search_locations) or []):
        if all((folder / f).is_file() for f in MOSES_FILES):
            return folder
    raise PyrovaeError(
        "the full MOSES set needs the molsets wheel: pip install --no-deps molsets (its "
        "declared dependencies do not build; pyrovae reads its data files only), or use ",
        Param("dataset", "moses-sample"),
    )


#: Named datasets of sequences: their loaders also take a tokenizer and a vocabulary.
SEQUENCE_DATASETS: dict[str, Callable[..., DataSplit]] = {
    "moses-sample": load_moses_sample,
    "moses": load_moses,
}

DATASETS: dict[str, Callable[[str | None], DataSplit]] = {
    "sample": load_sample,
    "mnist": _torchvision_loader("MNIST", "MNIST"),
    "fashion-mnist": _torchvision_loader("FashionMNIST", "Fashion-MNIST"),
    **SEQUENCE_DATASETS,
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
    tokenizer: str | None = None,
    vocabulary: Vocabulary | None = None,
    column: str | None = None,
) -> DataSplit:
    """Load a dataset by registry name (``sample``, ``mnist``, ...) or by file path.

    ``.csv`` tables keep their missing entries as NaN; ``.npy``/``.npz`` files may hold
    NaN with ``allow_nan`` (training with ``missing="mask"``). ``.smi`` and ``.txt``
    files, a ``.csv`` given ``column``, and ``moses``/``moses-sample`` are sequences
    (:func:`load_sequences`), which alone take ``tokenizer``, ``vocabulary`` and
    ``column``.
    """
    dataset = str(dataset)
    options = {"tokenizer": tokenizer, "vocabulary": vocabulary, "column": column}
    loaded = _load(dataset, data_dir, allow_nan, test_fraction, options)
    return dataclasses.replace(
        loaded,
        name=dataset,
        data_dir=data_dir,
        test_fraction=float(test_fraction),
        column=column,
    )


def fit_length(split: DataSplit, length: int) -> DataSplit:
    """Sequences padded to ``length`` positions, a model's (a run evaluated on another
    file than the one it trained on); a one-line error for a longer one."""
    parts = {}
    for name in ("train", "test"):
        x = getattr(split, name)
        needed = int((x != 0).sum(-1).max()) if x.numel() else 0
        if needed > length:
            raise PyrovaeError(
                f"a {name} sequence of {split.name} needs {needed} positions with its end "
                f"token, more than the {length} the model was built for; leave it out"
            )
        parts[name] = torch.nn.functional.pad(x[:, :length], (0, length - min(length, x.shape[1])))
    return dataclasses.replace(split, **parts)


def is_sequences(dataset: str, column: str | None = None) -> bool:
    """Whether :func:`load_dataset` reads ``dataset`` (with ``column``) as sequences."""
    if dataset in SEQUENCE_DATASETS:
        return True
    kind = suffix_of(dataset)
    return dataset not in DATASETS and (
        kind in SEQUENCE_SUFFIXES or (kind == ".csv" and column is not None)
    )


def _load(
    dataset: str,
    data_dir: str | None,
    allow_nan: bool,
    test_fraction: float,
    options: dict[str, Any],
) -> DataSplit:
    if dataset in SEQUENCE_DATASETS:
        if options["column"] is not None:
            raise PyrovaeError(Param("column"), f" names a .csv column; {dataset} has its own")
        return SEQUENCE_DATASETS[dataset](
            data_dir, tokenizer=options["tokenizer"], vocabulary=options["vocabulary"]
        )
    if dataset not in DATASETS:
        _check_fraction(test_fraction)
    if is_sequences(dataset, options["column"]):
        return load_sequences(dataset, test_fraction=test_fraction, **options)
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise PyrovaeError(
            Param(given[0]),
            f" applies to sequences only (.smi, .txt, a .csv column, "
            f"{', '.join(SEQUENCE_DATASETS)}); leave it out for {dataset}",
        )
    if dataset in DATASETS:
        return DATASETS[dataset](data_dir)
    if dataset.endswith(".csv"):
        return load_csv(dataset, test_fraction)
    if dataset.endswith((".npy", ".npz")) or Path(dataset).exists():
        return load_array(dataset, test_fraction, allow_nan=allow_nan)
    names = ", ".join(sorted(DATASETS))
    raise PyrovaeError(
        f"unknown dataset {dataset!r}; choose one of: {names}, or a .npy/.npz/.csv path"
    )
