"""pyrovae's log p(x) estimator against a hand-written vectorised PyTorch estimator.

Both estimate log p(x) by importance sampling with the same trained weights (the plain
VAE in ``plain_vae.py`` is loaded with the pyrovae VAE's parameters), the same K, the
same datapoints per pass and the same particles per pass. Timings are interleaved
(pyrovae, plain, pyrovae, plain, ...) and the median of the repeats is reported; peak
memory is measured for each estimator in a fresh child process (peak RSS on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU).

    python benchmarks/marginal_vs_pytorch.py                   # K=1000, 2,000 images
    python benchmarks/marginal_vs_pytorch.py --device cuda     # unchanged code on a GPU
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402
from plain_vae import PlainVAE  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.data.binarization import get_binarization  # noqa: E402
from pyrovae.inference.passes import pass_shape  # noqa: E402
from pyrovae.training import resolve_device  # noqa: E402


def build(args):
    device = resolve_device(args.device)
    data = pyrovae.load_dataset("sample")
    images = torch.cat([data.train, data.test]) if args.all_images else data.test
    x = get_binarization("dynamic").heldout(images, 0)[: args.limit].to(device)
    if args.run:
        vae = pyrovae.load(args.run, device=device)
    else:  # a briefly trained VAE, so the weights are not those of a random network
        vae = pyrovae.VAE(image_shape=data.image_shape)
        pyrovae.fit(vae, data.train, epochs=args.epochs, progress=False, device=device)
    vae.eval()
    plain = PlainVAE(vae.x_dim, vae.z_dim, tuple(vae.config["hidden"])).to(device)
    state = vae.state_dict()
    plain.load_state_dict(
        {
            k.replace(".net", ""): v
            for k, v in state.items()
            if k.startswith(("encoder", "decoder"))
        }
    )
    return device, vae, plain, x


def run_pyrovae(vae, x, args) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = pyrovae.log_marginal_likelihood(
            vae.model,
            vae.guide,
            x,
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            memory_budget=args.memory_budget,
        )
    return est.per_datapoint


def run_plain(plain, x, args) -> torch.Tensor:
    return torch.cat(
        [
            plain.log_marginal_likelihood(xb, args.num_samples, args.chunk_size)
            for xb in x.split(args.batch_size)
        ]
    )


def _timed(fn, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _peak_child(which: str, args, queue) -> None:
    torch.manual_seed(0)
    device, vae, plain, x = build(args)
    before = memory.start(device)
    seconds, out = _timed(lambda: ESTIMATORS[which](vae, plain, x, args), device)
    peak = memory.peak(device)
    queue.put((peak, before, seconds, float(out.mean())))


ESTIMATORS = {
    "pyrovae": lambda vae, plain, x, args: run_pyrovae(vae, x, args),
    "plain PyTorch": lambda vae, plain, x, args: run_plain(plain, x, args),
}


def peak_memory(which: str, args) -> tuple[float, float, float, float]:
    """(peak, memory before, seconds, mean log p(x)) of one run in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(which, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--num-samples", type=int, default=1000, help="K (default 1000)")
    p.add_argument("--limit", type=int, default=2000, help="held-out images (default 2000)")
    p.add_argument("--all-images", action="store_true", help="all 10,000 sample images")
    p.add_argument("--only-pyrovae", action="store_true", help="skip the plain estimator")
    p.add_argument("--batch-size", type=int, default=100, help="datapoints per pass")
    p.add_argument("--chunk-size", type=int, default=None, help="particles per pass")
    p.add_argument("--memory-budget", help="bytes one pass may use, e.g. 256MB")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run", help="a run folder to load (default: train 5 epochs here)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    args = p.parse_args()

    torch.manual_seed(0)
    device, vae, plain, x = build(args)
    args.batch_size, args.chunk_size = pass_shape(
        vae.model, vae.guide, x, (), {}, args.batch_size, args.chunk_size, args.memory_budget
    )
    names = ["pyrovae"] if args.only_pyrovae else list(ESTIMATORS)
    times: dict[str, list[float]] = {name: [] for name in names}
    means: dict[str, float] = {}
    if args.repeats:
        for name in names:  # warm-up
            ESTIMATORS[name](vae, plain, x[:100], args)
    for _ in range(args.repeats):
        for name in names:
            seconds, out = _timed(lambda n=name: ESTIMATORS[n](vae, plain, x, args), device)
            times[name].append(seconds)
            means[name] = float(out.mean())
    peaks = {} if args.no_memory else {name: peak_memory(name, args) for name in names}
    for name, (_, _, seconds, mean) in peaks.items():
        if not args.repeats:  # the memory run is the only, timed, run
            times[name].append(seconds)
            means[name] = mean

    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"log p(x) by importance sampling: K={args.num_samples}, {len(x)} images, "
        f"{args.batch_size} images x {args.chunk_size} particles per pass"
        + (f" (memory budget {args.memory_budget})" if args.memory_budget else "")
        + f", median of {max(1, args.repeats)} interleaved runs; peak memory of the "
        "process, and how much the estimate added to it"
    )
    print(f"{'':15}{'seconds':>9}{'runs':>24}{'peak MiB':>10}{'(+ est.)':>10}{'log p(x)':>10}")
    for name, ts in times.items():
        peak = (
            f"{peaks[name][0] / 2**20:10.0f}{(peaks[name][0] - peaks[name][1]) / 2**20:10.0f}"
            if peaks
            else f"{'-':>10}{'-':>10}"
        )
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{name:15}{statistics.median(ts):9.2f}{runs:>24}{peak}{means[name]:10.2f}")
    if len(names) > 1:
        ratio = statistics.median(times["pyrovae"]) / statistics.median(times["plain PyTorch"])
        print(f"time ratio pyrovae / plain PyTorch: {ratio:.2f}")


if __name__ == "__main__":
    main()
