"""Anomaly scores: -log p(x) of a VAE trained without one class.

Trains the standard VAE on the training images of digits 0-8 only, scores every
held-out image by -log p(x) (importance sampling, K samples), and reports the ROC AUC
of that score for telling the held-out 9s from the other digits (0.5 is chance).

    python examples/anomaly_scores.py                 # 20 epochs, K=500
    python examples/anomaly_scores.py --epochs 1 --limit 500 --num-samples 10
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import pyrovae
from pyrovae.data.binarization import get_binarization
from pyrovae.use.applications import anomaly_scores


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U)."""
    order = scores.argsort()
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average the ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--anomaly", type=int, default=9, help="the digit left out of training")
    args = p.parse_args()

    data = pyrovae.load_dataset("sample")
    train, test = data.train[: args.limit], data.test[: args.limit]
    ytr, yte = data.train_labels[: args.limit], data.test_labels[: args.limit]
    normal = train[ytr != args.anomaly]
    vae = pyrovae.VAE(image_shape=data.image_shape)
    pyrovae.fit(vae, normal, epochs=args.epochs, device="cpu", progress=False)

    held_out = get_binarization("dynamic").heldout(test, 0)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = anomaly_scores(vae.model, vae.guide, held_out, num_samples=args.num_samples)
    is_anomaly = (yte == args.anomaly).numpy()
    auc = roc_auc(scores.numpy(), is_anomaly)
    print(
        f"trained on {len(normal)} images of digits other than {args.anomaly}; "
        f"-log p(x) (K={args.num_samples}) on {len(test)} held-out images: mean "
        f"{scores[~torch.from_numpy(is_anomaly)].mean():.1f} nats for the others, "
        f"{scores[torch.from_numpy(is_anomaly)].mean():.1f} for the {args.anomaly}s; "
        f"ROC AUC for detecting {args.anomaly}s: {auc:.3f}"
    )


if __name__ == "__main__":
    main()
