"""Early stopping: end a run when its held-out objective stops improving; keep the best.

:class:`EarlyStopping` is a :class:`~pyrovae.training.policies.Policy` of ``fit``
(``fit(..., validation=held_out, early_stopping=True)``). After each epoch it compares
the held-out objective with the best so far: the IWAE bound L_K of the held-out data
when the run trains on it (``val_bound``), else their ELBO (``val_elbo``); once
``patience`` epochs have passed without an improvement larger than ``min_delta`` nats it
stops the run, and whenever the run ends (stopped, or out of epochs) the parameters of
the best epoch are put back before the last checkpoint is written. The history gains
``best_epoch`` (the best epoch so far, after each epoch), so ``history["epoch"][-1]`` is
where the run stopped and ``history["best_epoch"][-1]`` the epoch whose parameters it
ends with.

A run that runs out of epochs while that objective is still improving (its best epoch among
the last tenth of the run, at least the last epoch and at most the last ``patience``)
ends with a :class:`StillImprovingWarning`: more epochs would likely help. The estimate
watched is a Monte Carlo estimate over the held-out datapoints, so ``min_delta``
and ``patience`` are what keep its noise from ending a run.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from pyrovae._util import caller_level
from pyrovae.errors import Param, PyrovaeError
from pyrovae.training.policies import Policy
from pyrovae.training.state import Loop

#: The history key that early stopping adds.
BEST_EPOCH = "best_epoch"
#: What early stopping watches (higher is better), by preference: the held-out IWAE
#: bound when the run trains on it, else the held-out ELBO; and how a message names it.
MONITORS = {"val_bound": "held-out IWAE bound", "val_elbo": "held-out ELBO"}


class StillImprovingWarning(UserWarning):
    """A run ran out of epochs while its held-out objective was still improving."""


class EarlyStopping(Policy):
    """Stop when the held-out objective has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience
        Epochs without an improvement after which the run stops.
    min_delta
        An epoch improves on the best only by more than this many nats per datapoint.
    restore_best
        Put the best epoch's parameters back when the run ends (the default), so the
        model, the checkpoint and everything evaluated afterwards are those of the best
        epoch. The optimiser's state stays that of the last step.

    Attributes
    ----------
    stopped_epoch
        The epoch the run stopped at because of this policy (0: it did not stop it).
    best_epoch, best
        The best epoch so far and its held-out objective.
    monitor
        The history key watched: ``val_bound`` or ``val_elbo``.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, restore_best: bool = True):
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise PyrovaeError(
                "early stopping's ",
                Param("patience"),
                f" must be a positive integer, got {patience}",
            )
        if not min_delta >= 0:
            raise PyrovaeError(
                "early stopping's ", Param("min_delta"), f" must be >= 0 nats, got {min_delta}"
            )
        self.patience, self.min_delta, self.restore_best = patience, float(min_delta), restore_best
        self.best, self.best_epoch, self.stopped_epoch = -math.inf, 0, 0
        self.monitor = "val_elbo"
        self._params: list[torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta})"

    def start(self, loop: Loop) -> None:
        """Pick up where a resumed run's history left off (the best parameters since then)."""
        self.monitor = next((k for k in MONITORS if k in loop.keys), "val_elbo")
        seen = loop.state.history.get(self.monitor, [])
        self.best, self.best_epoch, self.stopped_epoch = -math.inf, 0, 0
        self._params = None
        for epoch, value in enumerate(seen, start=1):
            if value > self.best + self.min_delta:
                self.best, self.best_epoch = value, epoch
        if seen:
            self._keep(loop)  # the parameters of a resumed run: its best known to us

    def end_of_epoch(self, loop: Loop, record: dict[str, Any]) -> None:
        value = record[self.monitor]
        if value > self.best + self.min_delta or not math.isfinite(self.best):
            self.best, self.best_epoch = value, record["epoch"]
            self._keep(loop)
        record[BEST_EPOCH] = self.best_epoch

    def epoch_done(self, loop: Loop) -> bool:
        epoch = loop.state.epoch
        stop = epoch - self.best_epoch >= self.patience
        if stop:
            self.stopped_epoch = epoch
            loop.say(self.reason())
        if (stop or epoch >= loop.epochs) and self.restore_best:
            self._restore(loop)
        if not stop and epoch >= loop.epochs and epoch - self.best_epoch < self._window(epoch):
            warnings.warn(
                still_improving(epoch, self.best_epoch, self.monitor),
                StillImprovingWarning,
                caller_level(),
            )
        return stop

    def _window(self, epochs: int) -> int:
        """The last epochs in which a best epoch means the run was still improving: a
        tenth of the run, at least the last epoch, at most ``patience``."""
        return max(1, min(self.patience, epochs // 10))

    def reason(self) -> str:
        """Why the run stopped, in one line."""
        name = MONITORS[self.monitor]
        return (
            f"stopped early at epoch {self.stopped_epoch}: the {name} has not improved for "
            f"{self.patience} epochs; the parameters of epoch {self.best_epoch} ({name} "
            f"{self.best:.2f} nats) are kept"
        )

    def _keep(self, loop: Loop) -> None:
        if self.restore_best:
            self._params = [p.detach().clone() for p in loop.svi.params]

    def _restore(self, loop: Loop) -> None:
        if self._params is None or self.best_epoch == loop.state.epoch:
            return
        with torch.no_grad():
            for p, value in zip(loop.svi.params, self._params, strict=True):
                p.copy_(value)


def still_improving(epoch: int, best_epoch: int, monitor: str = "val_elbo") -> str:
    """The one line said when a run ends while its held-out objective still improves."""
    return (
        f"training ended at epoch {epoch} while the {MONITORS[monitor]} was still "
        f"improving (best at epoch {best_epoch}); more epochs would likely give a better model"
    )


def as_early_stopping(value: EarlyStopping | int | bool | None) -> EarlyStopping | None:
    """``fit``'s ``early_stopping``: a policy, a patience in epochs, True (the defaults)."""
    if value is None or value is False:
        return None
    if value is True:
        return EarlyStopping()
    if isinstance(value, EarlyStopping):
        return value
    if isinstance(value, int):
        return EarlyStopping(patience=value)
    raise PyrovaeError(
        Param("early_stopping"),
        f" must be True, a patience in epochs or an EarlyStopping, got {value!r}",
    )
