"""Imputation: fill the bottom half of held-out digits given the top half.

Trains the standard VAE, hides the bottom half of every held-out image, fills it with
the mean of p(x_miss | x_obs) under the model conditioned on the visible half
(pyrovae.use.applications.impute: importance weighting through the guide), and compares the
error on the hidden pixels with filling each pixel by its mean
over the training images. The error is against the original grey levels.

    python examples/imputation.py                     # 20 epochs
    python examples/imputation.py --epochs 1 --limit 300 --num-samples 10
"""

from __future__ import annotations

import argparse

import torch

import pyrovae
from pyrovae.data.masks import bottom_half
from pyrovae.use.applications import impute


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=1000)
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    vae = pyrovae.VAE(image_shape=data.image_shape)
    pyrovae.fit(vae, train, epochs=args.epochs, device="cpu", progress=False)

    missing = bottom_half(tuple(test.shape), data.image_shape)
    pixel_mean = train.mean(0)
    torch.manual_seed(0)
    # The model saw binary images: condition it on a binary draw of the visible half.
    observed = torch.bernoulli(test, generator=torch.Generator().manual_seed(1))
    filled = impute(vae, observed, missing, num_samples=args.num_samples, fill=pixel_mean)
    mean_fill = pixel_mean.expand_as(test)

    def mse(guess: torch.Tensor) -> float:
        return float(((guess - test) ** 2)[missing].mean())

    print(
        f"bottom half of {len(test)} held-out digits: mean squared error on the hidden "
        f"pixels {mse(filled):.4f} (VAE, K={args.num_samples}) vs {mse(mean_fill):.4f} "
        f"(training mean of each pixel)"
    )


if __name__ == "__main__":
    main()
