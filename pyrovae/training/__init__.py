"""Training: ``fit`` and the pieces around its loop.

``loop``
    :func:`fit`, the SVI loop itself.
``state``
    :class:`TrainState` (what a checkpoint holds) and the retry policy after a
    non-finite step.
``feeding``
    The training and validation data as minibatches on the device.
``distributed``
    What changes under ``torch.distributed``.
``preemption``
    Stopping cleanly, and resumably, on SIGTERM and SIGINT.
``devices``
    Choosing the device and placing data on it.
"""

from pyrovae.svi import FastSVI
from pyrovae.training.devices import resolve_device
from pyrovae.training.loop import HISTORY_KEYS, ON_NAN, VALIDATION_KEYS, History, fit
from pyrovae.training.state import Callback, TrainState

__all__ = [
    "HISTORY_KEYS",
    "ON_NAN",
    "VALIDATION_KEYS",
    "Callback",
    "FastSVI",
    "History",
    "TrainState",
    "fit",
    "resolve_device",
]
