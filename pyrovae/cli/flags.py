"""The command line's names for the library's parameters: errors spoken in flags.

Library errors name Python parameters (:class:`pyrovae.errors.Param`); the command line
prints the same message with each parameter written as its flag: ``z_dim`` as
``--z-dim``, ``loss='trace'`` as ``--loss trace``, ``code_dim`` of ``posterior_kwargs``
as ``--guide-arg code_dim``. A parameter's flag is its name with dashes when some
command has an option of that name, or the one :data:`RENAMED` gives.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pyrovae.errors import NO_VALUE, Param

#: Parameters whose flag is not their name with dashes.
RENAMED = {
    "posterior": "--guide",
    "posterior_kwargs": "--guide-arg",
    "prior_kwargs": "--prior-arg",
    "likelihood_kwargs": "--likelihood-arg",
    "model_kwargs": "--model-arg",
    "num_classes": "--conditional",
    "num_labelled": "--labels",
    "learn_weights": "--cluster-weights",
    "y": "--label",
}


def flags(parser: argparse.ArgumentParser) -> tuple[dict[str, str], set[str]]:
    """Every option of every command by its destination, and which of them are switches."""
    found: dict[str, str] = {}
    switches: set[str] = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.option_strings and action.dest not in ("help", "version"):
                # --x/--no-x: the positive spelling, the negative one derived from it
                positive = isinstance(action, argparse.BooleanOptionalAction)
                flag = action.option_strings[0 if positive else -1]
                found.setdefault(action.dest, flag)
                if action.nargs == 0:
                    switches.add(flag)
    found.update(RENAMED)
    return found, switches


def speller(parser: argparse.ArgumentParser) -> Callable[[Param], str]:
    """How the command line writes a :class:`Param`: its flag, with its value if any."""
    known, switches = flags(parser)

    def spell(param: Param) -> str:
        flag = known.get(param.within or param.name)
        if flag is None:
            return param.python()
        if param.within is not None:
            value = "" if param.value is NO_VALUE else f"={_text(param.value)}"
            return f"{flag} {param.name}{value}"
        if param.value is False and flag in switches:
            return "--no-" + flag[2:]
        if param.value is NO_VALUE or flag in switches:
            return flag
        return f"{flag} {_text(param.value)}"

    return spell


def _text(value: Any) -> str:
    """A value as typed on the command line."""
    return str(value).lower() if isinstance(value, bool) else str(value)
