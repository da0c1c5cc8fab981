"""A SMILES VAE in pyrovae against the same architecture in plain PyTorch, side by side.

Both models are the sequence VAE of ``pyrovae train --dataset moses-sample`` (the CLI's
sequence defaults: a bidirectional GRU encoder, z, a GRU decoder reading z at every
step; ``plain_seq_vae.py`` writes it out by hand), trained on the same molecules with
the same batch size, learning rate and KL warm-up, one after the other in one process.
For each the script prints

* the training time per step (the loop's time over its steps: pyrovae's from the
  ``seconds`` of its history, setup left out), and the ratio pyrovae / plain PyTorch;
* the held-out NLL per molecule by importance sampling with K samples, and the KL of
  q(z|x) from the prior with the number of active latent units (variance of the
  posterior mean over the data above 0.01);
* the MOSES metrics of prior samples (validity, uniqueness, novelty against the
  molecules trained on, internal diversity, property distances to the ``--heldout``
  molecules scored; RDKit), at temperature 1 and at ``--temperature``.

Two budgets: ``--epochs E`` trains both for the same number of steps (the step-time
ratio); ``--cli`` runs ``pyrovae train --dataset DATASET`` with every default (the
command a user types, timed start to end) and trains plain PyTorch with the same
settings for as long as pyrovae's training loop took (the quality at equal time).

    python benchmarks/sequences.py --epochs 1 --limit 6400             # step time
    python benchmarks/sequences.py --cli --out results/sequences.json  # the defaults
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_seq_vae import PlainSequenceVAE  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.inference.objectives import get_loss  # noqa: E402
from pyrovae.rundir.defaults import DATA_DEFAULTS  # noqa: E402
from pyrovae.use import molecules, sequences  # noqa: E402

#: What a new run on sequences gets (``pyrovae train``'s defaults for them).
SEQUENCES = DATA_DEFAULTS["sequences"]
SEQUENCE_DEFAULTS, SEQUENCE_TRAINING = SEQUENCES.model, SEQUENCES.training
SEQUENCE_STEPS = SEQUENCES.steps
#: The likelihood's settings among the CLI's sequence defaults (its temperature).
LIKELIHOOD = SEQUENCES.likelihood_kwargs


def run_cli(args) -> tuple[pyrovae.VAE, float, float]:
    """``pyrovae train --dataset DATASET`` with its defaults, timed start to end: the VAE,
    seconds per step of its loop and the loop's seconds. ``args`` takes the run's
    settings, so that plain PyTorch is trained with the same."""
    out = Path(tempfile.mkdtemp()) / "run"
    command = ["pyrovae", "train", "--dataset", args.dataset, "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *command], check=True)
    print(f"{' '.join(command[:4])}: {time.perf_counter() - start:.0f} s start to end")
    config = json.loads((out / "config.json").read_text())
    train = config["train"]
    args.batch_size, args.lr, args.epochs = train["batch_size"], train["lr"], train["epochs"]
    args.kl_warmup, args.free_bits = train["kl_warmup"], train["free_bits"]
    args.free_bits_per_unit = train["free_bits_per_unit"]
    args.word_dropout = config["model"]["likelihood_kwargs"].get("word_dropout", 0.0)
    history = json.loads((out / "history.json").read_text())
    steps = len(history["epoch"]) * math.ceil(config["data"]["n_train"] / args.batch_size)
    return pyrovae.load(out).eval(), sum(history["seconds"]) / steps, sum(history["seconds"])


def train_pyrovae(data, args) -> tuple[pyrovae.VAE, float, float]:
    """pyrovae's VAE with the CLI's sequence networks, trained by ``fit`` for
    ``args.epochs``: seconds per step of its loop, and the loop's seconds."""
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    x = data.train[: args.limit]
    vae = pyrovae.VAE(
        x_dim=x.shape[1],
        z_dim=SEQUENCE_DEFAULTS["z_dim"],
        hidden=SEQUENCE_DEFAULTS["hidden"],
        net=SEQUENCE_DEFAULTS["net"],
        likelihood=SEQUENCE_DEFAULTS["likelihood"],
        vocab_size=data.vocabulary.size,
        likelihood_kwargs={**LIKELIHOOD, "word_dropout": args.word_dropout},
    )
    history = pyrovae.fit(
        vae,
        x,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=get_loss(
            "trace", free_bits=args.free_bits, free_bits_per_unit=args.free_bits_per_unit
        ),
        binarize="none",
        kl_warmup=args.kl_warmup,
        precision=args.precision,
        seed=args.seed,
        progress=False,
    )
    steps = len(history["epoch"]) * math.ceil(len(x) / args.batch_size)
    return vae.eval(), sum(history["seconds"]) / steps, sum(history["seconds"])


def train_plain(data, args, seconds: float | None) -> tuple[PlainSequenceVAE, float, int]:
    """The plain model for as many steps as pyrovae took, or for ``seconds``."""
    torch.manual_seed(args.seed)
    x = data.train[: args.limit]
    model = PlainSequenceVAE(
        data.vocabulary.size,
        x.shape[1],
        z_dim=SEQUENCE_DEFAULTS["z_dim"],
        hidden=SEQUENCE_DEFAULTS["hidden"][0],
        word_dropout=args.word_dropout,
    )
    optim = torch.optim.Adam(model.parameters(), lr=args.lr)
    per_epoch = math.ceil(len(x) / args.batch_size)
    warmup = args.kl_warmup * per_epoch
    times, step, start = [], 0, time.perf_counter()
    while True:
        order = torch.randperm(len(x))
        for i in range(per_epoch):
            t0 = time.perf_counter()
            weight = min(1.0, (step + 1) / warmup) if warmup else 1.0
            batch = x[order[i * args.batch_size : (i + 1) * args.batch_size]]
            loss = model.loss(batch, weight, args.free_bits, args.free_bits_per_unit)
            optim.zero_grad()
            loss.backward()
            optim.step()
            times.append(time.perf_counter() - t0)
            step += 1
            over = time.perf_counter() - start >= seconds if seconds else False
            if over or (not seconds and step == args.epochs * per_epoch):
                return model.eval(), sum(times) / step, step


def plain_nll(model: PlainSequenceVAE, x: torch.Tensor, k: int) -> float:
    return -float(torch.cat([model.log_marginal(b, k) for b in x.split(100)]).mean())


def kl_and_units(loc: torch.Tensor, scale: torch.Tensor) -> tuple[float, int]:
    q = torch.distributions.Normal(loc, scale)
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
    return float(kl.sum(-1).mean()), int((loc.var(0) > 0.01).sum())


def pyrovae_figures(vae, data, args) -> dict:
    x = data.test[: args.heldout]
    pyro.set_rng_seed(args.seed)
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=args.num_samples)
    with torch.no_grad():
        q = vae.encode(x)
    kl, units = kl_and_units(q.base_dist.loc, q.base_dist.scale)
    figures = {"nll": -est.mean, "kl": kl, "active_units": units}
    for t in (1.0, args.temperature):
        torch.manual_seed(args.seed)
        texts = sequences.sample_sequences(vae, args.samples, data.vocabulary, temperature=t)
        figures[f"T={t:g}"] = molecule_figures(texts, data, args)
    return figures


def plain_figures(model: PlainSequenceVAE, data, args) -> dict:
    x = data.test[: args.heldout]
    torch.manual_seed(args.seed)
    with torch.no_grad():
        loc, scale = model.encode(x)
    kl, units = kl_and_units(loc, scale)
    figures = {"nll": plain_nll(model, x, args.num_samples), "kl": kl, "active_units": units}
    for t in (1.0, args.temperature):
        torch.manual_seed(args.seed)
        texts = data.vocabulary.decode(model.sample(args.samples, temperature=t))
        figures[f"T={t:g}"] = molecule_figures(texts, data, args)
    return figures


def molecule_figures(texts: list[str], data, args) -> dict:
    """The MOSES metrics of ``texts``: novelty against the molecules trained on, property
    distances to the held-out molecules scored."""
    if "set" not in TRAINING:
        TRAINING["set"] = molecules.canonical_set(data.vocabulary.decode(data.train[: args.limit]))
        TRAINING["reference"] = data.vocabulary.decode(data.test[: args.heldout])
    found = molecules.molecule_metrics(texts, TRAINING["set"], TRAINING["reference"])
    return found.as_dict()


TRAINING: dict = {}


def show(name: str, per_step: float, figures: dict, temperature: float) -> None:
    ms = 1000 * per_step
    print(
        f"{name:24s} {ms:7.1f} ms/step  NLL {figures['nll']:7.2f} nats/molecule  "
        f"KL {figures['kl']:6.2f}  active units {figures['active_units']}",
        flush=True,
    )
    for t in (1.0, temperature):
        m = figures[f"T={t:g}"]
        print(
            f"{'':24s} T={t:g}: validity {m['validity']:.3f}  unique {m['unique']:.3f}  "
            f"novelty {m['novelty']:.3f}  IntDiv {m['int_div']:.3f}  "
            f"W(logP) {m['wasserstein_logp']:.3f}  W(QED) {m['wasserstein_qed']:.3f}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="moses-sample")
    p.add_argument("--cli", action="store_true", help="pyrovae train with its defaults")
    p.add_argument("--epochs", type=int, default=1, help=f"(--cli: {SEQUENCE_STEPS} steps)")
    p.add_argument("--limit", type=int, default=None, help="training molecules (default all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--kl-warmup", type=float, default=SEQUENCE_TRAINING["kl_warmup"])
    p.add_argument("--free-bits", type=float, default=SEQUENCE_TRAINING["free_bits"])
    p.add_argument(
        "--free-bits-per-unit",
        action=argparse.BooleanOptionalAction,
        default=SEQUENCE_TRAINING["free_bits_per_unit"],
    )
    p.add_argument("--word-dropout", type=float, default=LIKELIHOOD.get("word_dropout", 0.0))
    p.add_argument("--precision", default="auto", help="pyrovae's (plain PyTorch: float32)")
    p.add_argument("--heldout", type=int, default=1000, help="held-out molecules scored")
    p.add_argument("--num-samples", type=int, default=100, help="IS samples K")
    p.add_argument("--samples", type=int, default=2000, help="prior samples for MOSES metrics")
    p.add_argument(
        "--temperature",
        type=float,
        default=LIKELIHOOD.get("temperature", 0.7),
        help="samples are scored at temperature 1 and at this one",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    args = p.parse_args()
    data = pyrovae.load_dataset(args.dataset)
    if args.cli:
        vae, ours_step, seconds = run_cli(args)
    else:
        vae, ours_step, seconds = train_pyrovae(data, args)
    ours = pyrovae_figures(vae, data, args)
    show("pyrovae", ours_step, ours, args.temperature)
    plain, plain_step, steps = train_plain(data, args, seconds if args.cli else None)
    theirs = plain_figures(plain, data, args)
    show("plain PyTorch", plain_step, theirs, args.temperature)
    ratio = ours_step / plain_step
    print(f"time per step, pyrovae / plain PyTorch: {ratio:.3f}")
    print(f"pyrovae's loop: {seconds:.0f} s; plain PyTorch: {steps} steps in the same time")
    if args.out:
        meta = {"machine": platform.processor() or platform.machine(), "argv": sys.argv[1:]}
        result = {
            "settings": {**meta, **vars(args)},
            "pyrovae": {**ours, "ms_per_step": 1000 * ours_step, "loop_seconds": seconds},
            "plain": {**theirs, "ms_per_step": 1000 * plain_step, "steps": steps},
            "step_ratio": ratio,
        }
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
