"""Where a run stands: the state a checkpoint holds, the loop under way, the way back.

:class:`TrainState` is everything a run needs to continue exactly where it stopped;
:class:`Loop` is a run under way (its SVI, its data, its state) with the one step the
loop takes; :class:`GoodState` is the last state handed to the callback, which a retry
after a non-finite step goes back to.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pyrovae.errors import PyrovaeError
from pyrovae.inference.objectives import LatentScale
from pyrovae.inference.rng import rng_state, set_rng_state
from pyrovae.inference.svi import FastSVI
from pyrovae.training import distributed
from pyrovae.training.feeding import Minibatches

History = dict[str, list[float]]


@dataclass
class TrainState:
    """Where a run stands: enough to continue it exactly.

    Attributes
    ----------
    epoch
        Completed epochs.
    step
        Steps completed in the epoch under way (0 at an epoch boundary).
    global_step
        Steps completed in all.
    epoch_loss
        Sum of the losses of the epoch's completed steps (a 0-dim tensor).
    epoch_seconds
        Time spent in them.
    history
        The per-epoch history so far.
    optim_state
        The optimiser's ``state_dict`` (learning rates included), or None.
    rng
        Torch's random number generator states: ``"cpu"`` and, per GPU, ``"cuda"``.
    retries
        Restarts after non-finite steps so far.
    end_of_epoch
        Whether this state was taken at the end of an epoch (else within one: every N
        steps, or where a signal stopped training).
    scheduler_state
        The learning-rate scheduler's ``state_dict``, when the optimiser has one.
    epoch_datapoints
        Datapoints seen in the epoch under way (for streamed data, whose size is not
        known in advance).
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    epoch_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_seconds: float = 0.0
    history: History = field(default_factory=dict)
    optim_state: dict | None = None
    rng: dict | None = None
    retries: int = 0
    end_of_epoch: bool = True
    scheduler_state: dict | None = None
    epoch_datapoints: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Tensors and plain data only, for ``torch.save`` / ``torch.load(weights_only)``."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "epoch_loss": self.epoch_loss.detach().cpu(),
            "epoch_seconds": self.epoch_seconds,
            "history": self.history,
            "optim_state": self.optim_state,
            "rng": self.rng,
            "retries": self.retries,
            "end_of_epoch": self.end_of_epoch,
            "scheduler_state": self.scheduler_state,
            "epoch_datapoints": self.epoch_datapoints,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        try:
            return cls(**d)
        except TypeError as err:
            raise PyrovaeError(f"the checkpoint's training state is incomplete: {err}") from None


#: Called with the :class:`TrainState` after every epoch (and every ``checkpoint_every``
#: steps, and when SIGTERM or SIGINT stops training); returning ``False`` stops training.
Callback = Callable[[TrainState], Any]


class GoodState:
    """The last state handed to the callback: what a retry after a NaN goes back to.

    Parameters
    ----------
    svi
        The :class:`~pyrovae.inference.svi.FastSVI` whose parameters and optimiser are saved.
    device
        The training device (for the generator states).
    """

    def __init__(self, svi: Any, device: torch.device) -> None:
        self.svi, self.device = svi, device
        self.state: TrainState | None = None
        self.params: list[torch.Tensor] | None = None

    def snapshot(self, state: TrainState, keep_params: bool = True) -> TrainState:
        """A copy of ``state`` with the optimiser, scheduler and generator states, recorded.

        The copy is what a callback gets and what a retry goes back to; the loop goes on
        with ``state`` itself, so its steps never change the copy.
        """
        state = copy.copy(state)
        state.history = copy.deepcopy(state.history)
        state.optim_state = self.svi.optim_state()
        state.scheduler_state = self.svi.scheduler_state()
        state.rng = rng_state(self.device)
        self.state = state
        if keep_params:
            self.params = [p.detach().clone() for p in self.svi.params]
        return state

    def restore(self, retries: int, lr: float) -> TrainState:
        """Go back to the recorded state, with ``retries`` counted and the rate ``lr``."""
        good = self.state
        state = copy.copy(good)
        state.history = copy.deepcopy(good.history)
        state.retries = retries
        with torch.no_grad():
            saved = self.params or self.svi.initial_values
            for p, value in zip(self.svi.params, saved, strict=True):
                p.copy_(value)
        self.svi.load_optim_state(good.optim_state)
        self.svi.load_scheduler_state(good.scheduler_state)
        self.svi.set_lr(lr)
        set_rng_state(good.rng, self.device)
        return state


@dataclass
class Loop:
    """A training run under way: the SVI that steps it, its data, and where it stands.

    Attributes
    ----------
    svi, batches, state, device, epochs, kl_weight, keys
        The run's SVI, minibatches, :class:`TrainState`, device, epochs in all, KL
        weight and history keys.
    check_finite
        Whether the next step checks its gradients (:class:`~pyrovae.training.policies.NaNGuard`
        decides); the loss is checked at every step on the CPU, where that is free.
    loss
        The last step's loss, on the device.
    last_record
        The history's entries of the last epoch.
    say
        Prints a line beside the progress bar (silent without one).
    """

    svi: FastSVI
    batches: Minibatches
    state: TrainState
    device: torch.device
    epochs: int
    kl_weight: LatentScale
    keys: tuple[str, ...]
    check_finite: bool = False
    loss: torch.Tensor | None = None
    last_record: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = lambda text: None
    started: float = 0.0

    @property
    def last_step(self) -> bool:
        """Whether the step just taken was the epoch's last."""
        return self.batches.steps is not None and self.state.step >= self.batches.steps

    def begin_epoch(self) -> None:
        """The epoch's clock and loss sum, on the device (both resumed mid-epoch)."""
        self.started = time.perf_counter() - self.state.epoch_seconds
        self.state.epoch_loss = self.state.epoch_loss.to(self.device)

    def step(self, batch: Any) -> None:
        """One SVI step on ``batch``; the state counts it (the loss stays on the device)."""
        self.loss = self.svi.step_tensor(
            *batch.args,
            check_finite=self.check_finite,
            check_loss=self.device.type == "cpu",  # a host sync, free on the CPU
            **batch.kwargs,
        )
        state = self.state
        state.epoch_loss = state.epoch_loss + self.loss
        state.step, state.global_step = state.step + 1, state.global_step + 1
        state.epoch_datapoints += len(batch)

    def pause(self) -> None:
        """Make the state that of this step within the epoch, to hand to a callback."""
        self.state.epoch_seconds = time.perf_counter() - self.started
        self.state.end_of_epoch = False

    def record(self) -> dict[str, Any]:
        """The history's entries for the epoch just ended (one host sync: the loss)."""
        state = self.state
        self.batches.steps = state.step
        total = distributed.all_reduce(state.epoch_loss)
        return {
            "epoch": state.epoch + 1,
            "steps": state.step,
            "train_elbo": -float(total) / (self.batches.size or state.epoch_datapoints),
            "seconds": time.perf_counter() - self.started,
            "kl_weight": self.kl_weight.scale,
            "lr": self.svi.lr,
        }

    def commit(self, record: dict[str, Any]) -> None:
        """The history gains the epoch's ``record``; the state moves to the next epoch."""
        state = self.state
        for key in self.keys:
            state.history.setdefault(key, []).append(record[key])
        state.epoch, state.step, state.epoch_datapoints = state.epoch + 1, 0, 0
        state.epoch_loss = state.epoch_loss.new_zeros(())
        state.epoch_seconds, state.end_of_epoch = 0.0, True
        self.last_record = record
