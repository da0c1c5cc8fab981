"""Each policy of the training loop on its own, and the loop's order of moments."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import pyrovae
from pyrovae.errors import NonFiniteError, Preempted
from pyrovae.inference.objectives import LatentScale
from pyrovae.training import policies as P
from pyrovae.training.loop import train
from pyrovae.training.state import TrainState


class FakeLoop:
    """What the policies see of a loop: its state, steps, device, and a step that counts."""

    def __init__(self, steps: int = 4, epochs: int = 2) -> None:
        self.state = TrainState(history={"epoch": []})
        self.batches = SimpleNamespace(steps=steps, epoch=lambda e, s: range(s, steps))
        self.device, self.epochs, self.say = torch.device("cpu"), epochs, print
        self.svi = SimpleNamespace(lr=0.1, scheduled=[])
        self.svi.scheduler_step = self.svi.scheduled.append
        self.check_finite, self.loss, self.last_record, self.paused = False, 1.5, {}, 0

    @property
    def last_step(self) -> bool:
        return self.state.step >= self.batches.steps

    def take(self) -> None:
        self.state.step += 1
        self.state.global_step += 1

    # what the loop itself does (training.state.Loop), for train()
    def begin_epoch(self) -> None:
        pass

    def step(self, batch) -> None:
        self.take()

    def pause(self) -> None:
        self.paused += 1

    def record(self) -> dict:
        return {"epoch": self.state.epoch + 1, "train_elbo": -1.0, "seconds": 0.0}

    def commit(self, record: dict) -> None:
        self.state.history["epoch"].append(record["epoch"])
        self.state.epoch, self.state.step = self.state.epoch + 1, 0
        self.last_record = record


class Recorder(P.Policy):
    """Writes down every moment it is called at."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.moments: list[str] = []
        self.stop_after = stop_after

    def __getattribute__(self, name):
        if name in ("start", "epoch_start", "before_step", "end_of_epoch", "finish", "close"):
            self.moments.append(name)
        return object.__getattribute__(self, name)

    def after_step(self, loop) -> bool:
        self.moments.append("after_step")
        return self.stop_after is not None and loop.state.global_step >= self.stop_after

    def epoch_done(self, loop) -> bool:
        self.moments.append("epoch_done")
        return False


def test_the_loop_calls_the_moments_in_order():
    recorder = Recorder()
    history = train(FakeLoop(steps=2, epochs=2), P.Policies([recorder]))
    assert history["epoch"] == [1, 2]
    epoch = ["epoch_start", "before_step", "after_step", "before_step", "after_step"]
    assert recorder.moments == [
        "start", *epoch, "end_of_epoch", "epoch_done", *epoch, "end_of_epoch", "epoch_done",
        "finish", "close",
    ]  # fmt: skip


def test_a_policy_that_stops_ends_the_run_and_every_policy_still_sees_the_step():
    first, second = Recorder(stop_after=3), Recorder()
    history = train(FakeLoop(steps=2, epochs=5), P.Policies([first, second]))
    assert history["epoch"] == [1]  # stopped in the second epoch's first step
    assert second.moments.count("after_step") == 3
    assert "finish" in second.moments and second.moments[-1] == "close"


def test_an_error_closes_but_does_not_finish():
    class Boom(P.Policy):
        def before_step(self, loop):
            raise RuntimeError("boom")

    recorder = Recorder()
    with pytest.raises(RuntimeError):
        train(FakeLoop(), P.Policies([recorder, Boom()]))
    assert "close" in recorder.moments and "finish" not in recorder.moments


def test_kl_warmup_rises_step_by_step_to_beta():
    weight, loop = LatentScale(0.0), FakeLoop()
    warmup = P.KLWarmup(weight, beta=0.5, ramp=P.linear_ramp(4))
    seen = []
    for _ in range(6):
        warmup.before_step(loop)
        seen.append(weight.scale)
        loop.take()
    assert seen == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.5])


def test_cyclical_schedule_restarts_each_cycle_and_holds_in_its_second_half():
    ramp = P.cyclical_ramp(total_steps=16, cycles=2)  # cycles of 8 steps, ramps of 4
    seen = [ramp(step) for step in range(16)]
    one_cycle = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert seen == pytest.approx(one_cycle * 2)
    weight, loop = LatentScale(0.0), FakeLoop()
    policy = P.KLWarmup(weight, beta=2.0, ramp=ramp)
    for step in range(9):
        policy.before_step(loop)
        assert weight.scale == pytest.approx(2.0 * one_cycle[step % 8])
        loop.take()


def test_no_ramp_leaves_the_weight_at_beta():
    weight, loop = LatentScale(0.7), FakeLoop()
    P.KLWarmup(weight, beta=0.7, ramp=P.linear_ramp(0)).before_step(loop)
    assert weight.scale == 0.7


def test_nan_guard_checks_every_n_steps_and_before_every_hand_over():
    loop, guard = FakeLoop(steps=10), P.NaNGuard(None, "stop", 3, every=4, checkpoint_every=3)
    checked = []
    for step in range(1, 11):
        guard.before_step(loop)
        if loop.check_finite:
            checked.append(step)
        loop.take()
    assert checked == [3, 4, 6, 8, 9, 10]  # every 4th, every 3rd (hand-over), the last


def test_nan_guard_stops_with_where_and_how_to_retry():
    loop = FakeLoop(steps=10)
    loop.state.epoch, loop.state.step = 1, 4
    with pytest.raises(NonFiniteError, match=r"epoch 2, step 5 of 10: the loss is nan") as err:
        P.NaNGuard(None, "stop", 3, 50, None).recover(loop, NonFiniteError("the loss is nan"))
    assert "on_nan='retry'" in str(err.value) and (err.value.epoch, err.value.step) == (2, 5)


def test_nan_guard_retries_from_the_good_state_with_half_the_rate():
    restored = TrainState(epoch=1, retries=1)
    calls = []

    def restore(retries, lr):
        calls.append((retries, lr))
        return restored

    good = SimpleNamespace(restore=restore)
    loop, said = FakeLoop(), []
    loop.say = said.append
    guard = P.NaNGuard(good, "retry", max_retries=1, every=50, checkpoint_every=None)
    assert guard.recover(loop, NonFiniteError("a gradient is NaN or infinite"))
    assert loop.state is restored and calls == [(1, 0.05)]
    assert "back to the last good state" in said[0]
    with pytest.raises(NonFiniteError, match="after 1 retries"):  # no retries left
        guard.recover(loop, NonFiniteError("again"))


@pytest.mark.parametrize("when", ["epoch", "step"])
def test_schedulers_step_per_epoch_or_per_step(when):
    loop, schedulers = FakeLoop(), P.Schedulers(None, when)
    schedulers.svi = loop.svi
    schedulers.after_step(loop)
    schedulers.end_of_epoch(loop, {"train_elbo": -7.0})
    assert loop.svi.scheduled == ([7.0] if when == "epoch" else [1.5])


def test_the_models_hook_gets_the_epoch_just_finished_and_the_data():
    calls, loop = [], FakeLoop()
    loop.state.epoch = 4
    P.ModelHook(lambda epoch, data: calls.append((epoch, data)), "data").end_of_epoch(loop, {})
    assert calls == [(5, "data")]


def test_validation_adds_the_held_out_elbo_and_its_terms():
    vae, record = pyrovae.VAE(x_dim=6, z_dim=2, hidden=(4,)), {}
    x = torch.bernoulli(torch.full((10, 6), 0.5))
    P.Validation(vae.model, vae.guide, x, 100, None).end_of_epoch(FakeLoop(), record)
    assert set(record) == {"val_elbo", "val_log_likelihood", "val_kl"}
    assert record["val_elbo"] == pytest.approx(record["val_log_likelihood"] - record["val_kl"])


def test_checkpoints_hand_over_every_n_steps_and_at_the_end_of_an_epoch():
    handed = []
    good = SimpleNamespace(snapshot=lambda state: handed.append(state.step) or state)
    loop = FakeLoop(steps=6)
    checkpoints = P.Checkpoints(lambda state: None, good, every=2)
    for _ in range(6):
        loop.take()
        assert not checkpoints.after_step(loop)
    assert handed == [2, 4] and loop.paused == 2  # the 6th is the epoch's end
    assert not checkpoints.epoch_done(loop) and handed == [2, 4, 6]
    stopping = P.Checkpoints(lambda state: False, good, every=None)
    assert stopping.epoch_done(loop)  # a callback returning False stops the run


def test_preemption_hands_over_the_state_of_the_step_and_stops(monkeypatch):
    monkeypatch.setattr(P.preemption, "pending", lambda: 15)
    handed = []
    checkpoints = SimpleNamespace(hand_over=lambda loop: handed.append(loop.state.step))
    loop = FakeLoop(steps=5)
    loop.take()
    with pytest.raises(Preempted, match="stopped by SIGTERM at epoch 1, step 1 of 5") as err:
        P.Preemption(checkpoints, resumed=False).after_step(loop)
    assert err.value.signum == 15 and handed == [1] and loop.paused == 1
    fresh = FakeLoop()
    with pytest.raises(Preempted, match="at the start of epoch 1"):
        P.Preemption(checkpoints, resumed=False).epoch_start(fresh)
    assert handed == [1, 0]  # the run had not started: its state goes to the callback
    with pytest.raises(Preempted):
        P.Preemption(checkpoints, resumed=True).epoch_start(fresh)
    assert handed == [1, 0]  # a resumed run's callback has that state already


def test_no_signal_no_stop(monkeypatch):
    monkeypatch.setattr(P.preemption, "pending", lambda: 0)
    loop = FakeLoop()
    loop.take()
    assert not P.Preemption(None, resumed=False).after_step(loop)


def test_progress_prints_one_line_per_epoch(capsys):
    loop, progress = FakeLoop(), P.Progress(show=True)
    progress.start(loop)
    loop.last_record = {"epoch": 1, "train_elbo": -3.0, "val_elbo": -4.0, "seconds": 0.5}
    progress.epoch_done(loop)
    progress.close(loop)
    out = capsys.readouterr()
    assert (
        "epoch 1/2  train ELBO -3.00  val ELBO -4.00 nats/datapoint  (0.5 s)" in out.out + out.err
    )
