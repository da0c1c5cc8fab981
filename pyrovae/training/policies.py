"""The policies around the training loop: each one concern, each tested on its own.

``fit`` (:mod:`pyrovae.training.loop`) is a short loop of steps over an explicit state;
everything else it does is a :class:`Policy` that the loop calls at fixed moments:

================  ==================================================================
moment            policies that act there
================  ==================================================================
``start``         :class:`Progress` opens its bar
``epoch_start``   :class:`Preemption`: a signal before the epoch stops the run
``before_step``   :class:`KLWarmup` sets the KL weight; :class:`NaNGuard` decides
                  whether the step checks its gradients
``after_step``    :class:`Schedulers` (per step); :class:`Preemption`;
                  :class:`Checkpoints` every ``checkpoint_every`` steps
``recover``       :class:`NaNGuard`: a non-finite step stops the run, or goes back
                  to the last good state with half the learning rate
``end_of_epoch``  :class:`ModelHook` (the model's ``end_of_epoch``),
                  :class:`Validation`, :class:`Schedulers` (per epoch): each may add
                  to the epoch's record before the history takes it
``epoch_done``    :class:`Progress` prints the epoch; :class:`Checkpoints` hands the
                  state to the callback, which may stop the run
``finish``        :class:`Processes`: no process leaves before the others
``close``         :class:`Progress` closes its bar (always, errors included)
================  ==================================================================

A policy that stops the run returns True (``after_step``, ``epoch_done``) or raises
(:class:`~pyrovae.errors.Preempted`, :class:`~pyrovae.errors.NonFiniteError`). Under
``torch.distributed`` every decision to stop is shared, so every process stops at the
same step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from pyrovae.errors import NonFiniteError, Param, Preempted
from pyrovae.inference.marginal import elbo_terms, iwae_bound
from pyrovae.inference.objectives import LatentScale
from pyrovae.inference.svi import FastSVI
from pyrovae.training import distributed, preemption
from pyrovae.training.state import Callback, GoodState, Loop


class Policy:
    """One concern of the training loop; every moment does nothing unless overridden."""

    def start(self, loop: Loop) -> None:
        """Before the first epoch."""

    def epoch_start(self, loop: Loop) -> None:
        """Before the epoch's first step (or the step it resumes at)."""

    def before_step(self, loop: Loop) -> None:
        """Before each step."""

    def after_step(self, loop: Loop) -> bool:
        """After each step; True stops the run."""
        return False

    def recover(self, loop: Loop, err: NonFiniteError) -> bool:
        """After a non-finite step (not applied); True when ``loop.state`` was restored."""
        return False

    def end_of_epoch(self, loop: Loop, record: dict[str, Any]) -> None:
        """After the epoch's last step; may add entries to the epoch's ``record``."""

    def epoch_done(self, loop: Loop) -> bool:
        """Once the history holds the epoch; True stops the run."""
        return False

    def finish(self, loop: Loop) -> None:
        """After the last epoch, when training ends without an error."""

    def close(self, loop: Loop) -> None:
        """However training ends."""


class Policies(list):
    """The policies of a run, called in order at each moment (see the module docstring)."""

    def _each(self, moment: str, *args: Any) -> list:
        """Every policy at ``moment``, in order: their answers."""
        return [getattr(policy, moment)(*args) for policy in self]

    def start(self, loop: Loop) -> None:
        self._each("start", loop)

    def epoch_start(self, loop: Loop) -> None:
        self._each("epoch_start", loop)

    def before_step(self, loop: Loop) -> None:
        self._each("before_step", loop)

    def after_step(self, loop: Loop) -> bool:
        return any(self._each("after_step", loop))  # every policy sees every step

    def recover(self, loop: Loop, err: NonFiniteError) -> None:
        """Let the first policy that can restore the state do so; else raise ``err``."""
        if not any(p.recover(loop, err) for p in self):
            raise err

    def end_of_epoch(self, loop: Loop, record: dict[str, Any]) -> None:
        self._each("end_of_epoch", loop, record)

    def epoch_done(self, loop: Loop) -> bool:
        return any(self._each("epoch_done", loop))

    def finish(self, loop: Loop) -> None:
        self._each("finish", loop)

    def close(self, loop: Loop) -> None:
        self._each("close", loop)


class Progress(Policy):
    """A progress bar over the epochs and one line per epoch (on rank 0, when ``show``)."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: Any = None

    def start(self, loop: Loop) -> None:
        self.bar = tqdm(
            total=loop.epochs,
            initial=loop.state.epoch,
            desc="epochs",
            unit="epoch",
            disable=not self.show,
        )
        loop.say = self.bar.write if self.show else _silent

    def epoch_done(self, loop: Loop) -> bool:
        self.bar.update(1)
        if self.show:
            self.bar.write(_epoch_line(loop.last_record, loop.epochs))
        return False

    def close(self, loop: Loop) -> None:
        if self.bar is not None:
            self.bar.close()


def _silent(text: str) -> None:
    """Say nothing (progress off)."""


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    line = f"epoch {record['epoch']}/{epochs}  train ELBO {record['train_elbo']:.2f}"
    if "val_elbo" in record:
        line += f"  val ELBO {record['val_elbo']:.2f}"
    return line + f" nats/datapoint  ({record['seconds']:.1f} s)"


def linear_ramp(warmup_steps: float) -> Callable[[int], float] | None:
    """The KL weight's fraction of ``beta`` at each step: rising linearly from 0 to 1 over
    ``warmup_steps`` steps, then 1 (None: no warm-up)."""
    if not warmup_steps:
        return None
    return lambda step: min(1.0, (step + 1) / warmup_steps)


def cyclical_ramp(total_steps: int, cycles: int, ratio: float = 0.5) -> Callable[[int], float]:
    """The cyclical schedule of Fu et al. (2019): training split into ``cycles`` equal
    cycles, in each the fraction rises linearly from 0 to 1 over the first ``ratio`` of
    the cycle, then stays at 1. Each restart lets the decoder learn again with a free z,
    so the latent is used before the KL term presses it against the prior."""
    period = max(1.0, total_steps / cycles)
    return lambda step: min(1.0, (step % period + 1) / (ratio * period))


class KLWarmup(Policy):
    """The KL weight at each step is ``beta * ramp(step)`` (no ramp: left at ``beta``)."""

    def __init__(
        self, kl_weight: LatentScale, beta: float, ramp: Callable[[int], float] | None
    ) -> None:
        self.kl_weight, self.beta, self.ramp = kl_weight, beta, ramp

    def before_step(self, loop: Loop) -> None:
        if self.ramp is not None:
            self.kl_weight.scale = self.beta * self.ramp(loop.state.global_step)


class NaNGuard(Policy):
    """Non-finite steps: checked every ``every`` steps and before every hand-over, then
    ``"stop"`` (an error naming the epoch and step) or ``"retry"``: back to the last good
    state with half the learning rate, at most ``max_retries`` times."""

    def __init__(
        self,
        good: GoodState,
        on_nan: str,
        max_retries: int,
        every: int,
        checkpoint_every: int | None,
    ) -> None:
        self.good, self.on_nan, self.max_retries = good, on_nan, max_retries
        self.every, self.checkpoint_every = every, checkpoint_every

    def before_step(self, loop: Loop) -> None:
        step = loop.state.step + 1
        hands_over = step == loop.batches.steps or bool(
            self.checkpoint_every and step % self.checkpoint_every == 0
        )
        loop.check_finite = (loop.state.global_step + 1) % self.every == 0 or hands_over

    def recover(self, loop: Loop, err: NonFiniteError) -> bool:
        state = loop.state
        if self.on_nan == "stop" or state.retries >= self.max_retries:
            raise _stopped(err, state.epoch, state.step, loop.batches.steps, state.retries)
        loop.say(
            f"non-finite step at {_where(state.epoch, state.step + 1, loop.batches.steps)}: "
            f"{err}; back to the last good state with half the learning rate"
        )
        loop.state = self.good.restore(state.retries + 1, 0.5 * loop.svi.lr)
        return True


def _where(epoch: int, step: int, steps: int | None) -> str:
    """``epoch E, step S of N`` (E counted from 1)."""
    return f"epoch {epoch + 1}, step {step}" + (f" of {steps}" if steps else "")


def _stopped(err: NonFiniteError, epoch: int, step: int, steps: int | None, retries: int):
    tried = f" after {retries} retries" if retries else ""
    return NonFiniteError(
        f"training stopped at {_where(epoch, step + 1, steps)}{tried}: {err}; lower the "
        "learning rate or let it retry (",
        Param("on_nan", "retry"),
        ")",
        epoch=epoch + 1,
        step=step + 1,
    )


class Schedulers(Policy):
    """A Pyro LR scheduler steps once per epoch (given minus the train ELBO, which
    ``ReduceLROnPlateau`` watches) or, with ``when="step"``, after every step."""

    def __init__(self, svi: FastSVI, when: str) -> None:
        self.svi, self.when = svi, when

    def after_step(self, loop: Loop) -> bool:
        if self.when == "step":
            self.svi.scheduler_step(loop.loss)
        return False

    def end_of_epoch(self, loop: Loop, record: dict[str, Any]) -> None:
        if self.when == "epoch":
            self.svi.scheduler_step(-record["train_elbo"])


class ModelHook(Policy):
    """The model's own ``end_of_epoch(epoch, data)``, before validation and the checkpoint,
    so that what it changes is validated and saved."""

    def __init__(self, hook: Callable[[int, Any], None], data: Any) -> None:
        self.hook, self.data = hook, data

    def end_of_epoch(self, loop: Loop, record: dict[str, Any]) -> None:
        self.hook(loop.state.epoch + 1, self.data)


class Validation(Policy):
    """The held-out ELBO and its two terms, per datapoint, after every epoch; with
    ``bound_particles`` K, also the held-out IWAE bound L_K (``val_bound``): the
    objective of a run trained on that bound, which its one-sample ELBO may not follow."""

    def __init__(
        self,
        model: Any,
        guide: Any,
        data: Any,
        batch_size: int,
        plate: str | None,
        bound_particles: int | None = None,
    ):
        self.model, self.guide, self.data = model, guide, data
        self.batch_size, self.plate = batch_size, plate
        self.bound_particles = bound_particles

    def end_of_epoch(self, loop: Loop, record: dict[str, Any]) -> None:
        terms = elbo_terms(
            self.model, self.guide, self.data, batch_size=self.batch_size, plate=self.plate
        )
        record.update(
            val_elbo=float(terms.elbo.mean()),
            val_log_likelihood=float(terms.log_likelihood.mean()),
            val_kl=float(terms.kl.mean()),
        )
        if self.bound_particles:
            bound = iwae_bound(
                self.model,
                self.guide,
                self.data,
                num_particles=self.bound_particles,
                batch_size=self.batch_size,
                plate=self.plate,
            )
            record.update(val_bound=float(bound.per_datapoint.mean()))


class Checkpoints(Policy):
    """The state goes to ``callback`` after every epoch and every ``every`` steps; a
    callback that returns False stops the run (every process, under torch.distributed)."""

    def __init__(self, callback: Callback | None, good: GoodState, every: int | None) -> None:
        self.callback, self.good, self.every = callback, good, every

    def after_step(self, loop: Loop) -> bool:
        if not self.every or loop.last_step or loop.state.step % self.every:
            return False
        loop.pause()
        return self.hand_over(loop)

    def epoch_done(self, loop: Loop) -> bool:
        return self.hand_over(loop)

    def hand_over(self, loop: Loop) -> bool:
        """The state to the callback (rank 0's); whether it asked to stop."""
        return distributed.should_stop(self.callback, self.good.snapshot(loop.state), loop.device)


class Preemption(Policy):
    """SIGTERM or SIGINT (:mod:`pyrovae.training.preemption`): the state of that step, or
    of the epoch's start, goes to the callback and :class:`~pyrovae.errors.Preempted`
    stops the run, to be resumed where it stopped."""

    def __init__(self, checkpoints: Checkpoints, resumed: bool) -> None:
        self.checkpoints, self.resumed = checkpoints, resumed

    def epoch_start(self, loop: Loop) -> None:
        signum = distributed.max_over_processes(preemption.pending(), loop.device)
        if signum:  # no callback has had the state of a run not yet started
            fresh = not self.resumed and loop.state.global_step == 0
            raise self._stop(loop, signum, hand_over=fresh)

    def after_step(self, loop: Loop) -> bool:
        if loop.last_step:  # the epoch's end takes over
            return False
        signum = distributed.max_over_processes(preemption.pending(), loop.device)
        if signum:
            loop.pause()
            raise self._stop(loop, signum, hand_over=True)
        return False

    def _stop(self, loop: Loop, signum: int, hand_over: bool) -> Preempted:
        if hand_over:
            self.checkpoints.hand_over(loop)
        distributed.barrier()  # as at a normal end: every process stops at this step
        state = loop.state
        where = _where(state.epoch, state.step, loop.batches.steps)
        if not state.step:
            where = f"the start of epoch {state.epoch + 1}"
        return Preempted(
            f"stopped by {preemption.signal_name(signum)} at {where}",
            signum,
            state.epoch + 1,
            state.step,
        )


class Processes(Policy):
    """Under ``torch.distributed``: no process leaves while another may still be
    receiving from it."""

    def finish(self, loop: Loop) -> None:
        distributed.barrier()
