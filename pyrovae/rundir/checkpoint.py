"""Checkpoints: the state of a run, as tensors and plain data, read without unpickling code.

A checkpoint (``checkpoint.pt``) holds the model's ``state_dict``, the values of any
parameter the program keeps in Pyro's parameter store outside the model (a user's
``pyro.param("theta", ...)``), the model's config and the training state (optimiser,
generators, epoch, history). It is read back with ``torch.load(weights_only=True)``.

Format versions: 1, written by pyrovae before the run folder had a format of its own
(its ``model_config`` in config format 1); 2, its ``model_config`` in the current config
format (:mod:`pyrovae.rundir.config`).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

from pyrovae.data.batches import as_data
from pyrovae.errors import PyrovaeError
from pyrovae.inference.traces import max_plate_nesting
from pyrovae.rundir.files import atomic_write

FORMAT = "pyrovae-checkpoint"
#: The version this pyrovae writes.
FORMAT_VERSION = 2
#: The versions it reads.
READS = (1, 2)


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
    if state.get("format_version") not in READS:
        raise PyrovaeError(
            f"{path} has checkpoint format version {state.get('format_version')}; this "
            f"pyrovae reads versions {' and '.join(map(str, READS))}"
        )
    return state


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
        if probe is None:
            raise PyrovaeError(f"{where}: restoring Pyro parameters needs the run's data")
        load_store_params(model, saved, probe)


def store_params(module: nn.Module) -> dict[str, torch.Tensor]:
    """Pyro parameters outside ``module``: their unconstrained values, by name."""
    own = {id(p) for p in module.parameters()}
    return {
        name: p.detach().cpu().clone()
        for name, p in pyro.get_param_store().named_parameters()
        if id(p) not in own
    }


def load_store_params(
    module: nn.Module, saved: dict[str, torch.Tensor], probe: dict[str, torch.Tensor]
) -> None:
    """Create the program's Pyro parameters by tracing it once, then set their values.

    The trace runs on ``probe``, data in the form the program takes (its held-out data).
    """
    if not saved:
        return
    batch = as_data(probe).first_batch()
    max_plate_nesting(module.model, module.guide, *batch.args, **batch.kwargs)
    params = dict(pyro.get_param_store().named_parameters())
    missing = sorted(set(saved) - set(params))
    if missing:
        raise PyrovaeError(f"the model no longer creates the saved parameters {missing}")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].device))
