"""Data-parallel training with torch.distributed: 2 CPU processes, gloo backend."""

import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from helpers import ddp_worker


def test_two_processes_reach_the_parameters_of_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]), prepend=":")
    out = tmp_path / "ddp.pt"
    mp.spawn(
        ddp_worker.worker,
        args=(2, str(tmp_path / "init"), str(out)),
        nprocs=2,
        join=True,
    )
    two = torch.load(out, weights_only=True)
    one = ddp_worker.train()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
    # and training moved them: the test compares trained parameters, not initial ones
    torch.manual_seed(0)
    initial = ddp_worker.DeterministicAE().state_dict()
    assert not torch.allclose(one["decoder.weight"], initial["decoder.weight"], atol=1e-3)


def test_the_documented_torchrun_command(tmp_path, tiny_npz):
    """torchrun --nproc-per-node 2 -m pyrovae train ...: one run folder, written once."""
    import json
    import shutil
    import subprocess

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "-m",
            "pyrovae",
            "train",
            "--dataset",
            str(tiny_npz),
            "--epochs",
            "2",
            "--z-dim",
            "4",
            "--hidden",
            "16",
            "--batch-size",
            "64",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2] and history["steps"] == [4, 4]
    assert proc.stdout.count("wrote") == 1  # only rank 0 writes
    assert -1000 < history["train_elbo"][-1] < 0
