"""Speed: ``pyrovae.fit`` against the same training loop in plain PyTorch, per precision.

Every variant trains the 784-400-50 Bernoulli VAE on the same images for whole epochs
with the same data work per step (a shuffled order, the minibatch indexed out, dynamic
binarisation drawn as ``uniform < p``, the loss summed on the device), so the ratios
measure what pyrovae adds, not what the data pipeline costs:

* ``pyrovae.fit`` in float32 and at its default precision (``"auto"``: bfloat16 where
  the device multiplies it natively);
* the reference: plain PyTorch (``plain_vae.py``) in float32 with ``torch.optim.Adam``,
  plain and fused;
* plain PyTorch under the same bfloat16 autocast, fused Adam: what precision alone gives.

The variants run in turn, round after round, in one process; each run's first epoch is
a warm-up and the median epoch of the rest is reported as ms per step, with the ratio to
plain PyTorch float32 with fused Adam. ``pyrovae.fit``'s time is its loop's (the
``seconds`` of its history): the setup before the first step is reported apart.

    python benchmarks/speed.py                        # CPU, batch 32, 256, 1024
    python benchmarks/speed.py --device cuda          # the same code on a GPU
    python benchmarks/speed.py --estimator            # also log p(x) vs hand-written
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_vae import PlainVAE  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.inference.precision import native_bfloat16, resolve_precision  # noqa: E402
from pyrovae.training import resolve_device  # noqa: E402

REFERENCE = "plain PyTorch float32, fused Adam"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_run(device: torch.device, fused: bool, autocast: bool) -> Callable:
    """A function (data, batch, epochs) -> seconds per epoch, for a plain PyTorch loop."""

    def run(data: torch.Tensor, batch: int, epochs: int) -> list[float]:
        torch.manual_seed(0)
        vae = PlainVAE().to(device)
        optim = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused or None)
        seconds = []
        for _ in range(epochs):
            _sync(device)
            start = time.perf_counter()
            order = torch.randperm(data.shape[0], device=device)
            total = data.new_zeros(())
            for i in range(0, data.shape[0], batch):
                p = data[order[i : i + batch]]
                x = (torch.rand_like(p) < p).to(p.dtype)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = vae.loss(x)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                total += loss.detach()
            float(total)
            seconds.append(time.perf_counter() - start)
        return seconds

    return run


def pyrovae_run(device: torch.device, precision: str, setup: list[float]) -> Callable:
    """The same for ``pyrovae.fit``: its history's seconds per epoch."""

    def run(data: torch.Tensor, batch: int, epochs: int) -> list[float]:
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = pyrovae.VAE()
        start = time.perf_counter()
        history = pyrovae.fit(
            vae,
            data,
            epochs=epochs,
            batch_size=batch,
            device=device,
            precision=precision,
            progress=False,
        )
        setup.append(time.perf_counter() - start - sum(history["seconds"]))
        return history["seconds"]

    return run


def variants(device: torch.device, setup: list[float]) -> dict[str, Callable]:
    default = resolve_precision("auto", device)
    return {
        "plain PyTorch float32, Adam": plain_run(device, fused=False, autocast=False),
        REFERENCE: plain_run(device, fused=True, autocast=False),
        "plain PyTorch bfloat16 autocast, fused": plain_run(device, fused=True, autocast=True),
        "pyrovae.fit float32": pyrovae_run(device, "float32", setup),
        f"pyrovae.fit default ({default})": pyrovae_run(device, "auto", setup),
    }


def time_epochs(batch: int, device: torch.device, rounds: int, epochs: int, size: int) -> dict:
    """Median seconds per epoch of each variant, and pyrovae's setup time."""
    data = pyrovae.load_dataset("sample").train[:size].to(device)
    setup: list[float] = []
    runs = variants(device, setup)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name] += run(data, batch, epochs)[1:]  # the first epoch warms up
    med = {name: statistics.median(ts) for name, ts in times.items()}
    med["setup"] = statistics.median(setup)
    return med


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    bf16 = "native bfloat16" if native_bfloat16(device) else "no native bfloat16"
    return (
        f"{device} ({name}; {bf16}), torch {torch.__version__}, pyro {pyro.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--batches", default="32,256,1024")
    p.add_argument("--rounds", type=int, default=3, help="runs of every variant, in turn")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first warms up)")
    p.add_argument("--size", type=int, default=8000, help="training images per epoch")
    p.add_argument("--estimator", action="store_true", help="also run marginal_vs_pytorch.py")
    args = p.parse_args()
    device = resolve_device(args.device)
    print(f"device: {describe(device)}")
    print(
        f"training epochs of {args.size} images, 784-400-50 Bernoulli VAE, Adam lr 1e-3, "
        f"dynamic binarisation; median epoch of {args.rounds} runs x {args.epochs - 1} "
        "epochs per variant"
    )
    print(f"{'batch':>6} {'variant':42}{'ms/step':>9}{'samples/s':>11}{'ratio':>7}")
    for batch in (int(b) for b in args.batches.split(",")):
        med = time_epochs(batch, device, args.rounds, args.epochs, args.size)
        steps = -(-args.size // batch)
        for variant, seconds in med.items():
            if variant == "setup":
                continue
            print(
                f"{batch:>6} {variant:42}{seconds / steps * 1e3:9.2f}"
                f"{args.size / seconds:11.0f}{seconds / med[REFERENCE]:7.2f}",
                flush=True,
            )
        print(f"{batch:>6} {'(pyrovae.fit setup before its first step)':42}{med['setup']:8.2f}s")
    if args.estimator:
        script = Path(__file__).parent / "marginal_vs_pytorch.py"
        subprocess.run([sys.executable, str(script), "--device", str(device)], check=True)


if __name__ == "__main__":
    main()
