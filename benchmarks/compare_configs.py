"""Held-out NLL of each prior, guide and objective, everything else the same.

Every configuration is the same 784-400-50 MLP VAE with a Bernoulli likelihood, trained
with the same seed, epochs, batch size and learning rate on the 8,000 training images of
the bundled sample (dynamic binarisation), and evaluated on the same 2,000 held-out
images (one seeded binarisation) by importance sampling with K samples. The table gives
the NLL (-log p(x), nats), its standard error, the difference from the standard VAE
with the standard error of the paired difference, the ELBO, and seconds per epoch.

    python benchmarks/compare_configs.py                     # writes benchmarks/results/
    python benchmarks/compare_configs.py --epochs 2 --num-samples 50 --only standard,vamp
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.datasets import get_binarization
from pyrovae.objectives import get_loss

#: name -> (prior, guide, loss, particles); the first row is the baseline.
CONFIGS: dict[str, tuple[str, str, str, int]] = {
    "standard": ("standard", "diagonal", "trace", 1),
    "prior: diagonal": ("diagonal", "diagonal", "trace", 1),
    "prior: mog": ("mog", "diagonal", "trace", 1),
    "prior: vamp": ("vamp", "diagonal", "trace", 1),
    "prior: flow": ("flow", "diagonal", "trace", 1),
    "guide: lowrank": ("standard", "lowrank", "trace", 1),
    "guide: iaf": ("standard", "iaf", "trace", 1),
    "loss: iwae (K=5)": ("standard", "diagonal", "iwae", 5),
    "vamp + iaf + iwae (K=5)": ("vamp", "iaf", "iwae", 5),
}


def run(name: str, args, data, heldout) -> dict:
    prior, guide, loss, particles = CONFIGS[name]
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    vae = pyrovae.VAE(
        x_dim=784, z_dim=50, hidden=(400,), prior=prior, guide=guide, image_shape=(1, 28, 28)
    )
    history = pyrovae.fit(
        vae,
        data.train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=get_loss(loss, particles),
        seed=args.seed,
        progress=False,
        device=args.device,
    )
    vae.eval()
    pyro.set_rng_seed(args.seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = pyrovae.log_marginal_likelihood(
            vae.model,
            vae.guide,
            heldout.to(next(vae.parameters()).device),
            num_samples=args.num_samples,
        )
    return {
        "name": name,
        "prior": prior,
        "guide": guide,
        "loss": loss,
        "num_particles": particles,
        "per_datapoint": est.per_datapoint.cpu(),
        "nll": -est.mean,
        "nll_stderr": est.stderr,
        "elbo": float(est.elbo.mean()),
        "seconds_per_epoch": sum(history["seconds"]) / max(1, len(history["seconds"])),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-samples", type=int, default=1000, help="K for the held-out NLL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(CONFIGS))
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()

    names = list(CONFIGS) if not args.only else [n.strip() for n in args.only.split(",")]
    data = pyrovae.load_dataset("sample")
    heldout = get_binarization("dynamic").heldout(data.test, args.seed)
    rows = []
    start = time.perf_counter()
    for name in names:
        row = run(name, args, data, heldout)
        rows.append(row)
        print(
            f"{name:28} NLL {row['nll']:7.2f}  ({time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )

    base = rows[0]["per_datapoint"]
    lines = [
        f"Held-out NLL on the bundled MNIST sample (8,000 train / 2,000 test, dynamically "
        f"binarised), 784-400-50 MLP, Bernoulli likelihood, {args.epochs} epochs, batch "
        f"{args.batch_size}, lr {args.lr}, seed {args.seed}; NLL by importance sampling "
        f"with K={args.num_samples}. Differences are paired, against the first row. "
        f"Made by `python benchmarks/compare_configs.py` on {torch.get_num_threads()} CPU "
        "threads.",
        "",
        "| configuration | prior | guide | loss | NLL (nats) | NLL − first row | ELBO "
        "| s / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        diff = base - row["per_datapoint"]  # NLL difference: row - base
        diff_se = float(diff.double().std()) / math.sqrt(diff.numel())
        loss = row["loss"] + (f" K={row['num_particles']}" if row["num_particles"] > 1 else "")
        lines.append(
            f"| {row['name']} | {row['prior']} | {row['guide']} | {loss} | "
            f"{row['nll']:.2f} ± {row['nll_stderr']:.2f} | "
            f"{float(diff.mean()):+.2f} ± {diff_se:.2f} | {row['elbo']:.2f} | "
            f"{row['seconds_per_epoch']:.2f} |"
        )
    best = min(rows, key=lambda r: r["nll"])
    lines += ["", f"Best: {best['name']} (NLL {best['nll']:.2f} nats)."]
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(
        json.dumps(
            [{k: v for k, v in r.items() if k != "per_datapoint"} for r in rows]
            + [{"settings": vars(args)}],
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
