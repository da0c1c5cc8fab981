"""Embeddings: the latent means of a VAE as features for a linear classifier.

Trains the standard VAE on the 8,000 training images of the bundled sample (without
their labels), encodes every image to the mean of q(z|x), fits the same multinomial
logistic regression on the 50-dimensional embeddings and on the 784 raw pixels, and
reports the accuracy of each on the 2,000 held-out images.

    python examples/embeddings.py                     # 20 epochs
    python examples/embeddings.py --epochs 1 --limit 500
"""

from __future__ import annotations

import argparse

import torch

import pyrovae
from pyrovae.data.binarization import get_binarization
from pyrovae.use.applications import latent_means


def logistic_regression(x: torch.Tensor, y: torch.Tensor, steps: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression with a little L2, fitted by L-BFGS."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optim = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(model((x - mean) / std), y)
        loss = loss + 1e-4 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    model.standardise = (mean, std)
    return model


def accuracy(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    mean, std = model.standardise
    with torch.no_grad():
        return float((model((x - mean) / std).argmax(-1) == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None, help="use this many images of each split")
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    ytr, yte = data.train_labels[: args.limit], data.test_labels[: args.limit]
    vae = pyrovae.VAE(image_shape=data.image_shape)
    pyrovae.fit(vae, train, epochs=args.epochs, device="cpu", progress=False)

    # The encoder saw binary images in training: give it the same (one seeded draw).
    binarise = get_binarization("dynamic")
    z_train = latent_means(vae, binarise.heldout(train, 0))
    z_test = latent_means(vae, binarise.heldout(test, 1))
    on_z = accuracy(logistic_regression(z_train, ytr), z_test, yte)
    on_x = accuracy(logistic_regression(train, ytr), test, yte)
    print(
        f"linear classifier, held-out accuracy: VAE embeddings (z={vae.z_dim}) {on_z:.1%}, "
        f"raw pixels (784) {on_x:.1%}  [{len(train)} train / {len(test)} test images]"
    )


if __name__ == "__main__":
    main()
