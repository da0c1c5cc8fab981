"""``pyrovae evaluate`` and ``pyrovae report``: a run's held-out metrics and its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pyrovae.cli.common import (
    _add_run_data,
    _init_distributed,
    _load_run,
    _nonnegative_int,
    _positive_int,
)
from pyrovae.errors import PyrovaeError


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    _add_run_data(p)
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=5000,
        help="importance samples K per datapoint (default 5000)",
    )
    p.add_argument(
        "--estimator",
        choices=["is", "ais"],
        default="is",
        help="is: importance sampling from the guide; ais: annealed importance sampling, "
        "reported beside the IS estimate (default is)",
    )
    p.add_argument("--ais-chains", type=_positive_int, default=16, help="AIS chains (16)")
    p.add_argument("--ais-steps", type=_positive_int, default=100, help="AIS steps T (100)")
    p.add_argument("--batch-size", type=_positive_int, default=100, help="datapoints per pass")
    p.add_argument(
        "--memory-budget",
        help="memory one pass of the estimator may use, e.g. 512MB or 2GiB (default: "
        "passes of about 4,096 datapoint-sample pairs on the CPU)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the estimator (default 0)")
    p.add_argument(
        "--molecules",
        type=_nonnegative_int,
        default=10000,
        metavar="N",
        help="a run on SMILES: the MOSES metrics of N samples from the prior (validity, "
        "uniqueness, novelty, internal diversity, property distances; needs RDKit; "
        "default 10000, 0 to skip)",
    )
    p.epilog = (
        "Under torchrun (torchrun --nproc-per-node N -m pyrovae evaluate RUN_DIR) the "
        "passes of --batch-size datapoints, for IS and AIS alike, are shared among the N "
        "processes; rank 0 prints and writes metrics.json and log_px.npy, with the same "
        "values as one process gives for the same --seed."
    )


def _evaluate(args: argparse.Namespace) -> None:
    """pyrovae evaluate: log p(x) and the ELBO, diagnostics, label scores; metrics.json."""
    import pyro

    from pyrovae.inference.processes import world

    _join_processes(args)
    rank, size = world()
    vae, config, data, x = _load_run(args, vae_only=False)
    pyro.set_rng_seed(args.seed)
    est, seconds = _estimate(vae, x, args, rank)
    metrics, nats_per_bit = _is_metrics(est, x, config, args, seconds, size)
    out = print if rank == 0 else lambda *a, **k: None  # rank 0 speaks for all
    _print_is(metrics, config, args, seconds, size, out)
    if args.estimator == "ais":
        metrics.update(_ais(vae, x, est, args, nats_per_bit, out))
    if rank > 0:  # every process holds the gathered estimates; rank 0 writes them
        return
    metrics.update(_collapse_diagnostics(vae, x))
    metrics.update(_label_scores(vae, x, data.test_labels if data is not None else None))
    if config["data"].get("vocabulary") is not None:
        metrics.update(_sequence_metrics(vae, x, config, data, metrics["test_nll"], args))
    _write_metrics(Path(args.run_dir), metrics, est)


def _join_processes(args: argparse.Namespace) -> None:
    """Under torchrun, join the processes that share the passes, one GPU each."""
    import torch

    from pyrovae.data.devices import resolve_device
    from pyrovae.inference.processes import world
    from pyrovae.training.distributed import process_device

    _init_distributed(args.device)
    rank, size = world()
    if size > 1:
        dev = process_device(resolve_device(args.device), rank, size)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        args.device = str(dev)


def _estimate(vae, x, args: argparse.Namespace, rank: int):
    """The IS estimate, its warnings printed by rank 0, and the seconds it took."""
    import time
    import warnings

    from pyrovae.inference.marginal import log_marginal_likelihood

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = log_marginal_likelihood(
            vae.model,
            vae.guide,
            x,
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            memory_budget=args.memory_budget,
        )
    for w in caught if rank == 0 else ():
        print(f"warning: {w.message}", file=sys.stderr)
    return est, time.perf_counter() - start


def _is_metrics(est, x, config: dict, args, seconds: float, size: int) -> tuple[dict, float]:
    """The metrics of the IS estimate, and nats per bit per datapoint."""
    import math

    from pyrovae.data.batches import Batch

    first = Batch.of(x).first
    n, dims = first.shape[0], first[0].numel()
    nats_per_bit = math.log(2) * dims
    metrics = {
        "test_elbo": -float(est.elbo.mean()),
        "test_elbo_stderr": float(est.elbo.double().std()) / math.sqrt(n),
        "test_nll": -est.mean,
        "test_nll_stderr": est.stderr,
        "test_nll_bits_per_dim": -est.mean / nats_per_bit,
        "num_samples": args.num_samples,
        "estimator": "is",
        "ess_median": float(est.ess.median()),
        "dataset": args.dataset or config["data"]["dataset"],
        "n_test": int(n),
        "enumerated": est.enumerated,
        "binarize": config["data"]["binarize"],
        "seed": args.seed,
        "seconds": seconds,
        "processes": size,
        "units": "nats per datapoint; test_elbo and test_nll are -ELBO and -log p(x), positive",
    }
    if isinstance(x, dict) and "y" in x:  # a conditional VAE: everything is given the labels
        metrics["units"] = metrics["units"].replace("log p(x)", "log p(x | y)")
        metrics["conditional_on"] = "y"
    return metrics, nats_per_bit


def _print_is(metrics: dict, config: dict, args, seconds: float, size: int, out) -> None:
    """The held-out ELBO and NLL, as evaluate prints them."""
    source = f"{metrics['n_test']} held-out datapoints of {metrics['dataset']}"
    processes = f", {size} processes" if size > 1 else ""
    out(f"{source}, binarisation {config['data']['binarize']}, seed {args.seed}{processes}")
    out(f"held-out ELBO      {-metrics['test_elbo']:10.2f} nats")
    given = " | y" if "conditional_on" in metrics else ""
    out(
        f"NLL{given} (IS, K={args.num_samples})  {metrics['test_nll']:8.2f} +- "
        f"{metrics['test_nll_stderr']:.2f} nats   ({metrics['test_nll_bits_per_dim']:.4f} "
        f"bits/dim)   [{seconds:.1f} s]"
    )


def _write_metrics(run_dir: Path, metrics: dict, est) -> None:
    """metrics.json (merged with what it held) and the per-datapoint log p(x)."""
    from pyrovae.rundir.files import atomic_write, read_json, write_json
    from pyrovae.use.report import LOG_PX

    path = run_dir / "metrics.json"
    old = read_json(path) if path.exists() else {}
    write_json(path, {**old, **metrics})
    per_datapoint = est.per_datapoint.cpu().numpy()
    atomic_write(run_dir / LOG_PX, lambda f: np.save(f, per_datapoint))
    print(f"wrote {path} and {LOG_PX}")


def _ais(vae, x, est, args: argparse.Namespace, nats_per_bit: float, out) -> dict:
    """AIS beside the IS estimate: the metrics it replaces, and a warning if they disagree."""
    import math
    import time

    from pyrovae.inference.ais import annealed_importance_sampling

    start = time.perf_counter()
    chains = {"num_chains": args.ais_chains, "num_steps": args.ais_steps}
    ais = annealed_importance_sampling(
        vae.model, vae.guide, x, **chains, batch_size=args.batch_size
    )
    diff = ais.per_datapoint - est.per_datapoint
    diff_se = float(diff.double().std()) / math.sqrt(diff.numel())
    metrics = {
        "estimator": "ais",
        "test_nll_is": -est.mean,
        "test_nll_is_stderr": est.stderr,
        "test_nll": -ais.mean,
        "test_nll_stderr": ais.stderr,
        "test_nll_bits_per_dim": -ais.mean / nats_per_bit,
        "ais_chains": args.ais_chains,
        "ais_steps": args.ais_steps,
        "ais_seconds": time.perf_counter() - start,
    }
    out(
        f"NLL (AIS, {args.ais_chains} chains x {args.ais_steps} steps)  "
        f"{metrics['test_nll']:8.2f} +- {metrics['test_nll_stderr']:.2f} nats   "
        f"({metrics['test_nll_bits_per_dim']:.4f} bits/dim)"
    )
    if abs(float(diff.mean())) > 2 * diff_se:
        out(
            f"warning: the IS and AIS estimates differ by {float(diff.mean()):+.2f} +- "
            f"{diff_se:.2f} nats, more than their errors: trust the higher one (a "
            "stochastic lower bound) and treat the other as too low",
            file=sys.stderr,
        )
    return metrics


def _collapse_diagnostics(vae, x) -> dict:
    """Active units and KL per unit of each latent site, printed and for metrics.json."""
    from pyrovae.use.diagnostics import latent_units, summary

    units = latent_units(vae.model, vae.guide, x)
    for name, u in units.items():
        kl = "" if u.kl is None else f"; KL per unit {float(u.kl.sum()):.2f} nats in all"
        print(f"latent {name}: {u.active_units} of {u.variance.numel()} units active{kl}")
    return summary(units) if units else {}


def _sequence_metrics(vae, x, config: dict, data, nll: float, args) -> dict:
    """A sequence run's per-token NLL, perplexity and reconstruction accuracy, and for
    SMILES the MOSES metrics of ``--molecules`` samples from the prior; printed."""
    from pyrovae.data.sequences import Vocabulary
    from pyrovae.use import sequences

    vocabulary = Vocabulary.from_config(config["data"]["vocabulary"])
    metrics = sequences.per_token(nll, x)
    print(
        f"NLL per token {metrics['test_nll_per_token']:.4f} nats, perplexity "
        f"{metrics['test_perplexity']:.3f} ({sequences.token_count(x)} tokens, EOS included)"
    )
    import importlib.util

    smiles = vocabulary.molecules
    chemistry = smiles and importlib.util.find_spec("rdkit") is not None
    if chemistry:
        from pyrovae.use.molecules import canonical
    same = canonical if chemistry else None
    metrics["reconstruction_accuracy"] = sequences.reconstruction_accuracy(
        vae, x, vocabulary, same
    )
    print(
        f"reconstruction accuracy {metrics['reconstruction_accuracy']:.4f} (greedy decode of "
        f"the posterior mean equals the input{', canonical SMILES' if chemistry else ''})"
    )
    if smiles and args.molecules:
        metrics.update(_molecule_metrics(vae, vocabulary, x, data, args.molecules))
    return metrics


def _molecule_metrics(vae, vocabulary, x, data, n: int) -> dict:
    """The MOSES metrics of n prior samples against the training and held-out SMILES."""
    from pyrovae.use.molecules import molecule_metrics
    from pyrovae.use.sequences import sample_sequences

    if data is None:
        raise PyrovaeError(
            "--molecules needs the run's training SMILES for novelty; pass --dataset, or "
            "--molecules 0"
        )
    samples = sample_sequences(vae, n, vocabulary)
    found = molecule_metrics(samples, vocabulary.decode(data.train), vocabulary.decode(x))
    out = {f"molecules_{k}": v for k, v in found.as_dict().items()}
    print(
        "molecules ({n} prior samples): validity {validity:.4f}  uniqueness {unique:.4f}  "
        "novelty {novelty:.4f}  internal diversity {int_div:.4f}".format(**found.as_dict())
    )
    distances = "  ".join(f"{k} {v:.4f}" for k, v in found.distances.items())
    print(f"Wasserstein distances to the held-out molecules' properties: {distances}")
    return out


def _label_scores(vae, x, labels) -> dict:
    """The model's own scores against the held-out labels (M2, cluster VAE), printed."""
    from pyrovae.models.protocol import contract_of

    score = contract_of(vae).label_scores
    if labels is None or isinstance(x, dict) or score is None:
        return {}
    scores = score(x, labels.to(x.device))
    for name, value in scores.items():
        print(f"{name}: {value:.4f}")
    return scores


def _report(args: argparse.Namespace) -> None:
    from pyrovae.use.report import write_report

    print(f"wrote {write_report(args.run_dir, device=args.device, data_dir=args.data_dir)}")
