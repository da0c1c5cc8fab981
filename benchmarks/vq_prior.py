"""The VQ-VAE's learned code prior against its uniform codebook prior, and the standard VAE.

Trains three VAEs with the same networks and epochs on the bundled sample's 8,000
training images: the standard VAE (diagonal Gaussian guide, N(0, I) prior), the VQ-VAE
with its uniform prior over the codebook (``prior="codebook"``: every code costs log K),
and the VQ-VAE with the autoregressive prior over its codes
(``prior="autoregressive"``, trained jointly). For each it prints

* the held-out NLL bound: -ELBO for the VQ-VAEs (q is a point mass, so the ELBO is the
  only bound there is: log p(x | z_q) + log p(z_q)), and IS with K samples for the
  standard VAE;
* how often a digit classifier (logistic regression on the real training pixels,
  scikit-learn) labels a sample from the prior with confidence >= 0.9: samples that
  look like digits rather than noise.

    python benchmarks/vq_prior.py --epochs 10 --out benchmarks/results/vq_prior.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.data.binarization import get_binarization

MODELS = {
    "standard VAE": {"posterior": "diagonal", "prior": "standard"},
    "VQ, uniform codebook prior": {"posterior": "vq", "prior": "codebook"},
    "VQ, autoregressive code prior": {"posterior": "vq", "prior": "autoregressive"},
}


def train(parts: dict, data, args) -> tuple[pyrovae.VAE, float]:
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    vae = pyrovae.VAE(image_shape=data.image_shape, **parts)
    start = time.perf_counter()
    pyrovae.fit(vae, data.train[: args.limit], epochs=args.epochs, seed=args.seed, progress=False)
    return vae.eval(), time.perf_counter() - start


def nll_bound(vae, x, parts: dict, k: int) -> float:
    """-ELBO (VQ: the only bound) or -log p(x) by IS (the standard VAE), mean over x."""
    pyro.set_rng_seed(0)
    x = get_binarization("dynamic").heldout(x, 0)
    est = pyrovae.log_marginal_likelihood(
        vae.model, vae.guide, x, num_samples=1 if parts["posterior"] == "vq" else k
    )
    bound = est.elbo if parts["posterior"] == "vq" else est.per_datapoint
    return -float(bound.mean())


def confident(vae, classifier, n: int, seed: int) -> float:
    """The fraction of n prior samples (means of p(x|z)) labelled with p >= 0.9."""
    torch.manual_seed(seed)
    with torch.no_grad():
        samples = vae.sample(n).cpu().numpy()
    return float((classifier.predict_proba(samples).max(1) >= 0.9).mean())


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=None, help="training images (default all)")
    p.add_argument("--heldout", type=int, default=2000, help="held-out images scored")
    p.add_argument("--samples", type=int, default=1000, help="prior samples classified")
    p.add_argument("--num-samples", type=int, default=200, help="IS samples K (standard VAE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    args = p.parse_args()
    data = pyrovae.load_dataset("sample")
    classifier = LogisticRegression(max_iter=300).fit(
        data.train[: args.limit].numpy(), data.train_labels[: args.limit].numpy()
    )
    x = data.test[: args.heldout]
    rows = {}
    for name, parts in MODELS.items():
        vae, seconds = train(parts, data, args)
        rows[name] = {
            "nll_bound": nll_bound(vae, x, parts, args.num_samples),
            "confident_samples": confident(vae, classifier, args.samples, args.seed),
            "train_seconds": seconds,
        }
        print(
            f"{name:32s} NLL bound {rows[name]['nll_bound']:8.2f} nats   samples labelled "
            f"with p >= 0.9: {rows[name]['confident_samples']:.3f}   ({seconds:.0f} s)",
            flush=True,
        )
    gain = rows[list(MODELS)[1]]["nll_bound"] - rows[list(MODELS)[2]]["nll_bound"]
    print(f"learned code prior: NLL bound better than the uniform codebook by {gain:.2f} nats")
    if args.out:
        meta = {"machine": platform.processor() or platform.machine(), "argv": sys.argv[1:]}
        Path(args.out).write_text(json.dumps({"settings": meta, "models": rows}, indent=2))


if __name__ == "__main__":
    main()
