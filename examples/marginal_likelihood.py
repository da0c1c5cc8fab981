"""ELBO <= L_k <= log p(x): the bounds and estimates of one trained VAE side by side.

Trains the standard VAE, then on the held-out images reports the ELBO, the IWAE bound
L_k for growing k, the importance-sampling estimate of log p(x) with K samples, and the
annealed importance sampling estimate on the first images.

    python examples/marginal_likelihood.py                 # 20 epochs
    python examples/marginal_likelihood.py --epochs 1 --limit 100 --num-samples 10
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
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--ais-images", type=int, default=100)
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    vae = pyrovae.VAE(image_shape=data.image_shape)
    pyrovae.fit(vae, train, epochs=args.epochs, device="cpu", progress=False)
    x = get_binarization("dynamic").heldout(test, 0)

    pyro.set_rng_seed(0)
    elbo = pyrovae.elbo_terms(vae.model, vae.guide, x).elbo
    print(f"ELBO                 {elbo.mean():9.2f} nats")
    for k in (5, 50):
        bound = pyrovae.iwae_bound(vae.model, vae.guide, x, num_particles=k)
        print(f"IWAE bound L_{k:<6} {bound.mean:9.2f} nats")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = pyrovae.log_marginal_likelihood(
            vae.model, vae.guide, x, num_samples=args.num_samples
        )
    print(f"log p(x), IS K={args.num_samples:<5} {est.mean:9.2f} +- {est.stderr:.2f} nats")
    first = x[: args.ais_images]
    ais = pyrovae.annealed_importance_sampling(vae.model, vae.guide, first)
    print(
        f"on the first {len(first)} images: IS {est.per_datapoint[: len(first)].mean():.2f}, "
        f"AIS {ais.mean:.2f} +- {ais.stderr:.2f} nats"
    )


if __name__ == "__main__":
    main()
