"""A user's own model class, loaded by import path.

``pyrovae train --model path/to/file.py:ClassName --model-arg KEY=VALUE`` trains any
``nn.Module`` with ``model`` and ``guide`` methods. The run folder records the import
path and the constructor's arguments, never pickled code
(:mod:`pyrovae.rundir.checkpoint` saves the module's state and the Pyro parameters its
program keeps outside it). Its data are named arrays
(:mod:`pyrovae.data.named_arrays`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from pyrovae.errors import Param, PyrovaeError


def import_object(spec: str) -> Any:
    """``path/to/file.py:Name`` or ``package.module:Name`` as the object it names."""
    where, sep, name = spec.rpartition(":")
    model = Param("model", spec)
    if not sep or not where or not name.isidentifier():
        raise PyrovaeError(model, ": write path/to/file.py:ClassName or package.module:ClassName")
    module = _import_file(where, model) if where.endswith(".py") else _import(where, model)
    try:
        return getattr(module, name)
    except AttributeError:
        raise PyrovaeError(model, f": {where} defines no {name}") from None


def _import_file(where: str, model: Param) -> Any:
    """The module of a Python file, imported once per path (its folder on ``sys.path``)."""
    path = Path(where).resolve()
    if not path.is_file():
        raise PyrovaeError(model, f": file {where} does not exist")
    module_name = f"pyrovae_user_{abs(hash(str(path)))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise PyrovaeError(model, f": importing {where} failed: {err}") from None
    return module


def _import(where: str, model: Param) -> Any:
    """An installed module by its dotted name."""
    try:
        return importlib.import_module(where)
    except ImportError as err:
        raise PyrovaeError(model, f": cannot import {where}: {err}") from None


def build(source: str, kwargs: dict[str, Any]) -> nn.Module:
    """Construct the user's class with ``kwargs``; it must own ``model`` and ``guide``."""
    cls = import_object(source)
    model = Param("model", source)
    try:
        obj = cls(**kwargs)
    except TypeError as err:
        raise PyrovaeError(model, ": bad ", Param("model_kwargs"), f": {err}") from None
    if not (callable(getattr(obj, "model", None)) and callable(getattr(obj, "guide", None))):
        raise PyrovaeError(model, ": the object has no model and guide methods")
    if not isinstance(obj, nn.Module):
        raise PyrovaeError(
            model,
            ": the class must be a torch.nn.Module (its state_dict is what a checkpoint saves)",
        )
    return obj
