"""Checkpoints, resume and non-finite guards: nothing lost, nothing different."""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae import VAE
from pyrovae.cli import main
from pyrovae.errors import NonFiniteError
from pyrovae.rundir.checkpoint import load_checkpoint
from pyrovae.training import TrainState


def _data(sample):
    return sample.train[:400], sample.test[:100]


def _run(sample, epochs, resume=None, state_dict=None, checkpoint_every=None, keep=None):
    """Train a small VAE; keep every TrainState handed to the callback (as to disk)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(z_dim=4, hidden=(32,))
    if state_dict is not None:
        vae.load_state_dict(state_dict)
    train, val = _data(sample)

    def callback(state):
        if keep is not None:  # a round trip through the checkpoint format
            keep.append(
                (
                    TrainState.from_dict(copy.deepcopy(state.to_dict())),
                    copy.deepcopy(vae.state_dict()),
                )
            )

    history = pyrovae.fit(
        vae,
        train,
        epochs=epochs,
        batch_size=64,
        lr=3e-3,
        progress=False,
        validation=val,
        seed=5,
        callback=callback,
        resume=resume,
        checkpoint_every=checkpoint_every,
        kl_warmup=2,
    )
    return vae.state_dict(), history


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_from_an_epoch_is_bit_for_bit(sample):
    full, history = _run(sample, 5)
    kept = []
    _run(sample, 2, keep=kept)
    state, params = kept[-1]
    assert state.epoch == 2 and state.step == 0
    resumed, resumed_history = _run(sample, 5, resume=state, state_dict=params)
    _same(full, resumed)
    assert resumed_history["epoch"] == [1, 2, 3, 4, 5]
    for key in ("train_elbo", "val_elbo", "kl_weight", "lr"):
        assert resumed_history[key] == history[key], key


def test_resume_from_the_middle_of_an_epoch_is_bit_for_bit(sample):
    full, history = _run(sample, 3, checkpoint_every=3)
    kept = []
    _run(sample, 3, checkpoint_every=3, keep=kept)
    state, params = next(s for s in kept if s[0].epoch == 1 and s[0].step == 6)
    assert not state.end_of_epoch
    resumed, resumed_history = _run(sample, 3, resume=state, state_dict=params, checkpoint_every=3)
    _same(full, resumed)
    assert resumed_history["train_elbo"] == history["train_elbo"]


def _flaky(bad_steps):
    """A model whose loss is NaN at the given calls of the model (counted from 1).

    Pyro's validation is switched off, as it is for speed, so the guard in fit sees the
    NaN loss itself rather than Pyro's check of the NaN parameter.
    """
    pyro.enable_validation(False)
    calls = {"n": 0}
    w = torch.nn.Linear(2, 1)

    def model(x):
        pyro.module("w", w)
        calls["n"] += 1
        loc = w(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(loc, 1.0), obs=x.sum(-1))
            if calls["n"] in bad_steps:  # as an overflowing log-density would
                pyro.factor("overflow", loc * float("nan"))

    def guide(x):
        pass

    return model, guide, w


def test_a_non_finite_loss_stops_before_the_step_is_applied():
    model, guide, w = _flaky({5})
    x = torch.randn(40, 2)
    before = {}

    def callback(state):
        before["params"] = copy.deepcopy(w.state_dict())

    with pytest.raises(NonFiniteError, match=r"epoch 2, step 1 of 4: the loss is nan") as info:
        pyrovae.fit(
            (model, guide),
            x,
            epochs=3,
            batch_size=10,
            binarize="none",
            progress=False,
            callback=callback,
        )
    assert (info.value.epoch, info.value.step) == (2, 1)
    # nothing of the bad step reached the parameters: they are those after epoch 1
    _same(before["params"], w.state_dict())


def test_retry_goes_back_and_halves_the_learning_rate():
    model, guide, w = _flaky({7})
    x = torch.randn(40, 2)
    history = pyrovae.fit(
        (model, guide),
        x,
        epochs=3,
        batch_size=10,
        lr=0.01,
        binarize="none",
        progress=False,
        on_nan="retry",
    )
    assert history["epoch"] == [1, 2, 3]
    assert history["lr"] == pytest.approx([0.01, 0.005, 0.005])
    assert all(torch.isfinite(p).all() for p in w.parameters())


def test_retries_are_bounded():
    model, guide, _ = _flaky(set(range(3, 100)))
    with pytest.raises(NonFiniteError, match="after 3 retries"):
        pyrovae.fit(
            (model, guide),
            torch.randn(40, 2),
            epochs=2,
            batch_size=10,
            binarize="none",
            progress=False,
            on_nan="retry",
        )


def test_nan_distribution_parameters_under_pyro_validation_are_non_finite_steps():
    w = torch.nn.Linear(2, 1)

    def model(x):
        pyro.module("w", w)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(w(x).squeeze(-1) * float("nan"), 1.0), obs=x[:, 0])

    pyro.enable_validation(True)
    with pytest.raises(NonFiniteError, match="epoch 1, step 1 .*NaN or infinite"):
        pyrovae.fit(
            (model, lambda x: None),
            torch.randn(8, 2),
            epochs=1,
            batch_size=8,
            binarize="none",
            progress=False,
        )


def test_a_non_finite_gradient_is_caught():
    w = torch.nn.Parameter(torch.ones(1))

    def model(x):
        pyro.param("w", w)
        with pyro.plate("data", x.shape[0]):
            # sqrt(w - 1) at w = 1: a finite loss with an infinite gradient
            pyro.sample("y", dist.Normal(torch.sqrt(w - 1) * 0, 1.0), obs=x)

    def guide(x):
        pass

    with pytest.raises(NonFiniteError, match="gradient"):
        pyrovae.fit(
            (model, guide), torch.randn(8), epochs=1, batch_size=8, binarize="none", progress=False
        )


# ------------------------------------------------------------------ command line
TRAIN = [
    "--epochs",
    "10",
    "--z-dim",
    "4",
    "--hidden",
    "64",
    "--batch-size",
    "32",
    "--no-progress",
    "--seed",
    "3",
]


@pytest.fixture
def medium_npz(tmp_path, sample):
    import numpy as np

    path = tmp_path / "medium.npz"
    images = (sample.train[:1500] * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
    np.savez(path, x=images)
    return path


def _final_params(run):
    return load_checkpoint(run / "checkpoint.pt")["model_state"]


def test_kill_9_after_epoch_3_then_resume_equals_an_uninterrupted_run(tmp_path, medium_npz):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyrovae",
            "train",
            "--dataset",
            str(medium_npz),
            "--out",
            str(killed),
            *TRAIN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    epochs_done = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            epochs_done = len(json.loads((killed / "history.json").read_text())["epoch"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            epochs_done = 0
        if epochs_done >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    at_kill = load_checkpoint(killed / "checkpoint.pt")["train_state"]
    assert 3 <= at_kill["epoch"] < 10

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    history = json.loads((killed / "history.json").read_text())
    assert history["epoch"] == list(range(1, 11))  # every epoch, each once

    clean = tmp_path / "clean"
    assert main(["train", "--dataset", str(medium_npz), "--out", str(clean), *TRAIN]) == 0
    _same(_final_params(killed), _final_params(clean))
    assert history["train_elbo"] == json.loads((clean / "history.json").read_text())["train_elbo"]


def test_resume_extends_a_finished_run(run_dir, capsys):
    code = main(["train", "--resume", str(run_dir)])
    assert code == 1 and "already trained for 1 epoch" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]


def test_checkpoint_every_steps_writes_mid_epoch_states(tmp_path, tiny_npz):
    out = tmp_path / "run"
    seen = []
    from pyrovae.rundir import folder as ckpt

    original = ckpt.save_checkpoint

    def spy(path, state):
        seen.append((state["train_state"]["epoch"], state["train_state"]["step"]))
        original(path, state)

    ckpt.save_checkpoint = spy
    try:
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    str(tiny_npz),
                    "--out",
                    str(out),
                    "--epochs",
                    "1",
                    "--batch-size",
                    "60",
                    "--checkpoint-every",
                    "2",
                    "--no-progress",
                    "--z-dim",
                    "4",
                    "--hidden",
                    "16",
                ]
            )
            == 0
        )
    finally:
        ckpt.save_checkpoint = original
    assert seen == [(0, 2), (1, 0)]  # 4 steps an epoch: after step 2, then the epoch's end
