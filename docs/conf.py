"""Sphinx configuration for the pyrovae documentation.

Build (offline, warnings as errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the checkout, not an installed copy

import pyrovae  # noqa: E402

# -- Project -------------------------------------------------------------------------
project = "pyrovae"
author = "the pyrovae authors"
copyright = "the pyrovae authors"  # noqa: A001 - Sphinx's name
version = release = pyrovae.__version__

# -- General -------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nitpicky = False
# Offline: no intersphinx, no remote images, nothing fetched at build time.

# -- MyST ----------------------------------------------------------------------------
# Formulas are written in plain text, so no math extension (and no MathJax from a CDN).
myst_enable_extensions: list[str] = []
# "## Heading" in the Markdown pages gets an anchor, for links like errors.md#checkpoints
myst_heading_anchors = 3

# -- autodoc / napoleon --------------------------------------------------------------
# docs/api.rst asks for ``:members:`` module by module; undocumented members stay out.
autodoc_default_options = {
    "undoc-members": False,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
# Type hints are written in the signatures; the docstrings describe the parameters.
autodoc_typehints = "signature"
# Methods without a docstring of their own (``forward`` of an nn.Module, Pyro's ELBO
# methods overridden in pyrovae) are left out instead of repeating torch's or Pyro's
# text, whose markup is written for their own documentation sites. With the default
# (True) the build fails on torch's Google-style docstring inherited by an override:
#   pyrovae/parts/distributions.py:docstring of
#   pyrovae.parts.distributions.IndependentBernoulli.expand:12:
#   ERROR: Unexpected indentation.
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections become :ivar: fields of the class rather than separate
# attribute entries, so a field is never described twice. With the default (False) the
# build gives 27 "duplicate object description" warnings: every field named in the
# Attributes section of LogWeights, MarginalLikelihood, Bound (pyrovae.inference),
# TrainState (pyrovae.training), DataSplit (pyrovae.data.datasets) and Likelihood
# (pyrovae.parts.likelihoods: channels, default_binarize) is also documented by autodoc.
napoleon_use_ivar = True

# -- viewcode ------------------------------------------------------------------------
viewcode_follow_imported_members = True

# -- HTML ----------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"pyrovae {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Variational autoencoders written as Pyro models and guides",
    "fixed_sidebar": True,
}


# -- Cross-references to the top-level names -----------------------------------------
def _resolve_reexport(app, env, node, contnode):
    """Resolve ``pyrovae.VAE``, ``pyrovae.fit``, ... to where the object is documented.

    The package re-exports its public API (``pyrovae.VAE`` is ``pyrovae.models.vae.VAE``);
    the API reference documents each object once, under its defining module, so a
    docstring's ``:func:`pyrovae.fit``` is sent to ``pyrovae.training.loop.fit``.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    parts = target.split(".")
    if len(parts) < 2 or parts[0] != "pyrovae" or parts[1] not in pyrovae.__all__:
        return None
    obj = getattr(pyrovae, parts[1], None)
    modname = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not modname or not qualname or modname == "pyrovae":
        return None
    try:
        importlib.import_module(modname)
    except ImportError:
        return None
    new_target = ".".join([modname, qualname, *parts[2:]])
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node.get("refdoc"), app.builder, node.get("reftype"), new_target, node, contnode
    )


def setup(app):
    app.connect("missing-reference", _resolve_reexport)
