"""Pyro optimisers as users pass them: schedulers, clipping, ClippedAdam's decay."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch

import pyrovae
from pyrovae.training import TrainState


def _pair():
    """A one-parameter model whose gradient is large: loc moves towards the data mean."""

    def model(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    return model, lambda x: None


X = torch.full((64,), 5.0)
FIT = {"binarize": "none", "progress": False, "device": "cpu", "batch_size": 32}


def _scheduler(name: str, **kwargs):
    return getattr(pyro.optim, name)(
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.01}, **kwargs}
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "rates"),
    [
        ("ExponentialLR", {"gamma": 0.1}, [0.01, 0.001, 0.0001]),
        ("MultiStepLR", {"milestones": [2], "gamma": 0.5}, [0.01, 0.01, 0.005]),
        ("StepLR", {"step_size": 1, "gamma": 0.5}, [0.01, 0.005, 0.0025]),
    ],
)
def test_a_scheduler_steps_once_per_epoch_and_the_history_shows_its_rates(name, kwargs, rates):
    history = pyrovae.fit(_pair(), X, epochs=3, optim=_scheduler(name, **kwargs), **FIT)
    assert history["lr"] == pytest.approx(rates)


def test_a_scheduler_can_step_every_step():
    history = pyrovae.fit(
        _pair(),
        X,
        epochs=2,
        optim=_scheduler("ExponentialLR", gamma=0.5),
        scheduler_step="step",
        **FIT,
    )
    assert history["lr"] == pytest.approx([0.01 * 0.5**2, 0.01 * 0.5**4])


def test_reduce_on_plateau_is_given_the_epochs_loss():
    # A rate this small barely moves the loss: the second epoch is no improvement (by the
    # scheduler's relative threshold), so the third runs at half the rate.
    optim = pyro.optim.ReduceLROnPlateau(
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 1e-7}, "patience": 0, "factor": 0.5}
    )
    history = pyrovae.fit(_pair(), X, epochs=3, optim=optim, **FIT)
    assert history["lr"] == pytest.approx([1e-7, 1e-7, 0.5e-7], rel=1e-6)


def test_gradient_clipping_is_honoured():
    optim = pyro.optim.SGD({"lr": 1.0}, clip_args={"clip_norm": 0.01})
    pyrovae.fit(_pair(), X, epochs=1, optim=optim, **FIT)
    assert float(pyro.param("loc").detach()) == pytest.approx(0.02)  # two steps of 0.01
    pyro.clear_param_store()
    optim = pyro.optim.SGD({"lr": 1.0}, clip_args={"clip_value": 0.5})
    pyrovae.fit(_pair(), X, epochs=1, optim=optim, **FIT)
    assert float(pyro.param("loc").detach()) == pytest.approx(1.0)


def test_clipped_adam_decays_its_rate():
    optim = pyro.optim.ClippedAdam({"lr": 0.01, "lrd": 0.5})
    history = pyrovae.fit(_pair(), X, epochs=2, optim=optim, **FIT)
    assert history["lr"] == pytest.approx([0.01 * 0.5**2, 0.01 * 0.5**4])


def test_the_scheduler_resumes_where_it_stopped():
    states = []
    optim = _scheduler("ExponentialLR", gamma=0.1)
    pyrovae.fit(_pair(), X, epochs=2, optim=optim, callback=states.append, **FIT)
    state = TrainState.from_dict(states[-1].to_dict())
    assert state.scheduler_state is not None
    resumed = pyrovae.fit(
        _pair(), X, epochs=3, optim=_scheduler("ExponentialLR", gamma=0.1), resume=state, **FIT
    )
    assert resumed["lr"] == pytest.approx([0.01, 0.001, 0.0001])
