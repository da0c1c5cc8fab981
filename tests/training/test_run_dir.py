"""``fit(..., run_dir=...)`` writes the folder ``pyrovae train`` writes, from Python."""

from __future__ import annotations

import json

import pyro
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.rundir.folder import load_run

SMALL = {"z_dim": 3, "hidden": (8,)}


def _split(sample, n=200):
    """A small split of the bundled sample, recorded by name like load_dataset's."""
    import dataclasses

    return dataclasses.replace(
        sample,
        train=sample.train[:n],
        test=sample.test[:50],
        train_labels=sample.train_labels[:n],
        test_labels=sample.test_labels[:50],
    )


def test_a_python_run_on_a_named_dataset_is_a_run_folder(tmp_path, sample):
    vae = pyrovae.VAE(**SMALL)
    history = pyrovae.fit(
        vae, _split(sample), epochs=2, batch_size=50, progress=False, run_dir=tmp_path / "run"
    )
    assert history["epoch"] == [1, 2] and "val_elbo" in history  # its held-out split
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["format_version"] == 2 and config["data"]["dataset"] == "sample"
    assert config["model"] == {"kind": "vae", **vae.config}
    assert config["train"]["epochs"] == 2 and config["train"]["batch_size"] == 50
    loaded = pyrovae.load(tmp_path / "run")
    for a, b in zip(loaded.state_dict().values(), vae.state_dict().values(), strict=True):
        assert torch.equal(a, b.cpu())
    assert main(["evaluate", str(tmp_path / "run"), "--num-samples", "2"]) == 0
    assert main(["report", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "report.html").exists()


def test_a_python_run_on_tensors_keeps_its_held_out_data(tmp_path, sample):
    vae = pyrovae.VAE(**SMALL)
    x, held = sample.train[:100], sample.test[:30]
    pyrovae.fit(vae, x, validation=held, epochs=1, progress=False, run_dir=tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.data is None and run.heldout.shape == (30, 784)
    assert set(run.heldout.unique().tolist()) <= {0.0, 1.0}  # binarised as in training
    assert main(["evaluate", str(tmp_path / "run"), "--num-samples", "2"]) == 0
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "latent space of the held-out data" in (tmp_path / "run" / "report.html").read_text()


def test_a_python_run_resumes_from_its_folder(tmp_path, sample):
    data = _split(sample, 100)
    pyro.set_rng_seed(3)
    first = pyrovae.VAE(**SMALL)
    pyrovae.fit(first, data, epochs=1, progress=False, seed=3, run_dir=tmp_path / "run")
    again = pyrovae.VAE(**SMALL)  # its own weights: the folder's replace them
    history = pyrovae.fit(
        again, data, epochs=2, progress=False, seed=3, run_dir=tmp_path / "run", resume=True
    )
    assert history["epoch"] == [1, 2]
    pyro.set_rng_seed(3)
    whole = pyrovae.VAE(**SMALL)
    straight = pyrovae.fit(whole, data, epochs=2, progress=False, seed=3)
    assert straight["train_elbo"] == history["train_elbo"]  # bit for bit, on the CPU
    for a, b in zip(whole.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_run_folder_is_not_overwritten_without_force(tmp_path, sample):
    data = _split(sample, 60)
    pyrovae.fit(pyrovae.VAE(**SMALL), data, epochs=1, progress=False, run_dir=tmp_path / "r")
    with pytest.raises(pyrovae.PyrovaeError, match="already holds files.*force=True"):
        pyrovae.fit(pyrovae.VAE(**SMALL), data, epochs=1, progress=False, run_dir=tmp_path / "r")
    pyrovae.fit(
        pyrovae.VAE(**SMALL), data, epochs=1, progress=False, run_dir=tmp_path / "r", force=True
    )


def test_a_model_a_folder_cannot_rebuild_is_refused_in_one_line(tmp_path, sample):
    vae = pyrovae.VAE(**SMALL)
    with pytest.raises(pyrovae.PyrovaeError, match="rebuilds its model from a config"):
        pyrovae.fit((vae.model, vae.guide), sample.train[:10], run_dir=tmp_path / "r")
    with pytest.raises(pyrovae.PyrovaeError, match="resume=True continues the run in run_dir"):
        pyrovae.fit(vae, sample.train[:10], resume=True)
    assert not (tmp_path / "r").exists()
