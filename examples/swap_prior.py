"""Swap the prior, keep everything else: the standard VAE against a VampPrior.

Two VAEs identical but for ``prior=``, trained the same way; their held-out log p(x)
(importance sampling) side by side. The prior is one object: ``VAE(prior="vamp")``, or
``pyrovae train --prior vamp`` on the command line.

    python examples/swap_prior.py                     # 20 epochs, K=500
    python examples/swap_prior.py --epochs 1 --limit 300 --num-samples 10
"""

from __future__ import annotations

import argparse
import warnings

import pyro

import pyrovae
from pyrovae.data.binarization import get_binarization


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--priors", default="standard,vamp", help="comma-separated PRIORS names")
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    held_out = get_binarization("dynamic").heldout(test, 0)
    for prior in args.priors.split(","):
        pyro.set_rng_seed(0)
        vae = pyrovae.VAE(prior=prior, image_shape=data.image_shape)
        pyrovae.fit(vae, train, epochs=args.epochs, device="cpu", progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = pyrovae.log_marginal_likelihood(
                vae.model, vae.guide, held_out, num_samples=args.num_samples
            )
        print(f"prior {prior:10} held-out log p(x) {est.mean:8.2f} +- {est.stderr:.2f} nats")


if __name__ == "__main__":
    main()
