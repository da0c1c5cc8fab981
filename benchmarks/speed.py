"""Speed: pyrovae's training step and log p(x) estimator against plain PyTorch.

The training step is the one ``pyrovae.fit`` takes (``FastSVI`` with Trace_ELBO on the
VAE's Pyro model and guide, Adam); the reference is the same 784-400-50 VAE written in
plain PyTorch (``plain_vae.py``) with ``torch.optim.Adam`` as people write it, and, for
transparency, with torch's fused Adam too. The variants are timed in turn, block after
block, in one process, and the median block is reported: ms per step, samples per
second, the ratio to plain PyTorch, and peak memory (on a GPU the peak allocated by
torch; on the CPU the peak RSS of a fresh child process over 10 steps, after a first step,
above its RSS before them: what a step needs beyond the resident model; Linux only).

    python benchmarks/speed.py                        # CPU, batch 32, 256, 1024
    python benchmarks/speed.py --device cuda          # the same code on a GPU
    python benchmarks/speed.py --estimator            # also log p(x) vs hand-written
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402
from plain_vae import PlainVAE  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.objectives import Trace_ELBO  # noqa: E402
from pyrovae.training import FastSVI, resolve_device  # noqa: E402


def make_step(name: str, device: torch.device):
    """A function x -> loss tensor taking one training step of variant ``name``."""
    torch.manual_seed(0)
    if name == "pyrovae":
        pyro.clear_param_store()
        vae = pyrovae.VAE().to(device)
        svi = FastSVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        return svi.step_tensor
    vae = PlainVAE().to(device)
    fused = True if name == "plain PyTorch, fused Adam" else None
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused)

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = vae.loss(x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss.detach()

    return step


VARIANTS = ("plain PyTorch", "pyrovae", "plain PyTorch, fused Adam")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(batch: int, device: torch.device, blocks: int, steps: int) -> dict:
    data = torch.bernoulli(torch.rand(8192, 784, device=device) * 0.3)
    fns = {name: make_step(name, device) for name in VARIANTS}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for block in range(blocks + 2):  # two warm-up blocks
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            for i in range(steps):
                j = (i * batch) % (data.shape[0] - batch)
                fn(data[j : j + batch])
            _sync(device)
            if block >= 2:
                times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _peak_child(name: str, batch: int, device_name: str, queue) -> None:
    device = torch.device(device_name)
    data = torch.bernoulli(torch.rand(8192, 784, device=device) * 0.3)
    fn = make_step(name, device)
    fn(data[:batch])  # first step: optimiser state, lazy imports, allocator caches
    _sync(device)
    base = memory.start(device)
    for _ in range(10):
        fn(data[:batch])
    _sync(device)
    peak = memory.peak(device)
    queue.put(peak - base)


def peak_memory(name: str, batch: int, device: torch.device) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(name, batch, str(device), queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--batches", default="32,256,1024")
    p.add_argument("--blocks", type=int, default=7, help="timed blocks per variant")
    p.add_argument("--steps", type=int, default=20, help="steps per block")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--estimator", action="store_true", help="also run marginal_vs_pytorch.py")
    args = p.parse_args()
    device = resolve_device(args.device)
    pyro.enable_validation(False)  # both sides unchecked: we time the arithmetic

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {device} ({name}), torch {torch.__version__}, pyro {pyro.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "training step of the 784-400-50 Bernoulli VAE, Trace_ELBO, Adam; median of "
        f"{args.blocks} interleaved blocks of {args.steps} steps"
    )
    header = f"{'batch':>6} {'variant':28}{'ms/step':>9}{'samples/s':>11}{'ratio':>7}"
    print(header + ("" if args.no_memory else f"{'peak MiB':>10}"))
    for batch in (int(b) for b in args.batches.split(",")):
        med = time_steps(batch, device, args.blocks, args.steps)
        base = med["plain PyTorch"]
        for variant in VARIANTS:
            line = (
                f"{batch:>6} {variant:28}{med[variant] * 1e3:9.2f}"
                f"{batch / med[variant]:11.0f}{med[variant] / base:7.2f}"
            )
            if not args.no_memory:
                line += f"{peak_memory(variant, batch, device) / 2**20:10.1f}"
            print(line, flush=True)
    if args.estimator:
        script = Path(__file__).parent / "marginal_vs_pytorch.py"
        subprocess.run([sys.executable, str(script), "--device", str(device)], check=True)


if __name__ == "__main__":
    main()
