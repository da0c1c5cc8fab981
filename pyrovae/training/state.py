"""Where a run stands (:class:`TrainState`) and the way back after a non-finite step."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pyrovae.errors import PyrovaeError

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


def rng_state(device: torch.device) -> dict[str, Any]:
    """Torch's generator states: the CPU's and the training GPU's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class GoodState:
    """The last state handed to the callback: what a retry after a NaN goes back to.

    Parameters
    ----------
    svi
        The :class:`~pyrovae.svi.FastSVI` whose parameters and optimiser are saved.
    device
        The training device (for the generator states).
    """

    def __init__(self, svi: Any, device: torch.device) -> None:
        self.svi, self.device = svi, device
        self.state: TrainState | None = None
        self.params: list[torch.Tensor] | None = None

    def snapshot(self, state: TrainState, keep_params: bool = True) -> TrainState:
        """Record ``state`` with the optimiser, scheduler and generator states; return it."""
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
