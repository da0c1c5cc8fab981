"""Every module path of pyrovae 0.1 (commit 4f9623b) still imports, with its names.

``tests/fixtures/names_4f9623b.json`` lists the public names each module defined at that
commit. A flat module of 0.1 moved into the layered packages imports from its old path
as a module of the same names (``pyrovae._compat``), with a ``DeprecationWarning``
that names the new place; the few names that did not survive are listed here with why.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
import warnings
from pathlib import Path

import pytest

import pyrovae
from pyrovae._compat import MOVED

NAMES = json.loads((Path(__file__).parent / "fixtures" / "names_4f9623b.json").read_text())

#: Names of 0.1 that are gone, and where their job went.
REMOVED = {
    ("pyrovae.checkpoint", "model_kind"): "every config names its kind (pyrovae.rundir.config)",
    ("pyrovae.precision", "mixed_precision_safe"): "contract_of(model).mixed_precision_safe",
    ("pyrovae.cli.run_config", "VAE_FLAGS"): "defaults read from the VAE's signature",
    ("pyrovae.cli.train", "BUILDERS"): "pyrovae.rundir.build.MODEL_KINDS",
    ("pyrovae.training.loop", "MISSING"): "pyrovae.data.masks.MISSING",
    ("pyrovae.training.loop", "ON_NAN"): "pyrovae.training.setup.ON_NAN",
    ("pyrovae.training.loop", "SCHEDULER_STEPS"): "pyrovae.training.setup.SCHEDULER_STEPS",
}


@pytest.mark.parametrize("module", sorted(NAMES))
def test_every_old_module_path_imports_with_its_names(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module(module)
    missing = [
        name for name in NAMES[module] if not hasattr(old, name) and (module, name) not in REMOVED
    ]
    assert not missing
    if module in MOVED:  # a moved module says where it went (on first import)
        heir = MOVED[module][0]
        assert all(
            getattr(old, n) is not None for n in NAMES[module] if (module, n) not in REMOVED
        )
        assert heir in old.__doc__


def test_a_moved_module_warns_and_names_its_new_place():
    sys.modules.pop("pyrovae.marginal", None)  # imported afresh, as in a new process
    with pytest.warns(DeprecationWarning) as caught:
        importlib.import_module("pyrovae.marginal")
    assert str(caught[0].message) == (
        "pyrovae.marginal moved in pyrovae 0.2; import from pyrovae.inference.marginal"
    )
    assert caught[0].filename == __file__  # it points at the import, not at importlib


def test_the_old_objects_are_the_new_ones():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyrovae.marginal import Program, log_marginal_likelihood, traces
        from pyrovae.priors import DiagonalNormal
        from pyrovae.vae import VAE
    from pyrovae.inference.particles import Program as NewProgram
    from pyrovae.inference.traces import traces as new_traces
    from pyrovae.parts.priors import LearnedNormal

    assert VAE is pyrovae.VAE and log_marginal_likelihood is pyrovae.log_marginal_likelihood
    assert Program is NewProgram and traces is new_traces and DiagonalNormal is LearnedNormal


def test_renamed_public_names_still_answer():
    with pytest.warns(DeprecationWarning, match="pyrovae.Dataset is now pyrovae.DataSplit"):
        assert pyrovae.Dataset is pyrovae.DataSplit
    with pytest.warns(DeprecationWarning, match=r"VAE\(guide=...\) is now VAE\(posterior=...\)"):
        vae = pyrovae.VAE(
            x_dim=4, z_dim=2, hidden=(4,), guide="iaf", guide_kwargs={"num_flows": 1}
        )
    assert vae.config["posterior"] == "iaf" and vae.config["posterior_kwargs"] == {"num_flows": 1}
    with pytest.raises(TypeError, match="unexpected keyword argument 'gide'"):
        pyrovae.VAE(gide="iaf")
    with pytest.raises(AttributeError):
        pyrovae.nothing  # noqa: B018


def test_nothing_in_the_package_imports_an_old_path():
    package = Path(pyrovae.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [f"{path.name}: {n}" for n in names if n in MOVED]
    assert not found
