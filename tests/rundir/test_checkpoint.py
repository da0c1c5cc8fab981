import json
import os

import pytest
import torch

import pyrovae
from pyrovae.rundir.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.rundir.files import atomic_write


def test_load_round_trips_the_trained_vae(run_dir, tiny_npz):
    vae = pyrovae.load(run_dir)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    for key, value in vae.state_dict().items():
        assert torch.equal(value, state["model_state"][key])
    assert vae.z_dim == 4 and vae.config["hidden"] == [16]
    x = torch.bernoulli(torch.full((3, 784), 0.2))
    torch.manual_seed(0)
    a = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=20).per_datapoint
    again = pyrovae.load(run_dir)
    torch.manual_seed(0)
    b = pyrovae.log_marginal_likelihood(again.model, again.guide, x, num_samples=20).per_datapoint
    assert torch.equal(a, b)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "pyrovae-checkpoint", "payload": Evil()}, path)
    with pytest.raises(pyrovae.PyrovaeError, match="refusing to load .*pickled object"):
        load_checkpoint(path)


def test_corrupt_and_foreign_checkpoints(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(pyrovae.PyrovaeError, match="unreadable or corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(pyrovae.PyrovaeError, match="not a pyrovae checkpoint"):
        load_checkpoint(path)
    save_checkpoint(path, {"x": torch.ones(1)})
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(1))


def test_config_that_does_not_match_the_checkpoint(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    config["model"]["z_dim"] = 5
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(pyrovae.PyrovaeError, match="does not match its config.json"):
        pyrovae.load(run_dir)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("good")

    def fail(f):
        f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail, mode="w")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
