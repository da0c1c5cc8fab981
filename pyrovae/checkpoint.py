"""Run folders and checkpoints: written atomically, read without unpickling code.

A run folder holds

``config.json``
    The VAE's constructor arguments, the training settings and the data source.
``checkpoint.pt``
    Tensors and plain data only (read back with ``torch.load(weights_only=True)``): the
    VAE's ``state_dict``, the optimiser state, the epoch, the history.
``history.json``
    The per-epoch history (see :mod:`pyrovae.training`), rewritten every epoch.

Every file is written to a temporary name in the same folder and renamed over the old
one, so a process killed at any instant leaves the last good file intact.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from pyrovae.batches import Batch
from pyrovae.errors import PyrovaeError

FORMAT = "pyrovae-checkpoint"
FORMAT_VERSION = 1
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file, flush it to disk, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True), mode="w")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with one-line errors for a missing or corrupt file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PyrovaeError(f"{path} does not exist; is this a pyrovae run folder?") from None
    except (OSError, ValueError) as err:
        raise PyrovaeError(f"{path} is unreadable or corrupt: {err}") from None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write a checkpoint dict of tensors and plain data."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely: tensors and plain data only, never pickled objects."""
    path = Path(path)
    if not path.exists():
        raise PyrovaeError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise PyrovaeError(f"checkpoint {path} is unreadable or corrupt: not a torch.save archive")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"unsupported GLOBAL (\S+)", str(err))
        what = f"it holds a pickled object ({found.group(1)})" if found else str(err)[:120]
        raise PyrovaeError(
            f"refusing to load {path}: {what}; pyrovae checkpoints hold only tensors and "
            "plain data, so this file was not written by pyrovae or was tampered with"
        ) from None
    except Exception as err:  # zip errors, truncated files, ...
        raise PyrovaeError(f"checkpoint {path} is unreadable or corrupt: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PyrovaeError(f"{path} is not a pyrovae checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise PyrovaeError(
            f"{path} has checkpoint format version {state.get('format_version')}; this "
            f"pyrovae reads version {FORMAT_VERSION}"
        )
    return state


def _load_vae(config: dict[str, Any], state: dict[str, Any], run_dir: Path):
    from pyrovae.variants import build_vae

    try:
        return build_vae(**config["model"])
    except (KeyError, TypeError) as err:
        raise PyrovaeError(f"{run_dir / CONFIG} does not describe a VAE: {err}") from None


def _load_user(config: dict[str, Any], state: dict[str, Any], run_dir: Path):
    from pyrovae import usermodel

    try:
        return usermodel.build(config["model"]["source"], config["model"]["kwargs"])
    except KeyError as err:
        raise PyrovaeError(f"{run_dir / CONFIG} lacks the model setting {err}") from None


#: How a run folder's model is rebuilt, by ``config["model"]["kind"]`` (``"vae"`` when
#: absent): pyrovae's VAE from its arguments, or a user's class from its import path.
MODEL_KINDS: dict[str, Callable[[dict, dict, Path], Any]] = {"vae": _load_vae, "user": _load_user}


def model_kind(config: dict[str, Any]) -> str:
    """The kind of model a run config describes (a key of :data:`MODEL_KINDS`)."""
    kind = config.get("model", {}).get("kind", "vae")
    if kind not in MODEL_KINDS:
        raise PyrovaeError(
            f"unknown model kind {kind!r}; this pyrovae knows {sorted(MODEL_KINDS)}"
        )
    return kind


def restore_parameters(model: Any, state: dict[str, Any], where: Path, probe: Any = None) -> None:
    """Load a checkpoint's parameters into ``model`` (and Pyro's store, if it saved some)."""
    try:
        model.load_state_dict(state["model_state"])
    except (KeyError, RuntimeError) as err:
        msg = str(err).strip().splitlines()[0]
        raise PyrovaeError(
            f"checkpoint in {where} does not match its config.json: {msg}"
        ) from None
    saved = state.get("store_params") or {}
    if saved:
        from pyrovae.usermodel import load_store_params

        if probe is None:
            raise PyrovaeError(f"{where}: restoring Pyro parameters needs the run's data")
        load_store_params(model, saved, probe)


def load(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Load the trained model of a run folder.

    Parameters
    ----------
    run_dir
        A folder written by ``pyrovae train``.
    device
        Where to put the model's parameters.

    Returns
    -------
    pyrovae.VAE or the user's ``nn.Module``
        In evaluation mode, with working ``model`` and ``guide``. A user's model whose
        program keeps parameters in Pyro's store (``pyro.param``) has them restored
        there, traced once on the run's held-out data.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PyrovaeError(f"run folder {run_dir} does not exist")
    config = read_json(run_dir / CONFIG)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
    model = MODEL_KINDS[model_kind(config)](config, state, run_dir).to(device)
    probe = None
    if state.get("store_params"):
        probe = _heldout_arrays(config, None, device)
    restore_parameters(model, state, run_dir, probe)
    return model.eval()


def _heldout_arrays(config: dict[str, Any], dataset: str | None, device: Any):
    from pyrovae.usermodel import load_named_arrays

    arrays = load_named_arrays(dataset or config["data"]["dataset"])
    return {k: v.to(device) for k, v in arrays.test.items()}


class Run(NamedTuple):
    """A trained run: its VAE, config, dataset, and held-out data as the model sees them."""

    vae: Any
    config: dict[str, Any]
    data: Any
    heldout: Any


def load_run(
    run_dir: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str | torch.device = "cpu",
) -> Run:
    """Load a run folder with its data: the held-out split binarised as in training.

    Parameters
    ----------
    run_dir
        A folder written by ``pyrovae train``.
    dataset, data_dir
        Other data to use instead of the run's own (a dataset name or a path).
    device
        Where to put the VAE and the held-out data.
    """
    from pyrovae.datasets import get_binarization, load_dataset, with_labels
    from pyrovae.tables import standardize_dataset
    from pyrovae.training import resolve_device
    from pyrovae.usermodel import load_named_arrays

    dev = resolve_device(device)
    if not Path(run_dir).is_dir():
        raise PyrovaeError(f"run folder {run_dir} does not exist")
    config = read_json(Path(run_dir) / CONFIG)
    vae = load(run_dir, device=dev)
    user = model_kind(config) == "user"
    try:
        data_cfg, seed = config["data"], config["train"]["seed"]
        name = dataset or data_cfg["dataset"]
        masked = config["train"].get("missing") == "mask"
        if user:
            data = load_named_arrays(name)
        else:
            folder = data_dir or (None if dataset else data_cfg["data_dir"])
            fraction = data_cfg.get("test_fraction", 0.2)
            loaded = load_dataset(name, folder, allow_nan=masked, test_fraction=fraction)
            data = standardize_dataset(loaded, data_cfg)
        binarization = get_binarization(data_cfg["binarize"])
    except KeyError as err:
        raise PyrovaeError(f"{Path(run_dir) / CONFIG} lacks the setting {err}") from None
    if user:
        batch = Batch.of(data.test)
        binarization.check(batch.first)
        batch = batch.with_first(binarization.heldout(batch.first, seed)).to(dev)
        return Run(vae, config, data, batch.kwargs)
    if masked:
        from pyrovae.missing import as_masked

        batch = as_masked(data.test, "held-out data").batch
        binarization.check(batch.first)
        batch = batch.with_first(binarization.heldout(batch.first, seed)).to(dev)
        vae.check_data(batch.first)
        return Run(vae, config, data, batch.kwargs)
    binarization.check(data.test)
    heldout = binarization.heldout(data.test, seed).to(dev)
    vae.check_data(heldout)
    return Run(vae, config, data, with_labels(heldout, data.test_labels, data_cfg.get("labels")))
