"""Train the standard VAE on the bundled MNIST sample and estimate its log p(x).

python examples/standard_vae.py                  # 20 epochs, K=1000 (a few minutes)
python examples/standard_vae.py --epochs 1 --limit 500 --num-samples 10   # smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyrovae
from pyrovae.data.binarization import get_binarization
from pyrovae.use import plots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None, help="use this many images of each split")
    p.add_argument("--num-samples", type=int, default=1000, help="importance samples, K")
    p.add_argument("--out", default="runs/example-standard", help="folder for the figures")
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]

    # The model: z ~ N(0, I) (prior), x ~ Bernoulli(decoder(z)) (likelihood), each
    # chosen by one argument; the guide: z ~ N(mu(x), sigma(x)) from the encoder.
    vae = pyrovae.VAE(
        x_dim=784,
        z_dim=50,
        hidden=(400,),
        prior="standard",
        likelihood="bernoulli",
        image_shape=data.image_shape,
    )
    pyrovae.fit(
        vae,
        train,
        epochs=args.epochs,
        batch_size=128,
        lr=1e-3,
        binarize="dynamic",
        validation=test,
    )

    held_out = get_binarization("dynamic").heldout(test, seed=0)
    est = pyrovae.log_marginal_likelihood(
        vae.model, vae.guide, held_out, num_samples=args.num_samples
    )
    print(
        f"held-out ELBO {est.elbo.mean():.2f} nats, log p(x) {est.mean:.2f} "
        f"+- {est.stderr:.2f} nats (K={args.num_samples}, dynamically binarised MNIST)"
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.reconstructions(vae, held_out).savefig(out / "reconstructions.png")
    plots.prior_samples(vae, 64).savefig(out / "samples.png")
    print(f"figures in {out}/")


if __name__ == "__main__":
    main()
