"""Early stopping with the defaults on a small table, against a run 20 times as long.

scikit-learn's wine table (178 x 13) loses 20 % of its entries completely at random (one
seeded mask) and is written as a CSV with empty cells. Then, exactly as a user types it:

1. ``pyrovae train --dataset wine.csv --missing mask --standardize --likelihood gaussian``
   with every other flag at its default (no ``--epochs``): where it stopped and why,
   and its held-out NLL (``pyrovae evaluate RUN --num-samples K``, observed entries);
2. the same flags with 20 times the epochs the first run trained and
   ``--no-early-stopping``, trained in ``--points`` pieces by ``--resume`` (resuming is
   exact, so this is one run), geometrically spaced so that its early epochs are seen
   too, and evaluated after each piece: the best held-out NLL seen along it;
3. for reference, the same flags with ``--epochs 50`` and no early stopping, the run of
   the issue that stopped "far from converged".

The bar: the default run within 1 nat of the best NLL along the long run.

    python benchmarks/early_stopping.py --out benchmarks/results/early_stopping.json
    python benchmarks/early_stopping.py --factor 2 --points 2 --num-samples 10   # smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FLAGS = "--missing mask --standardize --likelihood gaussian --no-progress".split()


def pyrovae_cli(*args: str) -> tuple[str, float]:
    """Run ``pyrovae ARGS`` in a fresh process; its output and the seconds it took."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pyrovae", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout + proc.stderr, time.perf_counter() - start


def wine_csv(path: Path, rate: float, seed: int) -> None:
    """The wine table with ``rate`` of its entries removed at random, as a CSV."""
    from sklearn.datasets import load_wine

    table = load_wine().data
    holes = np.random.default_rng(seed).random(table.shape) < rate
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"c{j}" for j in range(table.shape[1])])
        for row, hole in zip(table, holes, strict=True):
            writer.writerow(["" if h else repr(float(v)) for v, h in zip(row, hole, strict=True)])


def held_out_nll(run: Path, k: int) -> float:
    pyrovae_cli("evaluate", str(run), "--num-samples", str(k))
    return json.loads((run / "metrics.json").read_text())["test_nll"]


def trained(run: Path) -> tuple[int, int]:
    """Epochs and optimiser steps a run has taken."""
    history = json.loads((run / "history.json").read_text())
    return len(history["epoch"]), int(sum(history["steps"]))


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = re.search(r"model name\s*:\s*(.*)", info)
    bf16 = "avx512_bf16" in info
    cpu = name.group(1) if name else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores{', avx512_bf16' if bf16 else ''}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=0.2, help="fraction of entries removed")
    p.add_argument("--seed", type=int, default=0, help="the mask's seed")
    p.add_argument("--factor", type=int, default=20, help="the long run's length, x default")
    p.add_argument("--points", type=int, default=40, help="evaluations along the long run")
    p.add_argument("--num-samples", type=int, default=1000, help="evaluate's K")
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp())
    data = folder / "wine.csv"
    wine_csv(data, args.rate, args.seed)
    base = ["train", "--dataset", str(data), *FLAGS]

    said, seconds = pyrovae_cli(*base, "--out", str(folder / "default"))
    epochs, steps = trained(folder / "default")
    nll = held_out_nll(folder / "default", args.num_samples)
    stop_line = next(
        (x for x in said.splitlines() if "stopped early" in x or "trained all" in x), ""
    )
    print(f"machine: {machine()}")
    print(f"default run: {epochs} epochs, {steps} steps, {seconds:.0f} s; held-out NLL {nll:.2f}")
    print(f"  it said: {stop_line}")

    long_epochs = args.factor * epochs
    along = []
    ends = sorted({max(1, round(e)) for e in np.geomspace(1, long_epochs, args.points)})
    for i, upto in enumerate(ends, start=1):
        if i == 1:
            pyrovae_cli(
                *base, "--epochs", str(upto), "--no-early-stopping", "--out", str(folder / "long")
            )
        else:
            pyrovae_cli(
                "train", "--resume", str(folder / "long"), "--epochs", str(upto), "--no-progress"
            )
        along.append(
            (upto, trained(folder / "long")[1], held_out_nll(folder / "long", args.num_samples))
        )
    best = min(along, key=lambda a: a[2])
    print(f"long run: {long_epochs} epochs ({args.factor}x); held-out NLL along it:")
    print("  " + ", ".join(f"{e}: {v:.2f}" for e, _, v in along))
    print(f"  best {best[2]:.2f} at epoch {best[0]} ({best[1]} steps)")

    pyrovae_cli(*base, "--epochs", "50", "--no-early-stopping", "--out", str(folder / "fifty"))
    fifty = held_out_nll(folder / "fifty", args.num_samples)
    fifty_steps = trained(folder / "fifty")[1]
    print(f"--epochs 50, no early stopping: {fifty_steps} steps, held-out NLL {fifty:.2f}")
    gap = nll - best[2]
    print(f"default minus the long run's best: {gap:+.2f} nats (bar: at most +1)")
    if args.out:
        figures = {
            "args": vars(args),
            "machine": machine(),
            "default": {
                "epochs": epochs,
                "steps": steps,
                "seconds": seconds,
                "nll": nll,
                "said": stop_line,
            },
            "long": {
                "epochs": long_epochs,
                "along": along,
                "best_nll": best[2],
                "best_epoch": best[0],
            },
            "fifty_epochs_nll": fifty,
            "gap": gap,
        }
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
