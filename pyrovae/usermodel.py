"""A user's own model class, loaded by import path, and data passed to it by name.

``pyrovae train --model path/to/file.py:ClassName --model-arg KEY=VALUE`` trains any
``nn.Module`` with ``model`` and ``guide`` methods. The run folder records the import
path and the constructor's arguments, never pickled code; the checkpoint holds the
module's ``state_dict`` (buffers such as BatchNorm's running statistics included) and
the values of any parameter the program keeps in Pyro's parameter store outside the
module (``pyro.param("theta", ...)``).

The data come from a ``.npz`` whose arrays are passed to ``model`` and ``guide`` by name
as keyword arguments: arrays named ``NAME_train`` / ``NAME_test`` give the split,
otherwise the last 20% of every array is held out.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from torch import nn

from pyrovae.batches import as_data
from pyrovae.errors import PyrovaeError

#: The fraction held out when the .npz does not name its split.
TEST_FRACTION = 0.2


def import_object(spec: str) -> Any:
    """``path/to/file.py:Name`` or ``package.module:Name`` as the object it names."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise PyrovaeError(
            f"--model {spec!r}: write path/to/file.py:ClassName or package.module:ClassName"
        )
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise PyrovaeError(f"--model {spec!r}: file {where} does not exist")
        module_name = f"pyrovae_user_{abs(hash(str(path)))}"
        module = sys.modules.get(module_name)
        if module is None:
            sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as err:
                del sys.modules[module_name]
                raise PyrovaeError(f"--model {spec!r}: importing {where} failed: {err}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise PyrovaeError(f"--model {spec!r}: cannot import {where}: {err}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise PyrovaeError(f"--model {spec!r}: {where} defines no {name}") from None


def build(source: str, kwargs: dict[str, Any]) -> nn.Module:
    """Construct the user's class with ``kwargs``; it must own ``model`` and ``guide``."""
    cls = import_object(source)
    try:
        obj = cls(**kwargs)
    except TypeError as err:
        raise PyrovaeError(f"--model {source}: bad --model-arg: {err}") from None
    if not (callable(getattr(obj, "model", None)) and callable(getattr(obj, "guide", None))):
        raise PyrovaeError(f"--model {source}: the object has no model and guide methods")
    if not isinstance(obj, nn.Module):
        raise PyrovaeError(
            f"--model {source}: the class must be a torch.nn.Module (its state_dict is what "
            "a checkpoint saves)"
        )
    return obj


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
        raise PyrovaeError(f"--dataset {path}: a user model takes a .npz file of named arrays")
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
        n_test = min(n - 1, max(1, round(n * test_fraction)))
        train = {k: _tensor(a[:-n_test]) for k, a in arrays.items()}
        test = {k: _tensor(a[-n_test:]) for k, a in arrays.items()}
    as_data(train, f"{path} (training arrays)")
    as_data(test, f"{path} (held-out arrays)")
    return NamedArrays(train, test, str(path))


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
    """Create the program's Pyro parameters by tracing it once, then set their values."""
    if not saved:
        return
    from pyrovae.marginal import max_plate_nesting

    batch = as_data(probe).first_batch()
    max_plate_nesting(module.model, module.guide, *batch.args, **batch.kwargs)
    params = dict(pyro.get_param_store().named_parameters())
    missing = sorted(set(saved) - set(params))
    if missing:
        raise PyrovaeError(f"the model no longer creates the saved parameters {missing}")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].device))
