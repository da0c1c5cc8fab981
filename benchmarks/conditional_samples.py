"""Are a conditional VAE's samples the digits asked for?

Trains ``pyrovae.VAE(num_classes=10)`` on the bundled sample's 8,000 training images with
their labels (``fit`` on ``{"x": images, "y": labels}``), draws ``--per-class`` samples of
every class (z from the prior, the mean of p(x | z, y)), and labels them with a
logistic regression trained on the real training pixels (scikit-learn). Prints the
fraction labelled as requested, per class and overall, and the classifier's accuracy on
the real held-out images for reference.

    python benchmarks/conditional_samples.py --z-dim 4    # 20 epochs, 100 per class

The latent size matters: a large z can carry the class itself, and the decoder then
listens to y less (see the README for the measured figures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyro
import torch

import pyrovae


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--limit", type=int, default=None, help="training images (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    args = p.parse_args()
    data = pyrovae.load_dataset("sample")
    x, y = data.train[: args.limit], data.train_labels[: args.limit]
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    vae = pyrovae.VAE(z_dim=args.z_dim, num_classes=10, image_shape=data.image_shape)
    pyrovae.fit(
        vae,
        {"x": x, "y": y},
        epochs=args.epochs,
        seed=args.seed,
        validation={"x": data.test, "y": data.test_labels},
        progress=False,
    )
    requested = torch.arange(10).repeat_interleave(args.per_class)
    torch.manual_seed(args.seed)
    samples = vae.sample(len(requested), y=requested)
    classifier = LogisticRegression(max_iter=300).fit(x.numpy(), y.numpy())
    heldout = float(classifier.score(data.test.numpy(), data.test_labels.numpy()))
    predicted = torch.from_numpy(classifier.predict(samples.numpy()))
    hits = (predicted == requested).float().reshape(10, args.per_class).mean(1)
    print(
        f"z_dim {args.z_dim}, {args.epochs} epochs; logistic regression on real pixels, "
        f"held-out accuracy {heldout:.3f}"
    )
    print("labelled as requested, per class: " + " ".join(f"{h:.2f}" for h in hits.tolist()))
    print(f"labelled as requested: {float(hits.mean()):.3f} of {len(requested)} samples")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "epochs": args.epochs,
                    "z_dim": args.z_dim,
                    "per_class": args.per_class,
                    "classifier_heldout_accuracy": heldout,
                    "as_requested": float(hits.mean()),
                    "as_requested_per_class": hits.tolist(),
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    sys.exit(main())
