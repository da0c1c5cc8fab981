"""Evaluation shared among torch.distributed processes: 2 CPU processes, gloo backend.

Every pass of datapoints draws from its own seeded generator, so two processes must give
exactly the values of one, for the same seed.
"""

from __future__ import annotations

import gc
import json
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
import torch.multiprocessing as mp
from helpers.ppca import PPCA, Q

import pyrovae
from pyrovae import PyrovaeError
from pyrovae.cli import main
from pyrovae.inference.marginal import iwae_bound

N, BATCH = 40, 7  # 6 passes of 7 datapoints and one of 5: uneven among 2 processes


class Reshaping(PPCA):
    """A model that fails under the particle plate (``reshape`` to one row per datapoint),
    so ``strategy="auto"`` falls back to replicating: each process falls back on its own
    first pass, which must draw what replicating from the start draws."""

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(x.new_zeros(Q), 1.0).to_event(1))
            z = z.reshape(x.shape[0], Q)
            loc = z @ self.W.T + self.mu
            pyro.sample("x", pyro.distributions.Normal(loc, self.sigma).to_event(1), obs=x)


def estimates(distributed: bool | None = None) -> dict[str, torch.Tensor]:
    """Every per-datapoint value of the three estimators, from seed 0."""
    pyro.set_rng_seed(0)
    bad = PPCA(shift=0.5, inflate=2.0)
    x = PPCA().sample(N)
    out = {}
    est = pyrovae.log_marginal_likelihood(
        bad.model, bad.guide, x, num_samples=50, batch_size=BATCH, distributed=distributed
    )
    out.update(log_px=est.per_datapoint, elbo=est.elbo, ess=est.ess)
    bound = iwae_bound(
        bad.model,
        bad.guide,
        x,
        num_particles=5,
        num_estimates=2,
        batch_size=BATCH,
        distributed=distributed,
    )
    out["iwae"] = bound.per_datapoint
    ais = pyrovae.annealed_importance_sampling(
        bad.model,
        bad.guide,
        x,
        num_chains=4,
        num_steps=3,
        batch_size=BATCH,
        distributed=distributed,
    )
    out.update(ais=ais.per_datapoint, ais_ess=ais.ess)
    reshaping = Reshaping(shift=0.5, inflate=2.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the model or guide does not broadcast")
        fallback = pyrovae.log_marginal_likelihood(
            reshaping.model,
            reshaping.guide,
            x,
            num_samples=8,
            batch_size=BATCH,
            distributed=distributed,
        )
    out["fallback"] = fallback.per_datapoint
    return out


def worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        shared = estimates()
        alone = estimates(distributed=False)  # every datapoint, in this process
        torch.save({"shared": shared, "alone": alone}, Path(out) / f"rank{rank}.pt")
    finally:
        gc.collect()  # cycles go while the process group is alive (see ddp_worker)
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_thread():
    """Run with one thread, as the launched processes do, and restore the count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def test_two_processes_give_the_values_of_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]), prepend=":")
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    threads = _one_thread()
    try:
        one = estimates()
    finally:
        torch.set_num_threads(threads)
    assert all(v.shape == (N,) for v in one.values())
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for key, value in one.items():
            assert torch.equal(got["shared"][key], value), (rank, key)
            assert torch.equal(got["alone"][key], value), (rank, key)


def test_distributed_true_needs_a_process_group():
    x = PPCA().sample(5)
    with pytest.raises(PyrovaeError, match="process group"):
        pyrovae.log_marginal_likelihood(
            PPCA().model, PPCA().guide, x, num_samples=2, distributed=True
        )


def test_the_same_seed_gives_the_same_values_and_the_stream_moves_on():
    a, b = estimates(), estimates()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    model = PPCA(shift=0.5)
    x = model.sample(10)
    first = pyrovae.log_marginal_likelihood(model.model, model.guide, x, num_samples=5, min_ess=0)
    second = pyrovae.log_marginal_likelihood(model.model, model.guide, x, num_samples=5, min_ess=0)
    assert not torch.equal(first.per_datapoint, second.per_datapoint)


def test_torchrun_evaluate_writes_once_the_values_of_one_process(run_dir, capsys):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    options = ["--num-samples", "10", "--device", "cpu", "--batch-size", "25"]
    proc = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "--master-port",
            str(_free_port()),
            "-m",
            "pyrovae",
            "evaluate",
            str(run_dir),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote") == 1 and proc.stdout.count("held-out ELBO") == 1
    two = json.loads((run_dir / "metrics.json").read_text())
    two_log_px = np.load(run_dir / "log_px.npy")
    assert two["processes"] == 2
    threads = _one_thread()
    try:
        assert main(["evaluate", str(run_dir), *options]) == 0
    finally:
        torch.set_num_threads(threads)
    one = json.loads((run_dir / "metrics.json").read_text())
    assert one["processes"] == 1 and one["n_test"] == two["n_test"] == len(two_log_px)
    assert one["test_nll"] == two["test_nll"] and one["test_elbo"] == two["test_elbo"]
    np.testing.assert_array_equal(np.load(run_dir / "log_px.npy"), two_log_px)
