"""Small helpers every layer may use: registry lookup and where a warning should point.

Each registry is a plain ``dict`` from a name to a constructor, kept in the module that
defines the objects (``PRIORS`` next to the priors, ...). The command line, the docs and
the tests all read those dicts; :func:`lookup` only turns a failed lookup into an error
that lists the valid names.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import torch

from pyrovae.errors import PyrovaeError

T = TypeVar("T")

_PACKAGE = str(Path(__file__).parent)


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]``, or raise a one-line error naming the valid choices.

    Parameters
    ----------
    registry
        A dict from name to constructor.
    name
        The name asked for.
    kind
        What the registry holds ("prior", "likelihood", ...), for the error message.
    """
    try:
        return registry[name]
    except (KeyError, TypeError):
        choices = ", ".join(sorted(registry))
        raise PyrovaeError(f"unknown {kind} {name!r}; choose one of: {choices}") from None


def caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside pyrovae and torch."""
    inside = (_PACKAGE, str(Path(torch.__file__).parent))
    for level, frame in enumerate(inspect.stack()[1:], start=1):
        if not frame.filename.startswith(inside) and "contextlib" not in frame.filename:
            return level
    return 1
