"""VAEImputer against IterativeImputer, both in scikit-learn (docs/howto/sklearn.md).

scikit-learn's breast-cancer table (569 x 30), standardised, loses half of its entries
completely at random (one seeded mask per seed 0, 1, 2). On each mask:

    Pipeline([("impute", VAEImputer(random_state=seed))]).fit_transform(holed)
    IterativeImputer(random_state=0).fit_transform(holed)

every other setting at its default, and the RMSE over the removed entries (in standard
units of the complete table) is compared; every observed entry is checked to come back
unchanged. The bar: VAEImputer / IterativeImputer <= 0.95 on every mask.

    python benchmarks/sklearn_impute.py --out benchmarks/results/sklearn_impute.json
    python benchmarks/sklearn_impute.py --masks 1 --max-steps 20 --limit 120   # smoke
    python benchmarks/sklearn_impute.py --set likelihood='"student-t"'         # another setting
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer
from sklearn.pipeline import Pipeline

from pyrovae.sklearn import VAEImputer

BAR = 0.95


def machine() -> dict[str, object]:
    """The processor, whether it multiplies bfloat16 natively, and torch's threads."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line]
    return {
        "processor": platform.processor() or platform.machine(),
        "model_name": names[0] if names else "unknown",
        "avx512_bf16": "avx512_bf16" in info,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def settings(pairs: list[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs (Python literals) as VAEImputer parameters."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = ast.literal_eval(value)
    return out


def rmse(filled: np.ndarray, truth: np.ndarray, missing: np.ndarray) -> float:
    return float(np.sqrt(((filled - truth)[missing] ** 2).mean()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--masks", type=int, default=3, help="seeded masks (seeds 0, 1, ...)")
    p.add_argument("--rate", type=float, default=0.5, help="fraction of entries removed")
    p.add_argument("--max-steps", type=int, help="VAEImputer's step budget (default: its own)")
    p.add_argument("--limit", type=int, help="use only the first rows")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a VAEImputer parameter"
    )
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args()

    warnings.filterwarnings("ignore", module="sklearn")
    table = load_breast_cancer().data[: args.limit]
    truth = (table - table.mean(0)) / table.std(0)
    given = settings(args.set)
    if args.max_steps is not None:
        given["max_steps"] = args.max_steps
    about = machine()
    print(
        f"machine: {about['processor']}, {about['model_name']}, avx512_bf16 "
        f"{'yes' if about['avx512_bf16'] else 'no'}, torch threads {about['torch_threads']}"
    )
    print(f"VAEImputer settings other than the defaults: {given or 'none'}")
    figures: dict[str, list] = {"VAEImputer": [], "IterativeImputer": [], "ratio": []}
    figures.update(vae_seconds=[], iterative_seconds=[], steps=[], best_epoch=[])
    for seed in range(args.masks):
        missing = np.random.default_rng(seed).random(truth.shape) < args.rate
        holed = np.where(missing, np.nan, truth)
        start = time.perf_counter()
        pipe = Pipeline([("impute", VAEImputer(random_state=seed, **given))])
        filled = pipe.fit_transform(holed)
        vae_s = time.perf_counter() - start
        assert np.array_equal(filled[~missing], holed[~missing]), "observed entries changed"
        start = time.perf_counter()
        iterative = IterativeImputer(random_state=0).fit_transform(holed)
        iterative_s = time.perf_counter() - start
        imputer = pipe.named_steps["impute"]
        scores = rmse(filled, truth, missing), rmse(iterative, truth, missing)
        for key, value in zip(
            figures,
            (
                *scores,
                scores[0] / scores[1],
                vae_s,
                iterative_s,
                imputer.n_iter_,
                imputer.best_epoch_,
            ),
            strict=True,
        ):
            figures[key].append(value)
        print(
            f"mask {seed}: RMSE VAEImputer {scores[0]:.3f} ({vae_s:.0f} s, {imputer.n_iter_} "
            f"steps, best epoch {imputer.best_epoch_}, stopped at "
            f"{imputer.stopped_epoch_ or 'the budget'}), IterativeImputer {scores[1]:.3f} "
            f"({iterative_s:.1f} s), ratio {scores[0] / scores[1]:.3f}; observed entries "
            "unchanged"
        )
    print(f"RMSE on the removed entries ({args.rate:.0%} missing, {args.masks} masks):")
    for name in ("VAEImputer", "IterativeImputer"):
        print(f"  {name:17s} {np.mean(figures[name]):.3f} +- {np.std(figures[name]):.3f}")
    ratios = [round(r, 3) for r in figures["ratio"]]
    print(f"VAEImputer / IterativeImputer per mask: {ratios}")
    met = all(r <= BAR for r in figures["ratio"])
    print(f"bar (ratio <= {BAR} on every mask): {'met' if met else 'NOT met'}")
    if args.out:
        record = {"args": vars(args), "settings": given, "machine": about, **figures, "met": met}
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
