"""Accuracy of the cluster VAE over seeds, and of M2 against its classifier alone.

Clusters: ``ClusterVAE`` with its defaults (784-500-500-2000-10, uniform pi, mixture set
from k-means of the encoder's means after ``init_after`` epochs) trained by ``fit`` for
``--epochs`` per seed; the matched accuracy of its clusters on the grey held-out images,
against k-means on the held-out pixels.

M2: ``SemiSupervisedVAE`` (conv classifier) on 100 labelled and 7,900 unlabelled
training images for ``--epochs``, against the same classifier network trained on the
100 labelled images alone for as many labelled minibatches (dynamically binarised,
Adam at 1e-3); both scored on the grey held-out images.

    python benchmarks/structured_accuracy.py                    # clusters seeds 0-3, M2
    python benchmarks/structured_accuracy.py --epochs 1 --seeds 0 --what clusters
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pyro
import torch
import torch.nn.functional as F

import pyrovae
from pyrovae.data.labels import SemiSupervisedBatches, balanced_labels
from pyrovae.models.clustering import best_match_accuracy
from pyrovae.models.clusters import ClusterVAE
from pyrovae.models.semisupervised import SemiSupervisedVAE


def clusters(data, seed: int, epochs: int, init_after: int) -> float:
    pyro.set_rng_seed(seed)
    vae = ClusterVAE(784, clusters=10, init_after=init_after)
    pyrovae.fit(vae, data.train, epochs=epochs, progress=False, seed=seed)
    vae.eval()
    return best_match_accuracy(vae.cluster(data.test), data.test_labels)


def m2(data, seed: int, epochs: int) -> tuple[float, float]:
    keep = torch.zeros(len(data.train), dtype=torch.bool)
    keep[balanced_labels(data.train_labels, 100, seed)] = True
    x, y = data.train[keep], data.train_labels[keep]
    batches = SemiSupervisedBatches(data.train[~keep], x, y, seed=seed)
    pyro.set_rng_seed(seed)
    vae = SemiSupervisedVAE(image_shape=data.image_shape)
    pyrovae.fit(vae, batches, epochs=epochs, progress=False, seed=seed)
    vae.eval()
    semi = float((vae.classify(data.test) == data.test_labels).float().mean())

    pyro.set_rng_seed(seed)
    alone = SemiSupervisedVAE(image_shape=data.image_shape).classifier
    optim = torch.optim.Adam(alone.parameters(), 1e-3)
    unlabelled = -(-len(batches.x_unlabelled) // batches.batch_size)
    for _ in range(epochs * (len(batches) - unlabelled)):  # as many as M2's labelled batches
        loss = F.cross_entropy(alone((torch.rand_like(x) < x).float()), y)
        optim.zero_grad()
        loss.backward()
        optim.step()
    alone.eval()
    with torch.no_grad():
        supervised = float((alone(data.test).argmax(-1) == data.test_labels).float().mean())
    return semi, supervised


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="default 40 (clusters), 30 (M2)")
    p.add_argument("--seeds", default="0,1,2,3", help="the cluster VAE's seeds")
    p.add_argument("--init-after", type=int, default=20)
    p.add_argument("--what", choices=("clusters", "m2", "both"), default="both")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    args = p.parse_args()
    data = pyrovae.load_dataset("sample")
    if args.limit:  # a quick run (the smoke test): fewer training images
        data = dataclasses.replace(
            data, train=data.train[: args.limit], train_labels=data.train_labels[: args.limit]
        )
    start = time.perf_counter()
    if args.what in ("clusters", "both"):
        from sklearn.cluster import KMeans

        kmeans = KMeans(n_clusters=10, n_init=10, random_state=0).fit(data.test.numpy())
        base = best_match_accuracy(torch.as_tensor(kmeans.labels_), data.test_labels)
        epochs = args.epochs or 40
        for seed in (int(s) for s in args.seeds.split(",")):
            acc = clusters(data, seed, epochs, args.init_after)
            print(
                f"clusters, seed {seed}, {epochs} epochs: matched accuracy {acc:.4f} "
                f"(k-means on the pixels {base:.4f}; {time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    if args.what in ("m2", "both"):
        epochs = args.epochs or 30
        semi, supervised = m2(data, 0, epochs)
        print(
            f"M2, {epochs} epochs: accuracy {semi:.4f}; the same classifier on the 100 "
            f"labels alone {supervised:.4f} ({time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
