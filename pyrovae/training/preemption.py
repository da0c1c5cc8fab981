"""Stopping cleanly on SIGTERM and SIGINT: a flag the training loop reads.

A batch scheduler ends a job with SIGTERM (and SIGKILL a little later); a user presses
Ctrl-C (SIGINT). While :func:`~pyrovae.training.loop.fit` runs, :class:`Signals` turns either
signal into a flag and nothing more. The loop reads it after every step (and at every
epoch boundary), hands the state of that moment to its ``callback`` (where the command
line writes its checkpoint) and raises :class:`~pyrovae.errors.Preempted`, so a run
stopped this way continues with ``resume`` exactly as if it had never stopped.

A second SIGINT while the run is stopping raises ``KeyboardInterrupt`` at once. Signal
handlers can only be set in the main thread: elsewhere :class:`Signals` does nothing,
and a signal the process ignores (``SIG_IGN``, as for a background job's SIGINT) stays
ignored. A signal that arrives after the last check (while the last epoch ends) is
delivered again, to the handlers that were there before, once ``fit`` has returned.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

#: The signals that stop training cleanly.
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_active: list[Signals] = []  # innermost last; main thread only


class Signals:
    """While active, SIGTERM and SIGINT only record their number in :attr:`signum`.

    Parameters
    ----------
    enabled
        False: do nothing (the signals keep their handlers).

    Attributes
    ----------
    signum
        The first signal caught, or 0.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def __enter__(self) -> Signals:
        if threading.current_thread() is not threading.main_thread():
            return self
        _active.append(self)  # disabled too: an outer run's signal is not this run's
        for sig in SIGNALS if self.enabled else ():
            previous = signal.getsignal(sig)
            if previous in (signal.SIG_IGN, None):  # ignored, or set outside Python
                continue
            signal.signal(sig, self._handle)
            self._previous[sig] = previous
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self not in _active:
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        _active.remove(self)
        if self.signum and exc_type is None:  # caught but not acted on: deliver it now
            signal.raise_signal(self.signum)


def pending() -> int:
    """The signal caught by the innermost active :class:`Signals` of this thread, or 0."""
    if not _active or threading.current_thread() is not threading.main_thread():
        return 0
    return _active[-1].signum


def stops_on_signals(fit: Callable) -> Callable:
    """Run ``fit`` inside :class:`Signals`, unless it is called with ``handle_signals=False``."""

    @wraps(fit)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with Signals(kwargs.get("handle_signals", True)):
            return fit(*args, **kwargs)

    return wrapper


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
