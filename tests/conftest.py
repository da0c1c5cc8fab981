"""Each test starts from a clean Pyro parameter store, fixed seeds and validation on."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

import pyrovae


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
def run_dir(tmp_path, tiny_npz):
    """A run folder trained for one epoch on the tiny dataset."""
    from pyrovae.cli import main

    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        str(tiny_npz),
        "--epochs",
        "1",
        "--z-dim",
        "4",
        "--hidden",
        "16",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    return out
