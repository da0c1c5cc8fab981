"""Run folders: what ``pyrovae train`` and ``fit(..., run_dir=...)`` write, read back.

A run folder holds

``config.json``
    The model, data and training settings (:mod:`pyrovae.rundir.config`).
``checkpoint.pt``
    The model's parameters and the training state (:mod:`pyrovae.rundir.checkpoint`).
``history.json``
    The per-epoch history, rewritten with every checkpoint.
``heldout.pt``
    For a run trained from Python on data without a name (tensors), the held-out data
    it was validated on, so that ``evaluate`` and ``report`` have them.

:class:`RunFolder` writes one, under its lock (:mod:`pyrovae.rundir.lock`);
:func:`load` reads its model, :func:`load_run` its model with the held-out data as the
model sees them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from pyrovae._version import __version__
from pyrovae.data.batches import Batch
from pyrovae.data.binarization import get_binarization
from pyrovae.data.devices import resolve_device
from pyrovae.data.labels import with_labels
from pyrovae.errors import Param, PyrovaeError
from pyrovae.models.protocol import contract_of
from pyrovae.rundir.build import Data, build_model, load_data, model_kind
from pyrovae.rundir.checkpoint import (
    load_checkpoint,
    restore_parameters,
    save_checkpoint,
    store_params,
)
from pyrovae.rundir.config import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    located,
    record_files,
    upgrade,
    upgrade_model,
)
from pyrovae.rundir.files import atomic_write, read_json, write_json
from pyrovae.rundir.lock import LOCK, RunLock, check_free

#: The held-out data of a run whose data have no name (trained from Python on tensors).
HELDOUT = "heldout.pt"


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's config, upgraded to the current format."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PyrovaeError(f"run folder {run_dir} does not exist")
    return upgrade(read_json(run_dir / CONFIG))


def read_checkpoint(run_dir: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A run folder's checkpoint, its ``model_config`` upgraded to the current format."""
    state = load_checkpoint(Path(run_dir) / CHECKPOINT, map_location=device)
    state["model_config"] = upgrade_model(state.get("model_config", {}), state["format_version"])
    return state


class Run(NamedTuple):
    """A trained run: its model, config, dataset, and held-out data as the model sees them."""

    vae: Any
    config: dict[str, Any]
    data: Any
    heldout: Any


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a run folder, in evaluation mode, on ``device``.

    Parameters
    ----------
    run_dir
        A folder written by ``pyrovae train`` or ``fit(..., run_dir=...)``.
    device
        Where to put the model's parameters.

    Returns
    -------
    pyrovae.VAE or the user's ``nn.Module``
        With working ``model`` and ``guide``. A user's model whose program keeps
        parameters in Pyro's store (``pyro.param``) has them restored there, traced once
        on the run's held-out data.
    """
    return _model(run_dir, read_config(run_dir), None, resolve_device(device))


def _model(run_dir: str | Path, config: dict, data: Data | None, device: torch.device):
    state = read_checkpoint(run_dir, device)
    model = build_model(config, run_dir=run_dir).to(device)
    probe = None
    if state.get("store_params"):  # a program's own pyro.param: traced once to create it
        data = data if data is not None else load_data(config, run_dir)
        probe = {k: v.to(device) for k, v in data.test.items()}
    restore_parameters(model, state, Path(run_dir), probe)
    return model.eval()


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
        A folder written by ``pyrovae train`` or ``fit(..., run_dir=...)``.
    dataset, data_dir
        Other data to use instead of the run's own (a dataset name or a path).
    device
        Where to put the model and the held-out data.
    """
    dev = resolve_device(device)
    config = read_config(run_dir)
    if dataset is None and config["data"]["dataset"] is None:
        return _stored_run(run_dir, config, dev)
    data = load_data(config, run_dir, dataset, data_dir)
    model = _model(run_dir, config, data, dev)
    return Run(model, config, data, heldout_of(config, data, model, dev))


def heldout_of(config: dict[str, Any], data: Data, model: nn.Module, device: torch.device) -> Any:
    """The held-out split as the model takes it: binarised once, seeded, as in training."""
    binarization = get_binarization(config["data"]["binarize"])
    seed, check = config["train"]["seed"], contract_of(model).check_data
    kind = model_kind(config["model"])
    batch = kind.heldout_batch(config, data)
    binarization.check(batch.first)
    batch = batch.with_first(binarization.heldout(batch.first, seed)).to(device)
    if check is not None and kind.takes_x:
        check(batch.first)
    if batch.kwargs:  # named arrays, or x with its mask
        return batch.kwargs
    return with_labels(batch.first, data.test_labels, config["data"]["labels"])


def _stored_run(run_dir: str | Path, config: dict, device: torch.device) -> Run:
    """A run trained from Python on unnamed data: its held-out data from ``heldout.pt``."""
    path = Path(run_dir) / HELDOUT
    if not path.is_file():
        raise PyrovaeError(
            f"{run_dir} was trained on data without a name and keeps no held-out data; "
            "pass the data with ",
            Param("dataset"),
        )
    stored = torch.load(path, map_location=device, weights_only=True)
    batch = Batch(tuple(stored["args"]), dict(stored["kwargs"]))
    binarization = get_binarization(config["data"]["binarize"])
    batch = batch.with_first(binarization.heldout(batch.first, config["train"]["seed"]))
    heldout = (
        batch.kwargs if batch.kwargs else (batch.args[0] if len(batch.args) == 1 else batch.args)
    )
    return Run(_model(run_dir, config, None, device), config, None, heldout)


class RunFolder:
    """A run folder being written: the config first, then checkpoints and the history.

    Parameters
    ----------
    path
        The folder.
    config
        The run's config (current format).
    model
        The model trained (its ``state_dict`` goes to every checkpoint).
    heldout
        Held-out data to keep in the folder (a run whose data have no name), or None.
    """

    def __init__(
        self, path: str | Path, config: dict[str, Any], model: nn.Module, heldout: Any = None
    ) -> None:
        self.path, self.config, self.model, self.heldout = Path(path), config, model, heldout
        self._locks = contextlib.ExitStack()
        self._open = False

    @staticmethod
    def check_target(path: str | Path, force: bool) -> None:
        """Refuse a folder a live run holds, or one holding files, unless ``force``."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise PyrovaeError(Param("out", str(path)), " exists and is not a folder")
        if path.is_dir():
            check_free(path)  # a run under way is never overwritten, force or not
        _check_empty(path, force)

    def open(self, force: bool = False, resume: bool = False) -> RunFolder:
        """Take the folder: its lock, then the config, written first.

        A resumed run's config is written again, in the current format, with the files it
        names where they are now and the settings the resumption changed (``epochs``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self._locks.enter_context(RunLock(self.path))
        self._open = True
        try:
            if resume:
                self.config = located(self.config, self.path)
            else:
                _check_empty(self.path, force)  # no other run came in meanwhile
            self.config = record_files(self.config, self.path)
            write_json(self.path / CONFIG, self.config)
            if self.heldout is not None and not resume:
                _save_heldout(self.path / HELDOUT, self.heldout)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def is_open(self) -> bool:
        """Whether this process holds the folder (:meth:`open`, until :meth:`close`)."""
        return self._open

    def close(self) -> None:
        """Release the folder's lock."""
        self._locks.close()
        self._open = False

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def save(self, state: Any) -> None:
        """Write a training state (its ``to_dict()``), then the history it holds.

        The checkpoint first: ``history.json`` never runs ahead of what can be resumed.
        """
        keeps = model_kind(self.config["model"]).keeps_store_params
        save_checkpoint(
            self.path / CHECKPOINT,
            {
                "pyrovae_version": __version__,
                "model_config": self.config["model"],
                "model_state": self.model.state_dict(),
                "store_params": store_params(self.model) if keeps else {},
                "train_state": state.to_dict(),
            },
        )
        write_json(self.path / HISTORY, state.history)

    def resume(self, probe: Any = None) -> dict[str, Any]:
        """The checkpoint's training state (a dict), its parameters loaded into the model.

        ``probe``: the run's held-out data, for a program with parameters of its own.
        """
        state = read_checkpoint(self.path)
        if state["model_config"] != self.config["model"]:
            raise PyrovaeError(
                f"{self.path / CHECKPOINT} was written for another model configuration than "
                f"{self.path / CONFIG} describes; it cannot be resumed"
            )
        restore_parameters(self.model, state, self.path, probe)
        try:
            return state["train_state"]
        except KeyError as err:
            raise PyrovaeError(
                f"{self.path / CHECKPOINT} does not match {self.path}: {err}"
            ) from None


def _check_empty(path: Path, force: bool) -> None:
    """Refuse a folder that holds files (its lock aside), unless ``force``."""
    if path.is_dir() and not force and any(p.name != LOCK for p in path.iterdir()):
        raise PyrovaeError(
            Param("out", str(path)),
            " already holds files (a previous run?); choose another folder or pass ",
            Param("force", True),
            " to overwrite it",
        )


def _save_heldout(path: Path, heldout: Any) -> None:
    """Keep held-out data (a tensor, tuple or dict of tensors) in the run folder."""
    batch = Batch.of(heldout).to(torch.device("cpu"))
    payload = {"args": list(batch.args), "kwargs": dict(batch.kwargs)}
    atomic_write(path, lambda f: torch.save(payload, f))
