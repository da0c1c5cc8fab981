"""Each test starts from a clean Pyro parameter store, fixed seeds and validation on.

Under pytest-xdist (``make test`` runs ``pytest -n auto``) each worker computes with one
thread: the workers share the machine's cores between them.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyro
import pytest
import torch

import pyrovae

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and so do the commands the tests run


@pytest.fixture(autouse=True)
def _clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def sample():
    """The bundled MNIST sample (loaded once per session)."""
    return pyrovae.load_dataset("sample")


@pytest.fixture
def tiny_npz(tmp_path, sample):
    """A small .npz of uint8 images, for end-to-end runs in seconds."""
    path = tmp_path / "tiny.npz"
    images = (sample.train[:300] * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
    np.savez(path, x=images)
    return path


@pytest.fixture
def tiny_labelled_npz(tmp_path, sample):
    """A small .npz of uint8 images with their labels and a split of its own."""
    path = tmp_path / "labelled.npz"

    def images(x: torch.Tensor) -> np.ndarray:
        return (x * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()

    np.savez(
        path,
        x_train=images(sample.train[:400]),
        y_train=sample.train_labels[:400].numpy(),
        x_test=images(sample.test[:100]),
        y_test=sample.test_labels[:100].numpy(),
    )
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, sample):
    """A run folder trained once per test process: one epoch on the tiny dataset."""
    from pyrovae.cli import main

    where = tmp_path_factory.mktemp("trained")
    images = (sample.train[:300] * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
    np.savez(where / "tiny.npz", x=images)
    out = where / "run"
    args = ["train", "--dataset", str(where / "tiny.npz"), "--epochs", "1", "--z-dim", "4"]
    assert main([*args, "--hidden", "16", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture
def run_dir(tmp_path, trained_run):
    """A copy of the trained run folder, the test's own to write into."""
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    return out
