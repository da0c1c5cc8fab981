"""Are a conditional VAE's samples the digits asked for?

Trains ``pyrovae.VAE(num_classes=10)`` on the bundled sample's 8,000 training images with
their labels (``fit`` on ``{"x": images, "y": labels}``), draws ``--per-class`` samples of
every class (z from the prior, the mean of p(x | z, y)), and labels them with a
logistic regression trained on the real training pixels (scikit-learn). Prints the
fraction labelled as requested, per class and overall, and the classifier's accuracy on
the real held-out images for reference.

    python benchmarks/conditional_samples.py --z-dim 4    # 20 epochs, 100 per class
    python benchmarks/conditional_samples.py --cli        # the command line's defaults

``--cli`` runs what a user types instead: ``pyrovae train --conditional`` with every
other option at its default, ``pyrovae sample RUN --label K --n 100 --out K.npy`` for
each class, and ``pyrovae evaluate RUN`` for the held-out -log p(x | y).

The latent size matters: a large z can carry the class itself, and the decoder then
listens to y less (see the README for the measured figures).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyro
import torch

import pyrovae


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="default 20 (--cli: the CLI's)")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--limit", type=int, default=None, help="training images (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    p.add_argument("--cli", action="store_true", help="pyrovae train --conditional, defaults")
    p.add_argument("--num-samples", type=int, default=500, help="--cli: evaluate's K")
    args = p.parse_args()
    data = pyrovae.load_dataset("sample")
    x, y = data.train[: args.limit], data.train_labels[: args.limit]
    requested = torch.arange(10).repeat_interleave(args.per_class)
    if args.cli:
        samples, extra = run_cli(args)
    else:
        samples, extra = run_python(args, data, x, y, requested), {}
    classifier = LogisticRegression(max_iter=300).fit(x.numpy(), y.numpy())
    heldout = float(classifier.score(data.test.numpy(), data.test_labels.numpy()))
    predicted = torch.from_numpy(classifier.predict(samples.numpy()))
    hits = (predicted == requested).float().reshape(10, args.per_class).mean(1)
    setting = "pyrovae train --conditional, defaults" if args.cli else f"z_dim {args.z_dim}"
    print(
        f"{setting}, {extra.get('epochs', args.epochs)} epochs; logistic regression on real "
        f"pixels, held-out accuracy {heldout:.3f}"
    )
    if "test_nll" in extra:
        print(f"held-out -log p(x | y): {extra['test_nll']:.2f} nats (z_dim {extra['z_dim']})")
    print("labelled as requested, per class: " + " ".join(f"{h:.2f}" for h in hits.tolist()))
    print(f"labelled as requested: {float(hits.mean()):.3f} of {len(requested)} samples")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "epochs": args.epochs,
                    "z_dim": args.z_dim,
                    "cli": args.cli,
                    **extra,
                    "per_class": args.per_class,
                    "classifier_heldout_accuracy": heldout,
                    "as_requested": float(hits.mean()),
                    "as_requested_per_class": hits.tolist(),
                },
                indent=2,
            )
            + "\n"
        )


def run_python(args, data, x, y, requested) -> torch.Tensor:
    """``fit`` a conditional VAE of ``args.z_dim``; the mean of p(x | z, y) per request."""
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    vae = pyrovae.VAE(z_dim=args.z_dim, num_classes=10, image_shape=data.image_shape)
    pyrovae.fit(
        vae,
        {"x": x, "y": y},
        epochs=args.epochs or 20,
        seed=args.seed,
        validation={"x": data.test, "y": data.test_labels},
        progress=False,
    )
    torch.manual_seed(args.seed)
    return vae.sample(len(requested), y=requested)


def pyrovae_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pyrovae", *args], check=True, capture_output=True)


def run_cli(args) -> tuple[torch.Tensor, dict]:
    """The command line with its defaults: train, sample each class, evaluate."""
    folder = Path(tempfile.mkdtemp())
    run = folder / "run"
    epochs = ["--epochs", str(args.epochs)] if args.epochs is not None else []  # smoke tests
    pyrovae_cli("train", "--conditional", *epochs, "--out", str(run), "--no-progress")
    samples = []
    for k in range(10):
        out = folder / f"{k}.npy"
        pyrovae_cli(
            "sample", str(run), "--label", str(k), "--n", str(args.per_class), "--out", str(out)
        )
        samples.append(torch.from_numpy(np.load(out).reshape(args.per_class, -1)))
    pyrovae_cli("evaluate", str(run), "--num-samples", str(args.num_samples))
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    extra = {
        "epochs": config["train"]["epochs"],
        "z_dim": config["model"]["z_dim"],
        "test_nll": metrics["test_nll"],
        "num_samples": args.num_samples,
    }
    return torch.cat(samples), extra


if __name__ == "__main__":
    sys.exit(main())
