"""Figures and the HTML report of a run, from the command line's own entry points.

Trains a VAE into a run folder (``pyrovae train``, which also writes report.html),
estimates its log p(x) (``pyrovae evaluate``, whose per-datapoint values the report
shows as a histogram), rewrites the report, and draws samples and interpolations into
PNG files (``pyrovae sample``, ``pyrovae interpolate``).

    python examples/figures_and_report.py --out runs/example-report
    python examples/figures_and_report.py --epochs 1 --num-samples 10 --out /tmp/r
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyrovae.cli import main as pyrovae


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--out", default="runs/example-report")
    args = p.parse_args()

    run = Path(args.out)
    steps = [
        ["train", "--epochs", str(args.epochs), "--out", str(run), "--force", "--no-progress"],
        ["evaluate", str(run), "--num-samples", str(args.num_samples)],
        ["report", str(run)],
        ["sample", str(run), "--n", "64", "--out", str(run / "more_samples.png")],
        ["interpolate", str(run), "--out", str(run / "interpolation.png")],
    ]
    for command in steps:
        print("$ pyrovae " + " ".join(command))
        if pyrovae(command) != 0:
            raise SystemExit(1)
    print(f"open {run / 'report.html'} in a browser (log p(x) and figures inside)")


if __name__ == "__main__":
    main()
