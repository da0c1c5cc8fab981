"""A run's ``config.json``: its format, the one upgrade of older configs, the files it names.

Format 2, written by this pyrovae::

    {"format_version": 2, "pyrovae_version": "...",
     "model": {"kind": "vae", "variant": "vae", "x_dim": 784, "z_dim": 50, ...}
              or {"kind": "user", "source": "/abs/path/model.py:Class", "kwargs": {...}},
     "data":  {"dataset": "sample" or "/abs/path/table.csv", "data_dir", "binarize",
               "standardize", "standardizer", "test_fraction", "labels", "labelled",
               "tokenizer", "column", "vocabulary", "n_train", "n_test"},
     "train": {"epochs", "batch_size", "lr", "loss", "num_particles", "beta",
               "kl_warmup", "kl_cycles", "free_bits", "free_bits_per_unit", "seed", "precision",
               "checkpoint_every", "early_stopping",
               "on_nan", "missing"},
     "files": {"dataset": "../table.csv", "model": "../model.py"}}

Every key is written, so code that reads a config reads keys, not guesses. Configs that
older pyrovae wrote (format 1: no ``format_version``, keys added over time, files as
typed) are brought to format 2 by :func:`upgrade`, the one place that knows what a
missing key meant. ``files`` holds the paths of the files a run names relative to the
run folder, so that a run moved together with its files still finds them, from any
working directory (:func:`locate`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from pyrovae.data.datasets import DATASETS, TEST_FRACTION
from pyrovae.errors import Param, PyrovaeError

#: The config format this pyrovae writes.
FORMAT_VERSION = 2
#: A run folder's files.
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"

#: What a training setting meant when a format-1 config lacks it.
_V1_TRAIN = {
    "missing": "error",
    "on_nan": "stop",
    "checkpoint_every": None,
    "free_bits": 0.0,
    "beta": 1.0,
    "kl_warmup": 0.0,
    "num_particles": None,
}
#: The same for the data settings.
_V1_DATA = {
    "data_dir": None,
    "standardize": False,
    "standardizer": None,
    "test_fraction": TEST_FRACTION,
    "labels": None,
}
#: The same for the built-in VAE's settings, and for each variant's own.
_V1_VAE = {"variant": "vae", "init": "default", "num_classes": None}
_V1_VARIANTS = {
    "vae": {},
    "semi-supervised": {"classifier": "mlp"},
    "clusters": {"init_after": 0, "learn_weights": True},
}
#: Keys added to format 2 after it was first written, and what their absence meant.
_V2_ADDED = {
    "data": {"tokenizer": None, "column": None, "vocabulary": None},
    "train": {"kl_cycles": 0, "free_bits_per_unit": False, "early_stopping": 0},
}
#: The same for the built-in VAE's settings.
_V2_ADDED_VAE = {"vocab_size": None}
#: Keys of the built-in VAE's settings renamed in format 2.
_V1_RENAMED = {"guide": "posterior", "guide_kwargs": "posterior_kwargs"}


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` in the current format: every rule for configs of older pyrovae.

    Returns a new dict; a config already in the current format comes back with the keys
    added to it since (``_V2_ADDED``) at the values their absence meant.
    """
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PyrovaeError(
            f"the run's config has format version {version}; this pyrovae reads versions "
            f"up to {FORMAT_VERSION}: upgrade pyrovae"
        )
    config = copy.deepcopy(config)
    if version == 1:
        config["model"] = upgrade_model(config.get("model", {}), 1)
        config["data"] = {**_V1_DATA, **config.get("data", {})}
        config["train"] = _v1_train(config.get("train", {}))
        config.setdefault("files", {})
        config["format_version"] = FORMAT_VERSION
    elif "model" in config:
        config["model"] = upgrade_model(config["model"], version)
    for part, added in _V2_ADDED.items():
        if part in config:
            config[part] = {**added, **config[part]}
    return config


def upgrade_model(model: dict[str, Any], version: int) -> dict[str, Any]:
    """The model part of a config of format ``version`` in the current format.

    Also what a format-1 checkpoint's ``model_config`` is upgraded with.
    """
    model = dict(model)
    kind = model.setdefault("kind", "vae")
    if kind != "vae":
        return model
    if version == 1:
        for old, new in _V1_RENAMED.items():
            if old in model:
                model[new] = model.pop(old)
        model = {"kind": kind, **_V1_VAE, **model}
        model = {**_V1_VARIANTS.get(model["variant"], {}), **model}
    return {**_V2_ADDED_VAE, **model}


def _v1_train(train: dict[str, Any]) -> dict[str, Any]:
    """Format-1 training settings: ``--amp`` became ``precision``; later keys defaulted."""
    train = {**_V1_TRAIN, **train}
    amp = train.pop("amp", False)
    train.setdefault("precision", "bfloat16" if amp else "float32")
    return train


def record_files(config: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """``config`` with its files as absolute paths, and relative to ``run_dir`` in
    ``files``: what a new run writes, so it finds them again from anywhere."""
    config = copy.deepcopy(config)
    files: dict[str, str] = {}
    data = config["data"]
    if data["dataset"] is not None and not is_named(data["dataset"]):
        data["dataset"] = str(Path(data["dataset"]).resolve())
        files["dataset"] = os.path.relpath(data["dataset"], Path(run_dir).resolve())
    if data.get("data_dir"):
        data["data_dir"] = str(Path(data["data_dir"]).resolve())
    model = config["model"]
    file = model_file(model.get("source", ""))
    if file:
        path = Path(file).resolve()
        model["source"] = f"{path}:{model['source'].rpartition(':')[2]}"
        files["model"] = os.path.relpath(path, Path(run_dir).resolve())
    config["files"] = files
    return config


def located(config: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """``config`` with the files it names where they are now (:func:`locate`)."""
    config = copy.deepcopy(config)
    data, model = config["data"], config["model"]
    if data["dataset"] is not None and not is_named(data["dataset"]):
        data["dataset"] = str(locate(config, run_dir, "dataset").resolve())
    if model_file(model.get("source", "")):
        path = locate(config, run_dir, "model").resolve()
        model["source"] = f"{path}:{model['source'].rpartition(':')[2]}"
    return config


def is_named(dataset: str | None) -> bool:
    """Whether ``dataset`` is a dataset's name (``sample``, ``mnist``) rather than a file."""
    return dataset in DATASETS


def model_file(source: str) -> str | None:
    """The file of a model source ``path/file.py:Class`` (None for ``package.module:Class``)."""
    where = source.rpartition(":")[0]
    return where if where.endswith(".py") else None


def locate(config: dict[str, Any], run_dir: str | Path, key: str) -> Path:
    """Where the file ``key`` (``"dataset"`` or ``"model"``) of a run's config is now.

    Tried in order: the path recorded (absolute in format 2; as typed, relative to the
    working directory of the run, in format 1); its place relative to the run folder
    (``files``); for a format-1 config, the name beside the run folder or above it.
    """
    recorded = _recorded(config, key)
    run_dir = Path(run_dir)
    relative = config.get("files", {}).get(key)
    candidates = [Path(recorded)]
    if relative is not None:
        candidates.append(run_dir / relative)
    else:  # format 1: the run folder's place relative to the file was not kept
        name = Path(recorded) if not Path(recorded).is_absolute() else Path(Path(recorded).name)
        candidates += [folder / name for folder in (run_dir, *run_dir.resolve().parents[:3])]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    fix = (
        ("pass ", Param("dataset"), " with its new place")
        if key == "dataset"
        else (f"put it back, or write its new place in {run_dir / CONFIG}",)
    )
    raise PyrovaeError(
        f"{recorded}, the {key} file that {run_dir / CONFIG} names, is not there (moved?); ",
        *fix,
    )


def _recorded(config: dict[str, Any], key: str) -> str:
    if key == "dataset":
        return config["data"]["dataset"]
    return model_file(config["model"]["source"]) or ""
