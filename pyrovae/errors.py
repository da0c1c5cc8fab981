"""The exceptions of pyrovae, and how their messages name the caller's parameters.

A message says what is wrong and how to fix it in the caller's terms. Where it names a
setting, library code writes the message as text and :class:`Param` parts: from Python
the message reads ``z_dim`` or ``loss='trace'``, the parameter names of the function
called, and the command line spells the same parts as its flags, ``--z-dim`` or
``--loss trace`` (:meth:`PyrovaeError.spelled`, with the table in
:mod:`pyrovae.cli.flags`)::

    raise PyrovaeError("use ", Param("loss", "trace"), " with ", Param("free_bits"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A :class:`Param` without a value: the parameter itself is named.
NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "NO_VALUE"})()


@dataclass(frozen=True)
class Param:
    """A parameter named in an error message, with the value the fix would give it.

    Attributes
    ----------
    name
        The Python parameter (``"z_dim"``), or a key of the dict parameter ``within``
        (``"code_dim"`` of ``posterior_kwargs``).
    value
        The value to name with it, or :data:`NO_VALUE`.
    within
        The dict parameter that ``name`` is a key of (``"posterior_kwargs"``), or None.
    spelling
        What a Python caller reads instead of ``name=value``, where the setting is no
        parameter of a Python function (the command line's ``--estimator is`` is the
        function ``log_marginal_likelihood`` there).
    """

    name: str
    value: Any = NO_VALUE
    within: str | None = None
    spelling: str | None = None

    def python(self) -> str:
        """How a Python caller writes it: ``z_dim`` or ``loss='trace'``."""
        if self.spelling is not None:
            return self.spelling
        return self.name if self.value is NO_VALUE else f"{self.name}={self.value!r}"


class PyrovaeError(ValueError):
    """A problem with the user's input, stated in one line with how to fix it.

    The command-line interface prints the message of this exception, without a
    traceback, and exits with a non-zero status. Python callers can catch it as a
    ``ValueError``.

    Parameters
    ----------
    *parts
        The message: text, and the parameters it names as :class:`Param` s.
    """

    def __init__(self, *parts: str | Param) -> None:
        self.parts = parts
        super().__init__(self.spelled(Param.python))

    def spelled(self, spell: Callable[[Param], str]) -> str:
        """The message with each named parameter written by ``spell``."""
        return "".join(spell(p) if isinstance(p, Param) else str(p) for p in self.parts)


class NonFiniteError(PyrovaeError):
    """Training met a NaN or infinite loss or gradient.

    Raised before the optimiser applies the bad step, so the parameters are those of the
    last good step; ``epoch`` and ``step`` (both counted from 1) say where.
    """

    def __init__(self, *parts: str | Param, epoch: int = 0, step: int = 0) -> None:
        super().__init__(*parts)
        self.epoch, self.step = epoch, step


class Preempted(PyrovaeError):
    """Training stopped on SIGTERM or SIGINT, after handing its state to ``callback``.

    Not a mistake in the input: ``fit`` raises it once the state of the moment the
    signal arrived (mid-epoch, as ``checkpoint_every`` takes it, or at an epoch
    boundary) has gone to ``callback``, so the run continues with ``resume``.
    ``signum`` is the signal; ``epoch`` (counted from 1) and ``step`` (steps completed
    in that epoch, 0 at its start) say where.
    """

    def __init__(self, message: str, signum: int = 0, epoch: int = 0, step: int = 0) -> None:
        super().__init__(message)
        self.signum, self.epoch, self.step = signum, epoch, step
