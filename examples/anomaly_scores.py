"""Anomaly scores of a VAE trained without one class, one per score of the registry.

Trains the standard VAE on the training images of digits 0-8 only, scores every
held-out image by each score of ``pyrovae.use.anomaly.SCORES`` that applies to it
(-log p(x), -ELBO, reconstruction probability, the complexity-corrected -log p(x)), and
reports the ROC AUC of each for telling the held-out 9s from the other digits (0.5 is
chance). ``benchmarks/anomaly.py`` adds the hierarchical and background-model scores
and the baselines, over seeds.

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
from pyrovae.use.anomaly import SCORES, anomaly_score


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
    is_anomaly = (yte == args.anomaly).numpy()
    print(f"trained on {len(normal)} images of digits other than {args.anomaly}")
    for method, score in SCORES.items():
        if score.needs_layers or score.needs_background:
            continue  # a hierarchical VAE, a background model: see benchmarks/anomaly.py
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = anomaly_score(vae, held_out, method, num_samples=args.num_samples)
        auc = roc_auc(scores.numpy(), is_anomaly)
        print(
            f"{method:15s} (K={args.num_samples}): ROC AUC for detecting {args.anomaly}s {auc:.3f}"
        )


if __name__ == "__main__":
    main()
