"""A VAE for counts with a covariate ("cells x genes", as in scVI), in raw Pyro.

The data are synthetic and seeded: 4,000 cells x 100 genes drawn from a known model
with a 2-d latent state per cell and a batch indicator (two sequencing batches, the
second sequenced three times deeper and with its own gene-wise offsets). The VAE is
``model(counts, covariate)`` / ``guide(counts, covariate)``, with the per-cell sites
under ``pyro.plate("cells", ...)``:

* z ~ N(0, I); counts ~ NegativeBinomial with mean exp(decoder(z, covariate)) and a
  per-gene inverse dispersion, a global ``pyro.param``;
* q(z | counts, covariate) from an encoder on log(1 + counts).

Both networks use ``nn.BatchNorm1d`` on 2-d input, as scVI's do. Such a program does not
broadcast over an extra particle axis, so ``pyrovae.log_marginal_likelihood`` falls back
to replicating each cell K times (and puts the networks in eval mode while it runs).
Training uses a Pyro learning-rate scheduler, ``pyro.optim.ExponentialLR``, which
``pyrovae.fit`` steps once per epoch.

    python examples/count_model.py                          # 30 epochs, K=500
    python examples/count_model.py --epochs 2 --limit 300 --num-samples 5
    python examples/count_model.py --save-npz counts.npz    # only the data, for the CLI:
    pyrovae train --model examples/count_model.py:CountVAE --dataset counts.npz \\
        --binarize none --out runs/counts
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import pyrovae

NUM_GENES = 100
NUM_BATCHES = 2


def simulate(
    num_cells: int, num_genes: int = NUM_GENES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Counts from a known model: 2-d latent state, batch offsets, NB noise.

    Parameters
    ----------
    num_cells, num_genes
        Shape of the count matrix.
    seed
        Seed of the draw: the same seed gives the same data.

    Returns
    -------
    counts
        Float tensor ``(num_cells, num_genes)`` of non-negative integers.
    covariate
        One-hot batch indicator ``(num_cells, 2)``.
    truth
        The generating parameters: ``loadings``, ``baseline``, ``offsets`` (per batch,
        log scale) and ``inverse_dispersion``.
    """
    with torch.random.fork_rng():  # seeded, and the global RNG left as it was
        torch.manual_seed(seed)
        truth = {
            "loadings": 1.2 * torch.randn(2, num_genes),
            "baseline": torch.randn(num_genes),
            "offsets": torch.stack(
                [
                    torch.zeros(num_genes) + math.log(1000.0),
                    0.5 * torch.randn(num_genes) + math.log(3000.0),
                ]
            ),
            "inverse_dispersion": torch.tensor(5.0),
        }
        covariate = F.one_hot(torch.randint(NUM_BATCHES, (num_cells,)), NUM_BATCHES).float()
        mean = true_mean(torch.randn(num_cells, 2), covariate, truth)
        theta = truth["inverse_dispersion"]
        # NegativeBinomial(theta, mean) as a Gamma-Poisson mixture
        counts = torch.poisson(dist.Gamma(theta, theta / mean).sample())
    return counts, covariate, truth


def true_mean(z: torch.Tensor, covariate: torch.Tensor, truth: dict) -> torch.Tensor:
    """Mean counts of the generating model: depth * softmax(z W + b + batch offset)."""
    logits = z @ truth["loadings"] + truth["baseline"]
    offsets = covariate @ truth["offsets"]  # per cell: log depth + gene-wise batch effect
    depth = offsets.mean(-1, keepdim=True).exp()
    return depth * torch.softmax(logits + offsets - offsets.mean(-1, keepdim=True), -1)


def true_log_likelihood(
    counts: torch.Tensor, covariate: torch.Tensor, truth: dict, num_samples: int = 2000
) -> torch.Tensor:
    """log p(x | c) under the generating model, per cell, by importance sampling from
    the 2-d prior (reliable there: the latent space is small)."""
    gen = torch.Generator().manual_seed(1)
    theta = truth["inverse_dispersion"]
    out = []
    for x, c in zip(counts.split(100), covariate.split(100), strict=True):
        z = torch.randn(num_samples, 1, 2, generator=gen)
        mean = true_mean(z, c, truth)  # (K, B, G)
        lp = dist.NegativeBinomial(theta, logits=mean.log() - theta.log()).log_prob(x).sum(-1)
        out.append(torch.logsumexp(lp, 0) - math.log(num_samples))
    return torch.cat(out)


class CountVAE(nn.Module):
    """p(z) p(counts | z, covariate) with q(z | counts, covariate).

    Parameters
    ----------
    num_genes
        Genes per cell (columns of the count matrix).
    num_covariates
        Columns of the covariate (here a one-hot batch indicator).
    z_dim
        Latent size.
    hidden
        Width of the hidden layer of each network.
    """

    def __init__(
        self,
        num_genes: int = NUM_GENES,
        num_covariates: int = NUM_BATCHES,
        z_dim: int = 4,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        self.num_genes, self.z_dim = num_genes, z_dim
        self.encoder = nn.Sequential(
            nn.Linear(num_genes + num_covariates, hidden),
            nn.BatchNorm1d(hidden),  # wants (batch, features): no particle axis
            nn.ReLU(),
            nn.Linear(hidden, 2 * z_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim + num_covariates, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_genes),
        )

    def log_mean(self, z: torch.Tensor, covariate: torch.Tensor) -> torch.Tensor:
        """log of the mean count of each gene given z and the covariate, ``(B, genes)``."""
        if z.dim() != 2:  # a 3-d input would meet BatchNorm1d's (N, C, L) reading
            raise ValueError(f"the decoder takes z of shape (cells, z_dim), not {tuple(z.shape)}")
        return self.decoder(torch.cat([z, covariate], -1))

    def model(self, counts: torch.Tensor, covariate: torch.Tensor) -> None:
        """z ~ N(0, I); counts ~ NegativeBinomial(mean exp(decoder(z, c)), theta).

        Parameters
        ----------
        counts
            Counts ``(B, genes)`` as floats.
        covariate
            Covariate ``(B, num_covariates)``.
        """
        pyro.module("count_vae", self)
        theta = pyro.param(
            "inverse_dispersion",
            lambda: counts.new_full((self.num_genes,), 10.0),
            constraint=dist.constraints.positive,
        )
        with pyro.plate("cells", counts.shape[0]):
            z = pyro.sample("z", dist.Normal(counts.new_zeros(self.z_dim), 1.0).to_event(1))
            logits = self.log_mean(z, covariate) - theta.log()  # NB mean = theta * e^logits
            pyro.sample(
                "counts", dist.NegativeBinomial(theta, logits=logits).to_event(1), obs=counts
            )

    def guide(self, counts: torch.Tensor, covariate: torch.Tensor) -> None:
        """q(z | counts, c): a diagonal Gaussian from the encoder on log(1 + counts).

        Parameters
        ----------
        counts
            Counts ``(B, genes)`` as floats.
        covariate
            Covariate ``(B, num_covariates)``.
        """
        pyro.module("count_vae", self)
        with pyro.plate("cells", counts.shape[0]):
            h = self.encoder(torch.cat([counts.log1p(), covariate], -1))
            loc, raw_scale = h.split(self.z_dim, -1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--limit", type=int, default=None, help="use this many cells of each split")
    p.add_argument("--num-samples", type=int, default=500, help="importance samples, K")
    p.add_argument("--save-npz", default=None, help="only write the data for `pyrovae train`")
    args = p.parse_args()
    start = time.perf_counter()

    counts, covariate, truth = simulate(4000, seed=0)
    if args.save_npz:
        # Arrays named after the model's arguments; NAME_train / NAME_test give the split.
        np.savez(
            args.save_npz,
            counts_train=counts[:3200].numpy(),
            counts_test=counts[3200:].numpy(),
            covariate_train=covariate[:3200].numpy(),
            covariate_test=covariate[3200:].numpy(),
        )
        print(f"data in {args.save_npz}; train on it with `pyrovae train --model ...`")
        return
    train = (counts[:3200][: args.limit], covariate[:3200][: args.limit])
    test = (counts[3200:][: args.limit], covariate[3200:][: args.limit])

    net = CountVAE()
    scheduler = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": 3e-3}, "gamma": 0.95}
    )
    history = pyrovae.fit(
        net,
        train,  # model(counts_batch, covariate_batch)
        epochs=args.epochs,
        batch_size=128,
        optim=scheduler,  # stepped once per epoch
        binarize="none",  # counts, not grey levels
        validation=test,
        device="cpu",
        seed=0,
    )
    print("learning rate per epoch:", " ".join(f"{lr:.2g}" for lr in history["lr"]))
    print(f"held-out ELBO after {args.epochs} epochs: {history['val_elbo'][-1]:.2f} nats")
    theta = pyro.param("inverse_dispersion").detach()
    print(f"inverse dispersion: median {theta.median():.2f} (true {truth['inverse_dispersion']})")

    est = pyrovae.log_marginal_likelihood(net.model, net.guide, test, num_samples=args.num_samples)
    reference = true_log_likelihood(*test, truth).mean()
    print(
        f"held-out log p(x | c) {est.mean:.2f} +- {est.stderr:.2f} nats per cell "
        f"(K={args.num_samples}); the generating model: {reference:.2f}"
    )
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
