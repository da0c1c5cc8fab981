"""Name lookup shared by every registry (priors, likelihoods, guides, nets, losses).

Each registry is a plain ``dict`` from a name to a constructor, kept in the module that
defines the objects. The CLI, the docs and the tests all read those dicts; this module
only turns a failed lookup into an error that lists the valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pyrovae.errors import PyrovaeError

T = TypeVar("T")


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
