"""Early stopping: stops after ``patience`` epochs without improvement, ends with the best
epoch's parameters (in the model and in the run's checkpoint), records where, warns when
the epochs ran out while the validation ELBO still improved."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

import pyrovae
from pyrovae import PyrovaeError
from pyrovae.training.stopping import EarlyStopping, StillImprovingWarning, as_early_stopping


def _fake_loop(epochs: int, keys: tuple[str, ...]):
    param = torch.zeros(2)
    said: list[str] = []
    state = SimpleNamespace(epoch=0, history={})
    loop = SimpleNamespace(
        svi=SimpleNamespace(params=[param]), state=state, epochs=epochs, say=said.append, keys=keys
    )
    return loop, param, said


def _run(policy: EarlyStopping, values: list[float], epochs: int, monitor: str = "val_elbo"):
    """Feed the policy one held-out objective per epoch (and a one-sample ELBO that only
    falls, beside a bound); the parameter is the epoch's number."""
    loop, param, said = _fake_loop(epochs, ("val_elbo", monitor))
    policy.start(loop)
    for epoch, value in enumerate(values, start=1):
        param.fill_(epoch)
        record = {"epoch": epoch, "val_elbo": value if monitor == "val_elbo" else -epoch}
        record[monitor] = value
        policy.end_of_epoch(loop, record)
        loop.state.epoch = epoch
        loop.state.history.setdefault("best_epoch", []).append(record["best_epoch"])
        if policy.epoch_done(loop):
            break
    return loop, param, said


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best():
    values = [-10.0, -8.0, -7.0, -7.5, -7.2, -7.1, -6.0]
    loop, param, said = _run(EarlyStopping(patience=3), values, epochs=20)
    assert loop.state.epoch == 6  # epochs 4, 5, 6 did not beat epoch 3
    assert loop.state.history["best_epoch"] == [1, 2, 3, 3, 3, 3]
    assert torch.equal(param, torch.full((2,), 3.0))
    assert "stopped early at epoch 6" in said[0] and "epoch 3" in said[0]


def test_a_run_on_the_iwae_bound_is_stopped_on_its_held_out_bound():
    values = [-10.0, -8.0, -7.0, -7.5, -7.2, -7.1, -6.0]
    loop, param, said = _run(EarlyStopping(patience=3), values, 20, monitor="val_bound")
    assert loop.state.epoch == 6 and torch.equal(param, torch.full((2,), 3.0))
    assert "held-out IWAE bound has not improved" in said[0]


def test_min_delta_counts_small_gains_as_none():
    values = [-10.0, -9.95, -9.9, -9.85, -5.0]
    loop, _, _ = _run(EarlyStopping(patience=3, min_delta=0.5), values, epochs=20)
    assert loop.state.epoch == 4 and loop.state.history["best_epoch"][-1] == 1


def test_running_out_of_epochs_while_improving_warns_and_keeps_the_best():
    values = [-10.0, -9.0, -8.5, -9.5] + [-8.0 + 0.1 * i for i in range(16)]
    with pytest.warns(StillImprovingWarning, match="best at epoch 19"):
        loop, param, _ = _run(EarlyStopping(patience=5), values[:-1], epochs=19)
    assert loop.state.epoch == 19 and torch.equal(param, torch.full((2,), 19.0))
    # the best two epochs before the end of a 20-epoch run: past its last tenth, no warning
    values[-1] = -20.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", StillImprovingWarning)
        loop, param, _ = _run(EarlyStopping(patience=5), [*values[:-2], -20.0, -20.0], epochs=20)
    assert torch.equal(param, torch.full((2,), 18.0))


def test_a_run_that_converged_before_its_last_epoch_does_not_warn():
    values = [-10.0, -9.0, -9.5, -9.6, -9.7]  # a run of 5: only a best last epoch warns
    with warnings.catch_warnings():
        warnings.simplefilter("error", StillImprovingWarning)
        loop, _, _ = _run(EarlyStopping(patience=3), values, epochs=5)
    assert loop.state.epoch == 5


@pytest.mark.parametrize(
    ("value", "patience"), [(True, 10), (4, 4), (EarlyStopping(patience=7), 7)]
)
def test_fit_s_early_stopping_argument(value, patience):
    assert as_early_stopping(value).patience == patience
    assert as_early_stopping(None) is None and as_early_stopping(False) is None


@pytest.mark.parametrize(
    ("value", "match"),
    [("soon", "early_stopping must be"), (0, "patience must be"), (-1.0, "early_stopping")],
)
def test_bad_early_stopping_is_one_line(value, match):
    with pytest.raises(PyrovaeError, match=match):
        as_early_stopping(value)


def test_fit_refuses_early_stopping_without_held_out_data(sample):
    with pytest.raises(PyrovaeError, match="pass held-out data as validation"):
        pyrovae.fit(pyrovae.VAE(z_dim=2, hidden=(8,)), sample.train[:20], early_stopping=True)


def test_fit_stops_an_overfitting_run_at_its_best_epoch(sample, tmp_path):
    """50 images, 300 epochs: the held-out ELBO peaks early; the model, the history and
    the run folder's checkpoint all end at the best epoch."""
    vae = pyrovae.VAE(z_dim=8, hidden=(64,))
    params: dict[int, list[torch.Tensor]] = {}

    def keep(state):
        params[state.epoch] = [p.detach().clone() for p in vae.parameters()]

    history = pyrovae.fit(
        vae,
        sample.train[:50],
        validation=sample.test[:50],
        epochs=300,
        batch_size=50,
        lr=3e-3,
        progress=False,
        early_stopping=EarlyStopping(patience=5),
        callback=keep,
        run_dir=tmp_path / "run",
    )
    stopped, best = history["epoch"][-1], history["best_epoch"][-1]
    assert stopped == best + 5 < 300
    assert history["val_elbo"][best - 1] == max(history["val_elbo"])
    ends = list(vae.parameters())
    assert all(torch.equal(a, b) for a, b in zip(ends, params[best], strict=True))
    # the epochs after the best moved the parameters; the best epoch's were put back
    assert not all(torch.equal(a, b) for a, b in zip(ends, params[stopped - 1], strict=True))
    loaded = pyrovae.load(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), ends, strict=True))


def test_a_run_on_the_iwae_bound_validates_that_bound(sample):
    """L_K of the held-out data is recorded beside the ELBO, and early stopping watches it."""
    from pyrovae.inference.objectives import get_loss

    history = pyrovae.fit(
        pyrovae.VAE(z_dim=4, hidden=(32,)),
        sample.train[:100],
        validation=sample.test[:100],
        loss=get_loss("iwae", 8),
        epochs=3,
        batch_size=50,
        progress=False,
        early_stopping=2,
    )
    assert len(history["val_bound"]) == 3
    # L_8 >= L_1 in expectation, by several nats for a VAE three epochs old
    assert all(b > e for b, e in zip(history["val_bound"], history["val_elbo"], strict=True))
    assert max(history["val_bound"]) == history["val_bound"][history["best_epoch"][-1] - 1]
