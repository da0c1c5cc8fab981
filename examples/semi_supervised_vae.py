"""The semi-supervised VAE M2 of Kingma et al. (2014), in raw Pyro, trained by pyrovae.

Written as Pyro's own ``examples/vae/ss_vae_M2.py`` writes it: the model
p(z) p(y) p(x | z, y) and the guide q(y | x) q(z | x, y), both called as
``model(x, y=None)``; a label that is given is observed, a missing one is a discrete
latent that the guide enumerates (``config_enumerate(..., "parallel", expand=True)``),
so ``pyrovae.fit`` picks ``TraceEnum_ELBO`` and sums it out exactly. The training data
are pyrovae's ``SemiSupervisedBatches``, an iterable that yields, each epoch, shuffled
unlabelled ``(x,)`` batches with a labelled ``(x, y)`` batch every four: 100 labelled
images of the bundled MNIST sample (10 per digit, seeded), the other 7,900 unlabelled.
(pyrovae's own M2 is ``pyrovae train --labels 100``; this script writes the programs
out by hand, as a user of Pyro would.)

It prints the held-out accuracy of the classifier q(y | x), log p(x) with y summed
out, and the sum rule: log Σ_y p(x, y), from ten runs with each label given, against
log p(x) from the enumeration.

    python examples/semi_supervised_vae.py                    # 30 epochs, K=100
    python examples/semi_supervised_vae.py --epochs 1 --limit 300 --num-samples 5
"""

from __future__ import annotations

import argparse
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import config_enumerate
from torch import nn

import pyrovae
from pyrovae.data.binarization import get_binarization
from pyrovae.data.labels import SemiSupervisedBatches, balanced_labels

NUM_CLASSES = 10


def concat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last axis after broadcasting all the other axes.

    Under enumeration y arrives as ``(10, B, 10)`` while x is ``(B, 784)``; under
    importance sampling z is ``(K, B, Z)``. This is Pyro's ``ConcatModule`` with
    ``allow_broadcast=True``.

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


def mlp(*sizes: int) -> nn.Sequential:
    """Linear layers of the given sizes with softplus between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.Softplus()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class SemiSupervisedVAE(nn.Module):
    """M2: p(z) p(y) p(x | z, y) with the guide q(y | x) q(z | x, y).

    Parameters
    ----------
    x_dim
        Pixels per image.
    z_dim
        Size of the continuous latent z ("style").
    hidden
        Width of the one hidden layer of each network.
    aux_weight
        alpha of the auxiliary classification term alpha * log q(y | x) that the guide
        adds to the ELBO of a labelled batch, so that q(y | x) learns from the labels
        (Kingma et al. 2014, eq. 9). It is a training loss, not part of log p(x).
    """

    def __init__(
        self, x_dim: int = 784, z_dim: int = 50, hidden: int = 500, aux_weight: float = 50.0
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.aux_weight = aux_weight
        self.classifier = mlp(x_dim, hidden, NUM_CLASSES)  # logits of q(y | x)
        self.encoder_z = mlp(x_dim + NUM_CLASSES, hidden, 2 * z_dim)  # q(z | x, y)
        self.decoder = mlp(z_dim + NUM_CLASSES, hidden, x_dim)  # logits of p(x | z, y)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(z) p(y) p(x | z, y); y observed when given.

        Parameters
        ----------
        x
            Binary images ``(B, x_dim)``.
        y
            One-hot labels ``(B, 10)``, or ``None`` for an unlabelled batch.
        """
        pyro.module("ss_vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            uniform = x.new_full((NUM_CLASSES,), 1.0 / NUM_CLASSES)
            y = pyro.sample("y", dist.OneHotCategorical(uniform), obs=y)
            logits = self.decoder(concat(z, y))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(y | x) q(z | x, y); y drawn (or enumerated) only when not given.

        Parameters
        ----------
        x
            Binary images ``(B, x_dim)``.
        y
            One-hot labels ``(B, 10)``, or ``None`` for an unlabelled batch.
        """
        pyro.module("ss_vae", self)
        with pyro.plate("data", x.shape[0]):
            q_y = dist.OneHotCategorical(logits=self.classifier(x))
            if y is None:
                y = pyro.sample("y", q_y)
            else:
                # A factor in the guide enters the ELBO as -factor: this adds
                # +aux_weight * log q(y | x). It is deterministic given the parameters,
                # so has_rsample=True (no score-function term). pyrovae leaves guide
                # factors out of log p(x).
                pyro.factor("classification", -self.aux_weight * q_y.log_prob(y), has_rsample=True)
            loc, raw_scale = self.encoder_z(concat(x, y)).split(self.z_dim, -1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--limit", type=int, default=None, help="use this many images of each split")
    p.add_argument("--num-samples", type=int, default=100, help="importance samples, K")
    p.add_argument("--per-class", type=int, default=10, help="labelled images per digit")
    p.add_argument("--aux-weight", type=float, default=50.0, help="alpha of alpha*log q(y|x)")
    args = p.parse_args()
    start = time.perf_counter()

    data = pyrovae.load_dataset("sample")
    x_train, labels = data.train[: args.limit], data.train_labels[: args.limit]
    x_test, test_labels = data.test[: args.limit], data.test_labels[: args.limit]
    labelled = torch.zeros(len(labels), dtype=torch.bool)
    labelled[balanced_labels(labels, args.per_class * NUM_CLASSES, seed=0)] = True
    batches = SemiSupervisedBatches(
        x_train[~labelled],
        x_train[labelled],
        F.one_hot(labels[labelled], NUM_CLASSES).float(),  # OneHotCategorical's labels
        every=4,
    )
    print(f"{int(labelled.sum())} labelled and {int((~labelled).sum())} unlabelled images")

    ss_vae = SemiSupervisedVAE(aux_weight=args.aux_weight)
    # As in Pyro's ss_vae_M2.py: enumerate y in the guide when it is not observed.
    guide = config_enumerate(ss_vae.guide, "parallel", expand=True)
    pyrovae.fit(
        (ss_vae.model, guide),
        batches,  # no batch_size: the batches are used as given
        epochs=args.epochs,
        lr=1e-3,
        binarize="dynamic",  # the first tensor of each batch, x
        device="cpu",
        seed=0,
    )

    x_test_bin = get_binarization("dynamic").heldout(x_test, seed=0)
    with torch.no_grad():
        predicted = ss_vae.classifier(x_test_bin).argmax(-1)
    accuracy = (predicted == test_labels).float().mean().item()
    print(f"held-out accuracy of q(y | x): {100 * accuracy:.1f}% ({len(x_test)} test images)")

    K = args.num_samples
    log_px = pyrovae.log_marginal_likelihood(
        ss_vae.model, guide, x_test_bin, num_samples=K, discrete="enumerate"
    )
    print(f"held-out log p(x), y summed out: {log_px.mean:.2f} +- {log_px.stderr:.2f} (K={K})")

    # The sum rule, log p(x) = log sum_y p(x, y): one estimate per label, y given.
    log_pxy = torch.stack(
        [
            pyrovae.log_marginal_likelihood(
                ss_vae.model,
                guide,
                (x_test_bin, F.one_hot(torch.full_like(test_labels, c), NUM_CLASSES).float()),
                num_samples=K,
            ).per_datapoint
            for c in range(NUM_CLASSES)
        ]
    )
    # Both sides are independent Monte Carlo estimates: per image they differ by the
    # noise of the importance sampler; on average the difference is 0 within its error.
    difference = torch.logsumexp(log_pxy, 0) - log_px.per_datapoint
    print(
        f"sum rule: log sum_y p(x, y) - log p(x) = {difference.mean():+.3f} "
        f"+- {difference.std() / len(difference) ** 0.5:.3f} nats on average, "
        f"mean |difference| {difference.abs().mean():.3f} nats per image (K={K} each side)"
    )
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
