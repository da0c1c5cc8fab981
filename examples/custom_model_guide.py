"""A model and guide written by hand in raw Pyro, trained and evaluated by pyrovae.

Nothing here uses ``pyrovae.VAE``: any model/guide pair that puts its per-datapoint
sites under ``pyro.plate("data", ...)`` can be trained with ``pyrovae.fit`` and scored
with ``pyrovae.log_marginal_likelihood``. This one has a learnable prior scale, kept
with ``pyro.param``, and networks registered with ``pyro.module``.

    python examples/custom_model_guide.py --epochs 1 --limit 500 --num-samples 10
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import pyrovae
from pyrovae.data.binarization import get_binarization

Z = 16


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(784, 256)
        self.out = nn.Linear(256, 2 * Z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.out(torch.tanh(self.hidden(x))).split(Z, -1)
        return loc, F.softplus(raw) + 1e-4


decoder = nn.Sequential(nn.Linear(Z, 256), nn.Tanh(), nn.Linear(256, 784))
encoder = Encoder()


def model(x: torch.Tensor) -> None:
    pyro.module("decoder", decoder)
    scale = pyro.param("prior_scale", torch.ones(Z), constraint=dist.constraints.positive)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(Z), scale).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)


def guide(x: torch.Tensor) -> None:
    pyro.module("encoder", encoder)
    with pyro.plate("data", x.shape[0]):
        loc, scale = encoder(x)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=500)
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    pyrovae.fit(
        (model, guide),
        train,
        epochs=args.epochs,
        batch_size=128,
        lr=1e-3,
        validation=test,
        device="cpu",
    )
    held_out = get_binarization("dynamic").heldout(test, seed=0)
    est = pyrovae.log_marginal_likelihood(model, guide, held_out, num_samples=args.num_samples)
    print(
        f"hand-written model: held-out ELBO {est.elbo.mean():.2f}, "
        f"log p(x) {est.mean:.2f} +- {est.stderr:.2f} nats (K={args.num_samples})"
    )
    print("learned prior scale:", pyro.param("prior_scale").detach().numpy().round(2))


if __name__ == "__main__":
    main()
