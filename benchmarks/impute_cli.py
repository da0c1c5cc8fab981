"""Imputation through the command line against scikit-learn's imputers (README table).

scikit-learn's breast-cancer table (569 x 30) loses a fraction of its entries completely
at random (one seeded mask per seed); each mask is written as a CSV with empty cells, and
pyrovae is run exactly as a user would:

    pyrovae train --dataset bc.csv --missing mask --standardize --likelihood student-t \\
        --loss iwae --num-particles 20 --z-dim 10 --hidden 128,128 --activation tanh \\
        --init orthogonal --test-fraction 0.02 --epochs E --batch-size 64 --seed S
    pyrovae impute RUN --dataset bc.csv --out filled.csv --num-samples K --seed S

The RMSE over the removed entries (in standard units of the complete table) is compared
with mean filling, ``KNNImputer`` and ``IterativeImputer`` (default settings) on the same
mask, and every observed entry of the filled CSV is checked to equal the input's.
Needs scikit-learn (``pip install 'pyrovae[examples]'``).

    python benchmarks/impute_cli.py                       # 3 masks, 500 epochs, K=10000
    python benchmarks/impute_cli.py --masks 1 --epochs 2 --num-samples 20 --limit 120
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pyrovae.data.tables import read_csv

TRAIN = (
    "--missing mask --standardize --likelihood student-t --loss iwae --num-particles 20 "
    "--z-dim 10 --hidden 128,128 --activation tanh --init orthogonal --test-fraction 0.02 "
    "--batch-size 64 --no-progress"
).split()


def pyrovae_cli(*args: str) -> float:
    """Run ``pyrovae ARGS`` in a fresh process on one thread; the seconds it took."""
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pyrovae", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return time.perf_counter() - start


def write_holed(path: Path, table: np.ndarray, missing: np.ndarray, header: list[str]) -> None:
    """The table as a CSV, missing entries as empty cells."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row, holes in zip(table, missing, strict=True):
            writer.writerow(["" if h else repr(float(v)) for v, h in zip(row, holes, strict=True)])


def baselines(z: np.ndarray, missing: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    holed = np.where(missing, np.nan, z)
    imputers = {
        "mean": SimpleImputer(),
        "KNNImputer": KNNImputer(),
        "IterativeImputer": IterativeImputer(random_state=0),
    }
    return {name: imp.fit_transform(holed) for name, imp in imputers.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--masks", type=int, default=3, help="seeded masks (seeds 0, 1, ...)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=10000, help="importance samples K")
    p.add_argument("--rate", type=float, default=0.5, help="fraction of entries removed")
    p.add_argument("--limit", type=int, default=None, help="use only the first rows")
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args()

    import warnings

    from sklearn.datasets import load_breast_cancer

    warnings.filterwarnings("ignore", module="sklearn")
    data = load_breast_cancer()
    table = data.data[: args.limit]
    header = [name.replace(" ", "_") for name in data.feature_names]
    mean, std = table.mean(0), table.std(0)
    z = (table - mean) / std
    print(f"machine: {platform.processor() or platform.machine()}, one thread per process")
    scores: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in range(args.masks):
            missing = np.random.default_rng(seed).random(table.shape) < args.rate
            holed, run = folder / f"bc{seed}.csv", folder / f"run{seed}"
            filled_path = folder / f"filled{seed}.csv"
            write_holed(holed, table, missing, header)
            train_s = pyrovae_cli(
                "train",
                "--dataset",
                str(holed),
                *TRAIN,
                "--epochs",
                str(args.epochs),
                "--seed",
                str(seed),
                "--out",
                str(run),
            )
            impute_s = pyrovae_cli(
                "impute",
                str(run),
                "--dataset",
                str(holed),
                "--out",
                str(filled_path),
                "--num-samples",
                str(args.num_samples),
                "--seed",
                str(seed),
            )
            filled, _ = read_csv(filled_path)
            given, _ = read_csv(holed)
            assert np.array_equal(filled[~missing], given[~missing]), "observed entries changed"
            fills = {"pyrovae": (filled - mean) / std, **baselines(z, missing)}
            for name, fill in fills.items():
                rmse = float(np.sqrt(((fill - z)[missing] ** 2).mean()))
                scores.setdefault(name, []).append(rmse)
            print(
                f"mask {seed}: train {train_s:.0f} s, impute {impute_s:.0f} s, RMSE pyrovae "
                f"{scores['pyrovae'][-1]:.3f}, IterativeImputer "
                f"{scores['IterativeImputer'][-1]:.3f}; observed entries unchanged"
            )
    print(f"RMSE on the removed entries ({args.rate:.0%} missing, {args.masks} masks):")
    for name, values in scores.items():
        print(f"  {name:18s} {np.mean(values):.3f} +- {np.std(values):.3f}")
    ratio = np.array(scores["pyrovae"]) / np.array(scores["IterativeImputer"])
    print(f"pyrovae / IterativeImputer per mask: {np.round(ratio, 3).tolist()}")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rmse": scores}, indent=2))


if __name__ == "__main__":
    main()
