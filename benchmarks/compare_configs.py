"""Held-out NLL of each prior, guide, objective and structured VAE, the rest the same.

Every configuration is a 784-400-... MLP VAE with a Bernoulli likelihood (z 50 unless
the row says otherwise), trained with the same seed, epochs, batch size and learning
rate on the 8,000 training images of the bundled sample (dynamic binarisation), and
evaluated on the same 2,000 held-out images (one seeded binarisation) by importance
sampling with K samples. The table gives the NLL (-log p(x), nats; y or c summed out
for M2 and the cluster VAE), its standard error, the difference from the first row
with the standard error of the paired difference, the ELBO, seconds per epoch, and an
accuracy for the rows that have one: M2's q(y|x) on the held-out labels, the cluster
VAE's clusters under the best matching. The baselines of those two are measured in the
same run (scikit-learn): a logistic regression and 1-NN on the pixels of M2's labelled
images, and k-means on the held-out pixels.

    python benchmarks/compare_configs.py                     # writes benchmarks/results/
    python benchmarks/compare_configs.py --epochs 2 --num-samples 50 --only standard,vamp
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch

import pyrovae
from pyrovae.data.binarization import get_binarization
from pyrovae.data.labels import SemiSupervisedBatches, balanced_labels
from pyrovae.inference.objectives import get_loss
from pyrovae.models.clustering import best_match_accuracy
from pyrovae.models.variants import VARIANTS

#: Labelled training images of the M2 row (10 per class, seeded).
LABELLED = 100


@dataclass(frozen=True)
class Config:
    """One row: the VAE's parts and, for the structured VAEs, their settings."""

    prior: str = "standard"
    guide: str = "diagonal"
    loss: str | None = "trace"  # None: fit's choice (TraceEnum_ELBO for y or c)
    particles: int = 1
    model: dict[str, Any] = field(default_factory=dict)  # variant, z_dim, clusters, ...


#: name -> configuration; the first row is the baseline.
CONFIGS: dict[str, Config] = {
    "standard": Config(),
    "prior: diagonal": Config(prior="diagonal"),
    "prior: mog": Config(prior="mog"),
    "prior: vamp": Config(prior="vamp"),
    "prior: flow": Config(prior="flow"),
    "guide: lowrank": Config(guide="lowrank"),
    "guide: iaf": Config(guide="iaf"),
    "guide: vq (512 codes of 10)": Config(guide="vq"),
    "loss: iwae (K=5)": Config(loss="iwae", particles=5),
    "vamp + iaf + iwae (K=5)": Config(prior="vamp", guide="iaf", loss="iwae", particles=5),
    "hierarchical (z 32+16)": Config(model={"z_dim": (32, 16)}),
    "clusters 10 (784-500-500-2000-10)": Config(
        loss=None,
        model={"variant": "clusters", "clusters": 10, "z_dim": 10, "hidden": (500, 500, 2000)},
    ),
    f"M2 ({LABELLED} labels; conv classifier)": Config(
        loss=None, model={"variant": "semi-supervised", "num_classes": 10}
    ),
}


def training_data(config: Config, data, seed: int, batch_size: int):
    """The training data of a row and fit's batch size: M2 streams its own batches."""
    if config.model.get("variant") != "semi-supervised":
        return data.train, batch_size
    keep = labelled_mask(data.train_labels, seed)
    batches = SemiSupervisedBatches(
        data.train[~keep], data.train[keep], data.train_labels[keep], batch_size, seed=seed
    )
    return batches, None


def labelled_mask(labels: torch.Tensor, seed: int) -> torch.Tensor:
    keep = torch.zeros(len(labels), dtype=torch.bool)
    keep[balanced_labels(labels, LABELLED, seed)] = True
    return keep


def run(name: str, args, data, heldout) -> dict:
    config = CONFIGS[name]
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    settings = {
        "x_dim": 784,
        "z_dim": 50,
        "hidden": (400,),
        "prior": config.prior,
        "posterior": config.guide,
        "image_shape": (1, 28, 28),
        **config.model,
    }
    # The class itself, with the class's defaults for what the row does not set.
    vae = VARIANTS[settings.pop("variant", "vae")](**settings)
    train, batch_size = training_data(config, data, args.seed, args.batch_size)
    loss = None if config.loss is None else get_loss(config.loss, config.particles)
    history = pyrovae.fit(
        vae,
        train,
        epochs=args.epochs,
        batch_size=batch_size,
        lr=args.lr,
        loss=loss,
        seed=args.seed,
        progress=False,
        device=args.device,
        precision=args.precision,
    )
    vae.eval()
    pyro.set_rng_seed(args.seed + 1)
    heldout = heldout.to(next(vae.parameters()).device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = pyrovae.log_marginal_likelihood(
            vae.model, vae.guide, heldout, num_samples=args.num_samples
        )
    scores = vae.label_scores(heldout, data.test_labels)
    return {
        "name": name,
        "prior": "mixture" if config.model.get("variant") == "clusters" else vae.config["prior"],
        "guide": config.guide,
        "loss": config.loss or "TraceEnum",
        "num_particles": config.particles,
        "per_datapoint": est.per_datapoint.cpu(),
        "nll": -est.mean,
        "nll_stderr": est.stderr,
        "elbo": float(est.elbo.mean()),
        "accuracy": next(iter(scores.values()), None),
        "seconds_per_epoch": sum(history["seconds"]) / max(1, len(history["seconds"])),
    }


def baselines(data, seed: int) -> dict[str, float]:
    """Logistic regression and 1-NN on the labelled pixels; k-means on held-out pixels."""
    try:
        from sklearn.cluster import KMeans
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier
    except ImportError:
        raise SystemExit("the M2 and cluster rows' baselines need scikit-learn") from None
    keep = labelled_mask(data.train_labels, seed)
    x, y = data.train[keep].numpy(), data.train_labels[keep].numpy()
    test, labels = data.test.numpy(), data.test_labels
    logreg = LogisticRegression(max_iter=2000).fit(x, y)
    nearest = KNeighborsClassifier(n_neighbors=1).fit(x, y)
    kmeans = KMeans(n_clusters=10, n_init=10, random_state=seed).fit(test)
    return {
        "logistic regression": float((logreg.predict(test) == labels.numpy()).mean()),
        "1-NN": float((nearest.predict(test) == labels.numpy()).mean()),
        "k-means": best_match_accuracy(torch.as_tensor(kmeans.labels_), labels),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-samples", type=int, default=1000, help="K for the held-out NLL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="fit's precision (default auto)")
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
        f"binarised), 784-400-50 MLP unless the row says otherwise, Bernoulli likelihood, "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, seed {args.seed}, "
        f"precision {args.precision}; NLL by importance sampling with K={args.num_samples} "
        "(y or c summed out). Differences are paired, against the first row. Made by "
        f"`python benchmarks/compare_configs.py` on {torch.get_num_threads()} CPU threads.",
        "",
        "| configuration | prior | guide | loss | NLL (nats) | NLL − first row | ELBO "
        "| s / epoch | accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        diff = base - row["per_datapoint"]  # NLL difference: row - base
        diff_se = float(diff.double().std()) / math.sqrt(diff.numel())
        loss = row["loss"] + (f" K={row['num_particles']}" if row["num_particles"] > 1 else "")
        accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        lines.append(
            f"| {row['name']} | {row['prior']} | {row['guide']} | {loss} | "
            f"{row['nll']:.2f} ± {row['nll_stderr']:.2f} | "
            f"{float(diff.mean()):+.2f} ± {diff_se:.2f} | {row['elbo']:.2f} | "
            f"{row['seconds_per_epoch']:.2f} | {accuracy} |"
        )
    best = min(rows, key=lambda r: r["nll"])
    lines += ["", f"Best NLL: {best['name']} ({best['nll']:.2f} nats)."]
    measured = {}
    if any(r["accuracy"] is not None for r in rows):
        measured = baselines(data, args.seed)
        lines += [
            "",
            f"Baselines of the accuracy column: on the pixels of M2's {LABELLED} labelled "
            "images, "
            + ", ".join(f"{k} {v:.3f}" for k, v in measured.items() if k != "k-means")
            + f"; k-means on the held-out pixels (best matching) {measured['k-means']:.3f}.",
        ]
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(
        json.dumps(
            [{k: v for k, v in r.items() if k != "per_datapoint"} for r in rows]
            + [{"settings": vars(args), "baselines": measured}],
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
