"""Swap the likelihood: the same images modelled three ways.

* ``bernoulli`` on dynamically binarised images (the standard benchmark data);
* ``continuous-bernoulli`` on the grey levels in [0, 1] (a normalised density, unlike a
  Bernoulli evaluated at grey levels);
* ``discretized-logistic`` on the 8-bit levels k/255, whose NLL in bits per dimension is
  comparable with other models of 8-bit images.

The three numbers are log-likelihoods of different data (binary images, continuous grey
levels, 8-bit levels), so they are not comparable with each other: the example shows
that only the likelihood and the binarisation change.

    python examples/swap_likelihood.py --epochs 1 --limit 300 --num-samples 10
"""

from __future__ import annotations

import argparse
import math
import warnings

import pyro

import pyrovae
from pyrovae.data.binarization import get_binarization

#: likelihood -> the binarisation its data need
CHOICES = {"bernoulli": "dynamic", "continuous-bernoulli": "none", "discretized-logistic": "none"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=200)
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    for likelihood, binarize in CHOICES.items():
        pyro.set_rng_seed(0)
        vae = pyrovae.VAE(likelihood=likelihood, image_shape=data.image_shape)
        pyrovae.fit(
            vae, train, epochs=args.epochs, binarize=binarize, device="cpu", progress=False
        )
        held_out = get_binarization(binarize).heldout(test, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = pyrovae.log_marginal_likelihood(
                vae.model, vae.guide, held_out, num_samples=args.num_samples
            )
        bits = -est.mean / (held_out.shape[1] * math.log(2))
        print(
            f"{likelihood:22} on {binarize:7} data: log p(x) {est.mean:9.2f} nats "
            f"({bits:.3f} bits/dim)"
        )


if __name__ == "__main__":
    main()
