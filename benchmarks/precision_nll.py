"""Does bfloat16 training cost likelihood? The same VAE trained in float32 and bfloat16.

Two runs of ``pyrovae.fit`` with the same seed, data and settings (784-400-50 Bernoulli
VAE, batch 256, Adam 1e-3, dynamic binarisation, the bundled sample's 8,000 training
images), one at ``precision="float32"`` and one at ``precision="bfloat16"``; then
log p(x) of the 2,000 held-out images (one seeded binarisation, shared) by importance
sampling with K draws, in float32 for both. Prints each NLL with its standard error
and the paired difference with its own. (Speed is ``speed.py``'s business: it
interleaves the variants, which one run after another cannot.)

    python benchmarks/precision_nll.py                  # 30 epochs, K=1000
    python benchmarks/precision_nll.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import describe  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.data.binarization import get_binarization  # noqa: E402
from pyrovae.inference.marginal import log_marginal_likelihood  # noqa: E402
from pyrovae.training import resolve_device  # noqa: E402


def train_and_score(precision: str, args: argparse.Namespace, test: torch.Tensor) -> dict:
    data = pyrovae.load_dataset("sample")
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    vae = pyrovae.VAE()
    pyrovae.fit(
        vae,
        data.train[: args.limit],
        epochs=args.epochs,
        batch_size=256,
        seed=args.seed,
        device=args.device,
        precision=precision,
        progress=False,
    )
    pyro.set_rng_seed(args.seed)
    est = log_marginal_likelihood(vae.model, vae.guide, test, num_samples=args.num_samples)
    return {
        "precision": precision,
        "nll": -est.mean,
        "nll_stderr": est.stderr,
        "per_datapoint": est.per_datapoint.cpu().double(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None, help="training images (default all)")
    p.add_argument("--test-limit", type=int, default=None, help="held-out images (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    args = p.parse_args()
    device = resolve_device(args.device)
    print(f"device: {describe(device)}")
    test = get_binarization("dynamic").heldout(
        pyrovae.load_dataset("sample").test[: args.test_limit], args.seed
    )
    runs = [train_and_score(name, args, test) for name in ("float32", "bfloat16")]
    diff = runs[1]["per_datapoint"] - runs[0]["per_datapoint"]
    se = float(diff.std()) / math.sqrt(diff.numel()) if diff.numel() > 1 else float("nan")
    print(f"{args.epochs} epochs, batch 256; NLL by IS with K={args.num_samples}")
    for run in runs:
        print(f"{run['precision']:>9}: NLL {run['nll']:.2f} +- {run['nll_stderr']:.2f} nats")
    gap = runs[1]["nll"] - runs[0]["nll"]
    print(f"bfloat16 - float32 NLL: {gap:+.3f} +- {se:.3f} nats (paired)")
    if args.out:
        summary = {
            "device": describe(device),
            "epochs": args.epochs,
            "num_samples": args.num_samples,
            "runs": [{k: v for k, v in r.items() if k != "per_datapoint"} for r in runs],
            "nll_difference": gap,
            "nll_difference_stderr": se,
        }
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
