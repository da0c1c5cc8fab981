"""Training: ``fit``, a short loop over an explicit state, and the policies around it.

``loop``
    :func:`~pyrovae.training.loop.fit` and the loop itself (:class:`Loop`, :func:`train`).
``setup``
    ``fit``'s settings, checked, and what they resolve to: programs, device, data, SVI.
``policies``
    Progress, KL warm-up, NaN checks and retries, schedulers, the model's end-of-epoch
    hook, validation, checkpoints, preemption, the processes of a distributed run.
``stopping``
    Early stopping on the validation ELBO, the best epoch's parameters kept.
``state``
    :class:`TrainState` (what a checkpoint holds) and the good state a retry goes back to.
``folders``
    ``fit(..., run_dir=...)``: the run folder of a run trained from Python.
``feeding``
    The training and validation data as minibatches on the device.
``distributed``
    What changes under ``torch.distributed``.
``preemption``
    Stopping cleanly, and resumably, on SIGTERM and SIGINT.
"""

from pyrovae.data.devices import resolve_device
from pyrovae.inference.svi import FastSVI
from pyrovae.training.loop import HISTORY_KEYS, VALIDATION_KEYS, Loop, fit, train
from pyrovae.training.setup import ON_NAN
from pyrovae.training.state import Callback, History, TrainState
from pyrovae.training.stopping import EarlyStopping, StillImprovingWarning

__all__ = [
    "HISTORY_KEYS",
    "ON_NAN",
    "VALIDATION_KEYS",
    "Callback",
    "EarlyStopping",
    "FastSVI",
    "History",
    "StillImprovingWarning",
    "Loop",
    "TrainState",
    "fit",
    "resolve_device",
    "train",
]
