"""A process of the 2-process data-parallel test (tests/test_distributed.py)."""

from __future__ import annotations

import gc
import json
import os
import signal
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyrovae

Z = 4


class DeterministicAE(nn.Module):
    """A Pyro model with a Delta guide: its loss has no sampling noise, so one process and
    two must reach the same parameters exactly (up to float summation order)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(784, Z)
        self.decoder = nn.Linear(Z, 784)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("ae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("ae", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(self.encoder(x)).to_event(1))


def data() -> torch.Tensor:
    return torch.bernoulli(torch.full((200, 784), 0.3), generator=torch.Generator().manual_seed(0))


def train() -> dict[str, torch.Tensor]:
    pyro.clear_param_store()
    torch.manual_seed(0)
    ae = DeterministicAE()
    # SGD, not Adam: Adam's steps hardly change when all gradients are scaled, so it
    # would hide a wrong reduction across processes.
    pyrovae.fit(
        ae,
        data(),
        epochs=2,
        batch_size=32,
        optim=pyro.optim.SGD({"lr": 1e-4}),
        binarize="none",
        progress=False,
        device="cpu",
        precision="float32",
        seed=0,
    )
    return {k: v.detach().clone() for k, v in ae.state_dict().items()}


def worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        state = train()
        if rank == 0:
            torch.save(state, out)
    finally:
        gc.collect()  # DDP's cycles go while the process group is alive
        torch.distributed.destroy_process_group()


class SignalledAE(DeterministicAE):
    """Sends itself SIGTERM at its ``at``-th model call when ``at`` is given."""

    def __init__(self, at: int | None) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def model(self, x: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        super().model(x)


def preempted_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """Rank 1 alone is sent SIGTERM; every rank records where it stopped (test_preemption)."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    handed = []
    try:
        torch.manual_seed(0)
        pyrovae.fit(
            SignalledAE(at=5 if rank == 1 else None),
            data(),
            epochs=2,
            batch_size=32,
            binarize="none",
            progress=False,
            device="cpu",
            precision="float32",
            callback=lambda state: handed.append([state.epoch, state.step]),
        )
        stopped = None
    except pyrovae.errors.Preempted as err:
        stopped = [err.signum, err.epoch, err.step]
    finally:
        gc.collect()  # DDP's cycles go while the process group is alive
        torch.distributed.destroy_process_group()
    Path(f"{out}.{rank}").write_text(json.dumps({"stopped": stopped, "handed": handed}))
