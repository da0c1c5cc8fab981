"""Old import paths: the flat modules of pyrovae before 0.2, found in the new layout.

pyrovae 0.1 had one flat module per concept (``pyrovae.vae``, ``pyrovae.marginal``,
...). Each old path still imports, as a module holding the names of the modules that
took its place (:data:`MOVED`), with a ``DeprecationWarning`` that names the new place.
A name that changed (:data:`RENAMED`) is still there under its old name. Nothing in
pyrovae imports the old paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import inspect
import sys
import types
import warnings
from typing import Any

#: Old module -> the modules that hold its names now (the first is its main heir).
MOVED: dict[str, tuple[str, ...]] = {
    "pyrovae.ais": ("pyrovae.inference.ais",),
    "pyrovae.applications": ("pyrovae.use.applications", "pyrovae.data.masks"),
    "pyrovae.batches": ("pyrovae.data.batches",),
    "pyrovae.checkpoint": (
        "pyrovae.rundir.checkpoint",
        "pyrovae.rundir.folder",
        "pyrovae.rundir.files",
        "pyrovae.rundir.config",
        "pyrovae.rundir.build",
    ),
    "pyrovae.clusters": ("pyrovae.models.clusters", "pyrovae.models.clustering"),
    "pyrovae.datasets": (
        "pyrovae.data.datasets",
        "pyrovae.data.binarization",
        "pyrovae.data.labels",
    ),
    "pyrovae.diagnostics": ("pyrovae.use.diagnostics",),
    "pyrovae.guides": ("pyrovae.parts.guides", "pyrovae.parts.distributions"),
    "pyrovae.layers": ("pyrovae.parts.layers", "pyrovae.parts.distributions"),
    "pyrovae.likelihoods": ("pyrovae.parts.likelihoods", "pyrovae.parts.distributions"),
    "pyrovae.marginal": (
        "pyrovae.inference.marginal",
        "pyrovae.inference.logweights",
        "pyrovae.inference.particles",
        "pyrovae.inference.passes",
        "pyrovae.inference.processes",
        "pyrovae.inference.traces",
        "pyrovae.inference.sites",
        "pyrovae._util",
    ),
    "pyrovae.missing": (
        "pyrovae.data.masks",
        "pyrovae.parts.distributions",
        "pyrovae.inference.imputation",
    ),
    "pyrovae.nets": ("pyrovae.parts.nets",),
    "pyrovae.objectives": (
        "pyrovae.inference.objectives",
        "pyrovae.inference.trace_elbo",
        "pyrovae.inference.iwae",
    ),
    "pyrovae.plots": ("pyrovae.use.plots",),
    "pyrovae.precision": ("pyrovae.inference.precision",),
    "pyrovae.priors": ("pyrovae.parts.priors", "pyrovae.parts.distributions"),
    "pyrovae.programs": (
        "pyrovae.inference.programs",
        "pyrovae.inference.sites",
        "pyrovae.inference.enumeration",
    ),
    "pyrovae.registry": ("pyrovae._util",),
    "pyrovae.report": ("pyrovae.use.report",),
    "pyrovae.runlock": ("pyrovae.rundir.lock",),
    "pyrovae.semisupervised": (
        "pyrovae.models.semisupervised",
        "pyrovae.data.labels",
        "pyrovae.parts.nets",
    ),
    "pyrovae.svi": ("pyrovae.inference.svi",),
    "pyrovae.tables": ("pyrovae.data.tables", "pyrovae.rundir.files"),
    "pyrovae.usermodel": (
        "pyrovae.models.user",
        "pyrovae.data.named_arrays",
        "pyrovae.rundir.checkpoint",
    ),
    "pyrovae.variants": ("pyrovae.models.variants",),
    "pyrovae.vae": ("pyrovae.models.vae",),
    "pyrovae.training.devices": ("pyrovae.data.devices",),
}

#: Names that changed: (old module, old name) -> (module, new name).
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("pyrovae", "Dataset"): ("pyrovae.data.datasets", "DataSplit"),
    ("pyrovae.datasets", "Dataset"): ("pyrovae.data.datasets", "DataSplit"),
    ("pyrovae.priors", "DiagonalNormal"): ("pyrovae.parts.priors", "LearnedNormal"),
    ("pyrovae.programs", "PARTICLE_PLATE"): ("pyrovae.inference.sites", "PARTICLE_PLATE"),
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the modules of :data:`MOVED`, and makes each from the modules that hold
    its names now."""

    def find_spec(self, name: str, path: Any = None, target: Any = None):
        if name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, f"Moved in pyrovae 0.2: see {MOVED[spec.name][0]}.")
        for heir in reversed(MOVED[spec.name]):  # the main heir's names win
            vars(module).update(
                (k, v) for k, v in vars(importlib.import_module(heir)).items() if k[:2] != "__"
            )
        for (old, name), (where, new) in RENAMED.items():
            if old == spec.name:
                setattr(module, name, getattr(importlib.import_module(where), new))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        warnings.warn(
            f"{module.__name__} moved in pyrovae 0.2; import from {MOVED[module.__name__][0]}",
            DeprecationWarning,
            stacklevel=_importer_level(),
        )


def _importer_level() -> int:
    """The ``stacklevel``, for a warning in ``exec_module``, of the frame that imported
    the old path. ``warnings.warn`` does not count the import system's own frames
    (``importlib._bootstrap``); ``importlib.import_module`` is counted, and passed."""
    level = 1  # exec_module itself
    for frame in inspect.stack()[2:]:
        if "importlib" in frame.filename and "_bootstrap" in frame.filename:
            continue
        level += 1
        if frame.filename != importlib.__file__:
            return level
    return 1


def install() -> None:
    """Let the old paths import (once per process)."""
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(_OldPaths())


def renamed_attribute(name: str) -> Any:
    """``pyrovae.<name>`` for an old module or a renamed name (the package's ``__getattr__``)."""
    if f"pyrovae.{name}" in MOVED:
        return importlib.import_module(f"pyrovae.{name}")
    if ("pyrovae", name) in RENAMED:
        where, new = RENAMED[("pyrovae", name)]
        warnings.warn(f"pyrovae.{name} is now pyrovae.{new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), new)
    raise AttributeError(f"module 'pyrovae' has no attribute {name!r}")
