"""A conditional VAE, p(x | y) = ∫ p(z) p(x | z, y) dz, written by hand in raw Pyro.

The model and guide take two arguments, ``model(x, y)`` and ``guide(x, y)``: x a
binarised MNIST image and y its one-hot digit label. ``pyrovae.fit`` is given the
tuple ``(x_train, y_train)`` and calls them with each minibatch of both;
``pyrovae.log_marginal_likelihood`` estimates the held-out log p(x | y) the same way.
The per-datapoint plate is called "images", not "data": pyrovae finds it by its size.

    python examples/conditional_vae.py                       # 20 epochs, K=1000
    python examples/conditional_vae.py --epochs 1 --limit 300 --num-samples 5
    python examples/conditional_vae.py --out samples.png     # also save the samples
"""

from __future__ import annotations

import argparse
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import pyrovae
from pyrovae.data.binarization import get_binarization


def concat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last axis after broadcasting all the other axes.

    Importance sampling runs K draws of z at once, so z arrives as ``(K, B, Z)`` while
    the label is still ``(B, 10)``; ``torch.cat`` alone would refuse the pair.

    Parameters
    ----------
    *tensors
        Tensors whose shapes, last axis left out, broadcast together.

    Returns
    -------
    torch.Tensor
        Shape ``(*broadcast batch shape, sum of the last axes)``.
    """
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], dim=-1)


class ConditionalVAE(nn.Module):
    """p(z) p(x | z, y) with q(z | x, y), as a Pyro model and guide.

    Parameters
    ----------
    x_dim
        Pixels per image.
    num_classes
        Size of the one-hot label y.
    z_dim
        Latent size.
    hidden
        Width of the one hidden layer of the encoder and of the decoder.
    """

    def __init__(
        self, x_dim: int = 784, num_classes: int = 10, z_dim: int = 16, hidden: int = 400
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Linear(x_dim + num_classes, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim + num_classes, hidden), nn.Softplus(), nn.Linear(hidden, x_dim)
        )

    def model(self, x: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        """p(z) p(x | z, y): z ~ N(0, I), x ~ Bernoulli(logits=decoder(z, y)).

        Parameters
        ----------
        x
            Binary images ``(B, x_dim)``, observed; ``None`` to draw them.
        y
            One-hot labels ``(B, num_classes)``.

        Returns
        -------
        torch.Tensor
            The images, observed or drawn.
        """
        pyro.module("cvae", self)
        with pyro.plate("images", y.shape[0]):
            z = pyro.sample("z", dist.Normal(y.new_zeros(self.z_dim), 1.0).to_event(1))
            logits = self.decoder(concat(z, y))
            return pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """q(z | x, y), a diagonal Gaussian from the encoder.

        Parameters
        ----------
        x
            Binary images ``(B, x_dim)``.
        y
            One-hot labels ``(B, num_classes)``.
        """
        pyro.module("cvae", self)
        with pyro.plate("images", y.shape[0]):
            loc, raw_scale = self.encoder(concat(x, y)).split(self.z_dim, -1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1))


def one_hot(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Float one-hot rows ``(N, num_classes)`` of integer labels ``(N,)``."""
    return F.one_hot(labels, num_classes).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None, help="use this many images of each split")
    p.add_argument("--num-samples", type=int, default=1000, help="importance samples, K")
    p.add_argument("--z-dim", type=int, default=16, help="latent size (4: samples follow y more)")
    p.add_argument("--out", default=None, help="save the class-conditional samples here (.png)")
    args = p.parse_args()
    start = time.perf_counter()

    data = pyrovae.load_dataset("sample")
    x_train, x_test = data.train[: args.limit], data.test[: args.limit]
    y_train = one_hot(data.train_labels[: args.limit])
    y_test = one_hot(data.test_labels[: args.limit])
    x_test_bin = get_binarization("dynamic").heldout(x_test, seed=0)

    cvae = ConditionalVAE(z_dim=args.z_dim)
    history = pyrovae.fit(
        cvae,
        (x_train, y_train),  # minibatches of both: cvae.model(x_batch, y_batch)
        epochs=args.epochs,
        batch_size=128,
        lr=1e-3,
        binarize="dynamic",  # the first tensor, x, only
        validation=(x_test_bin, y_test),
        device="cpu",
        seed=0,
    )
    print(f"held-out ELBO after {args.epochs} epochs: {history['val_elbo'][-1]:.2f} nats")

    est = pyrovae.log_marginal_likelihood(
        cvae.model, cvae.guide, (x_test_bin, y_test), num_samples=args.num_samples
    )
    print(
        f"held-out log p(x | y) {est.mean:.2f} +- {est.stderr:.2f} nats "
        f"(ELBO {est.elbo.mean():.2f}, K={args.num_samples}, dynamically binarised MNIST)"
    )

    # Class-conditional samples: run the model forward with x unobserved, 8 per digit.
    cvae.eval()
    labels = one_hot(torch.arange(10).repeat_interleave(8))
    with torch.no_grad():
        trace = pyro.poutine.trace(cvae.model).get_trace(None, labels)
        z = trace.nodes["z"]["value"]
        means = torch.sigmoid(cvae.decoder(concat(z, labels)))  # mean of p(x | z, y)
    print(f"class-conditional samples: {tuple(means.shape)} (8 per digit, rows 0-9)")
    if args.out:
        from pyrovae import plots  # matplotlib only when a figure is asked for

        fig = plots.image_rows(means, data.image_shape, 8, "p(x | z, y), z ~ p(z), y = 0..9")
        fig.savefig(args.out)
        print(f"samples in {args.out}")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
