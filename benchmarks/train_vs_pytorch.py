"""pyrovae against the same VAE in plain PyTorch: held-out ELBO and seconds per epoch.

Both are trained in one process, epochs interleaved (a pyrovae epoch, then a plain
PyTorch epoch, ...), so that both see the same machine load. Both are evaluated on the
same statically binarised held-out images with the same number of samples.

    python benchmarks/train_vs_pytorch.py                  # the issue's settings
    python benchmarks/train_vs_pytorch.py --device cuda    # unchanged code on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_vae import PlainTrainer, PlainVAE  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.data.binarization import get_binarization  # noqa: E402
from pyrovae.training import resolve_device  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-samples", type=int, default=10, help="samples per held-out ELBO")
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int, default=None, help="use only this many training images")
    args = p.parse_args()

    device = resolve_device(args.device)
    data = pyrovae.load_dataset("sample")
    train = data.train[: args.limit].to(device)
    test = get_binarization("dynamic").heldout(data.test, args.seed).to(device)

    torch.manual_seed(args.seed)
    plain = PlainVAE(data.x_dim, args.z_dim, (args.hidden,)).to(device)
    trainer = PlainTrainer(plain, lr=args.lr)
    plain_seconds: list[float] = []

    def plain_epoch(state) -> None:
        start = time.perf_counter()
        trainer.epoch(train, args.batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize()
        plain_seconds.append(time.perf_counter() - start)

    vae = pyrovae.VAE(data.x_dim, args.z_dim, (args.hidden,))
    history = pyrovae.fit(
        vae,
        train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=device,
        seed=args.seed,
        progress=False,
        callback=plain_epoch,
    )

    torch.manual_seed(args.seed + 7)
    ours = pyrovae.log_marginal_likelihood(
        vae.model, vae.guide, test, num_samples=args.eval_samples, batch_size=500
    ).elbo.mean()
    theirs = torch.cat([plain.elbo(x, args.eval_samples) for x in test.split(500)]).mean()
    ours_s = sum(history["seconds"]) / len(history["seconds"])
    theirs_s = sum(plain_seconds) / len(plain_seconds)
    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"settings: {len(train)} train / {len(test)} held-out images, z={args.z_dim}, "
        f"hidden={args.hidden}, batch {args.batch_size}, lr {args.lr}, "
        f"{args.epochs} epochs, dynamic binarisation, held-out ELBO from "
        f"{args.eval_samples} samples per image"
    )
    print(f"{'':14}{'held-out ELBO (nats)':>22}{'s / epoch':>12}")
    print(f"{'pyrovae':14}{float(ours):22.2f}{ours_s:12.3f}")
    print(f"{'plain PyTorch':14}{float(theirs):22.2f}{theirs_s:12.3f}")
    print(f"difference: {float(ours - theirs):+.2f} nats; time ratio {ours_s / theirs_s:.2f}")


if __name__ == "__main__":
    main()
