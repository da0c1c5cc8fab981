"""The one exception type for mistakes in a user's input."""

from __future__ import annotations


class PyrovaeError(ValueError):
    """A problem with the user's input, stated in one line with how to fix it.

    The command-line interface prints the message of this exception, without a
    traceback, and exits with a non-zero status. Python callers can catch it as a
    ``ValueError``.
    """


class NonFiniteError(PyrovaeError):
    """Training met a NaN or infinite loss or gradient.

    Raised before the optimiser applies the bad step, so the parameters are those of the
    last good step; ``epoch`` and ``step`` (both counted from 1) say where.
    """

    def __init__(self, message: str, epoch: int = 0, step: int = 0) -> None:
        super().__init__(message)
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
