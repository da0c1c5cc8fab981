"""The ``pyrovae`` command line: argparse subcommands over the registries.

This module parses arguments, looks names up in the registries and calls the library;
it holds no model logic. Every mistake in the input ends in one line on stderr and a
non-zero exit status (2 for malformed arguments, 1 for bad data, files or settings),
never a traceback, and never overwrites a good run folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyrovae import __version__
from pyrovae.errors import NonFiniteError, PyrovaeError

EXIT_USAGE = 2
EXIT_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what is wrong and where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(convert: Callable[[str], Any], low: float, strict: bool, what: str):
    """An argparse type: ``convert(text)``, which must be > low (strict) or >= low."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_int = _number(int, 0, True, "a positive integer")
_nonnegative_int = _number(int, 0, False, "an integer >= 0")
_positive_float = _number(float, 0, True, "a positive number")
_nonnegative_float = _number(float, 0, False, "a number >= 0")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 400 or 512,256; got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive integers, got {text!r}")
    return sizes


def _key_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as an int, a float, true/false, or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    value: Any = raw
    for convert in (int, float):
        try:
            value = convert(raw)
            break
        except ValueError:
            continue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key, value


_EXAMPLE_ARGS = {
    "prior": "num_components=20",
    "likelihood": "scale=decoder",
    "guide": "rank=10",
}


def _choice(registry: dict) -> dict[str, Any]:
    """argparse keywords for a name looked up in ``registry``."""
    return {"choices": sorted(registry), "metavar": "{" + ",".join(sorted(registry)) + "}"}


# ------------------------------------------------------------------------------ train
def _add_train(p: argparse.ArgumentParser) -> None:
    for add_group in (
        _add_data_options,
        _add_model_options,
        _add_training_options,
        _add_output_options,
    ):
        add_group(p)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    from pyrovae.datasets import BINARIZATIONS, DATASETS

    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="sample",
        help=f"one of {', '.join(sorted(DATASETS))}, or a .npy/.npz/.csv path; with "
        "--model, a .npz of named arrays (default: sample, the bundled 8,000/2,000 MNIST "
        "split)",
    )
    data.add_argument("--data-dir", help="folder with the torchvision files (no download)")
    data.add_argument(
        "--test-fraction",
        type=_number(float, 0, True, "a fraction between 0 and 1"),
        default=0.2,
        help="the last part of a .npy or .csv file held out for validation and evaluate "
        "(default 0.2); a .npz with x_train/x_test gives its own split",
    )
    data.add_argument(
        "--standardize",
        action="store_true",
        help="standardise each column by the mean and standard deviation of its observed "
        "training entries (stored in the run, undone on output)",
    )
    data.add_argument(
        "--binarize",
        default="auto",
        choices=["auto", *sorted(BINARIZATIONS)],
        metavar="{auto," + ",".join(sorted(BINARIZATIONS)) + "}",
        help="dynamic: fresh Bernoulli draw per minibatch; static: one seeded draw; "
        "none: values as they are; auto (default): what the likelihood models "
        "(dynamic for bernoulli, poisson, negative-binomial; none for the others)",
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from pyrovae.guides import GUIDES
    from pyrovae.likelihoods import LIKELIHOODS
    from pyrovae.nets import ACTIVATIONS, INITS, NETS
    from pyrovae.priors import PRIORS

    model = p.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="FILE.py:CLASS",
        help="train your own nn.Module with model and guide methods instead of the built-in "
        "VAE (also package.module:CLASS); --dataset is then a .npz whose arrays are passed "
        "to model and guide by name (NAME_train/NAME_test give the split, else the last 20%% "
        "is held out), and the VAE's own flags do not apply",
    )
    model.add_argument(
        "--model-arg",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument for --model, repeatable",
    )
    model.add_argument("--z-dim", type=_positive_int, help="latent size (default 50)")
    model.add_argument("--hidden", type=_sizes, help="hidden sizes, e.g. 512,256 (default 400)")
    model.add_argument("--prior", **_choice(PRIORS), help="prior p(z) (default standard)")
    model.add_argument(
        "--likelihood", **_choice(LIKELIHOODS), help="likelihood p(x|z) (default bernoulli)"
    )
    model.add_argument("--guide", **_choice(GUIDES), help="family of q(z|x) (default diagonal)")
    model.add_argument("--net", **_choice(NETS), help="encoder/decoder networks (default mlp)")
    for part in ("prior", "likelihood", "guide"):
        model.add_argument(
            f"--{part}-arg",
            type=_key_value,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"extra argument for the {part}, repeatable "
            f"(e.g. --{part}-arg {_EXAMPLE_ARGS[part]})",
        )
    model.add_argument("--activation", **_choice(ACTIVATIONS), help="(default relu)")
    model.add_argument(
        "--init", **_choice(INITS), help="initial weights of the networks (default: torch's)"
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    from pyrovae.objectives import LOSSES

    train = p.add_argument_group("training")
    train.add_argument(
        "--loss",
        **_choice(LOSSES),
        help="objective (default trace; with --model, Pyro's TraceEnum_ELBO when the guide "
        "enumerates, else trace)",
    )
    train.add_argument(
        "--num-particles",
        type=_positive_int,
        default=None,
        help="samples per datapoint in the loss (default: 1, or 5 for iwae)",
    )
    train.add_argument(
        "--beta", type=_nonnegative_float, default=1.0, help="weight of the KL term (default 1)"
    )
    train.add_argument(
        "--kl-warmup",
        type=_nonnegative_float,
        default=0.0,
        metavar="EPOCHS",
        help="raise the KL weight linearly from 0 to --beta over this many epochs",
    )
    train.add_argument(
        "--free-bits",
        type=_nonnegative_float,
        default=0.0,
        metavar="NATS",
        help="free bits per latent site (trace and meanfield losses)",
    )
    train.add_argument(
        "--epochs",
        type=_nonnegative_int,
        default=None,
        help="default 20; with --resume, the new total (default: the run's own)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=128, help="default 128")
    train.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam step (default 1e-3)")
    train.add_argument("--seed", type=int, default=0, help="default 0")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    train.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision: networks in bfloat16, densities in float32 (for GPUs)",
    )
    train.add_argument(
        "--missing",
        choices=["error", "mask"],
        default="error",
        help="NaNs and empty cells in the data: error (default), or mask: train on the "
        "observed entries only (MIWAE with --loss iwae)",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument("--out", default="runs/latest", help="run folder (default runs/latest)")
    out.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    out.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint, with its own settings "
        "(only --epochs, --device and --no-progress apply)",
    )
    out.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        metavar="STEPS",
        help="also checkpoint every STEPS steps within an epoch (default: every epoch)",
    )
    out.add_argument(
        "--on-nan",
        choices=["stop", "retry"],
        default="stop",
        help="a NaN or infinite loss or gradient: stop with an error (default), or go back "
        "to the last good checkpoint with half the learning rate (at most 3 times)",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the per-epoch history to RUN_DIR/tensorboard (needs the tensorboard "
        "package)",
    )


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PyrovaeError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PyrovaeError(
            f"--out {out} already holds files (a previous run?); choose another folder "
            "or pass --force to overwrite it"
        )


#: The built-in VAE's flags and their defaults; they do not apply to --model.
VAE_FLAGS: dict[str, Any] = {
    "z_dim": 50,
    "hidden": (400,),
    "prior": "standard",
    "likelihood": "bernoulli",
    "guide": "diagonal",
    "net": "mlp",
    "activation": "relu",
    "init": "default",
    "prior_arg": [],
    "likelihood_arg": [],
    "guide_arg": [],
}


def _model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The "model" part of a new run's config: the VAE's settings, or the user's class."""
    given = [k for k in VAE_FLAGS if getattr(args, k) not in (None, [])]
    if args.model:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise PyrovaeError(f"the built-in VAE's flags ({flags}) do not apply to --model")
        from pyrovae.usermodel import import_object

        import_object(args.model)  # fail now, before anything is written
        where, _, name = args.model.rpartition(":")
        source = f"{Path(where).resolve()}:{name}" if where.endswith(".py") else args.model
        return {"kind": "user", "source": source, "kwargs": dict(args.model_arg)}
    if args.model_arg:
        raise PyrovaeError("--model-arg applies to --model only")
    values = {
        k: getattr(args, k) if getattr(args, k) not in (None, []) else d
        for k, d in VAE_FLAGS.items()
    }
    return {
        "z_dim": values["z_dim"],
        "hidden": list(values["hidden"]),
        "prior": values["prior"],
        "likelihood": values["likelihood"],
        "guide": values["guide"],
        "net": values["net"],
        "activation": values["activation"],
        "prior_kwargs": dict(values["prior_arg"]),
        "likelihood_kwargs": dict(values["likelihood_arg"]),
        "guide_kwargs": dict(values["guide_arg"]),
        **({"init": values["init"]} if values["init"] != "default" else {}),
    }


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's config.json, from the command line of a new run."""
    model = _model_config(args)
    return {
        "pyrovae_version": __version__,
        "model": model,
        "data": {
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "binarize": args.binarize,
            "standardize": args.standardize,
            "test_fraction": args.test_fraction,
        },
        "train": {
            "epochs": 20 if args.epochs is None else args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "loss": args.loss or (None if model.get("kind") == "user" else "trace"),
            "num_particles": args.num_particles,
            "beta": args.beta,
            "kl_warmup": args.kl_warmup,
            "free_bits": args.free_bits,
            "seed": args.seed,
            "amp": args.amp,
            "checkpoint_every": args.checkpoint_every,
            "on_nan": args.on_nan,
            "missing": args.missing,
        },
    }


def _build_vae(config: dict[str, Any]):
    """Data and VAE of a run config; fills in what it derives."""
    from pyrovae.datasets import load_dataset
    from pyrovae.tables import standardize_dataset
    from pyrovae.vae import VAE

    data_cfg = config["data"]
    masked = config["train"].get("missing") == "mask"
    data = load_dataset(
        data_cfg["dataset"],
        data_cfg["data_dir"],
        allow_nan=masked,
        test_fraction=data_cfg.get("test_fraction", 0.2),
    )
    data = standardize_dataset(data, data_cfg)
    model_cfg = dict(config["model"], x_dim=data.x_dim, image_shape=data.image_shape)
    try:
        vae = VAE(**model_cfg)
    except TypeError as err:  # an argument a part does not take
        raise PyrovaeError(f"bad --prior-arg/--likelihood-arg/--guide-arg: {err}") from None
    if data_cfg["binarize"] == "auto":
        data_cfg["binarize"] = vae.likelihood.default_binarize
    config["model"] = vae.config
    return data, vae, vae.check_data


def _build_user(config: dict[str, Any]):
    """Named arrays and the user's model of a run config."""
    from pyrovae import usermodel

    data = usermodel.load_named_arrays(config["data"]["dataset"])
    model = usermodel.build(config["model"]["source"], config["model"]["kwargs"])
    if config["data"]["binarize"] == "auto":
        config["data"]["binarize"] = "none"
    return data, model, None


#: How each kind of model in a run config is built (see pyrovae.checkpoint.MODEL_KINDS).
BUILDERS = {"vae": _build_vae, "user": _build_user}


def _build(config: dict[str, Any]):
    """Data, model, loss and binarisation of a run config; fills in what it derives."""
    import torch

    from pyrovae.batches import Batch
    from pyrovae.checkpoint import model_kind
    from pyrovae.datasets import get_binarization
    from pyrovae.objectives import get_loss

    data_cfg, train_cfg = config["data"], config["train"]
    data, model, check = BUILDERS[model_kind(config)](config)
    loss = None
    if train_cfg["loss"] is not None:
        loss = get_loss(train_cfg["loss"], train_cfg["num_particles"], train_cfg["free_bits"])
        train_cfg["num_particles"] = loss.num_particles
    elif train_cfg["num_particles"] or train_cfg["free_bits"]:
        raise PyrovaeError("--num-particles and --free-bits need a --loss")
    binarization = get_binarization(data_cfg["binarize"])
    for split in (data.train, data.test):  # fail before anything is written
        first = Batch.of(split).first
        if train_cfg.get("missing") == "mask":
            first = torch.nan_to_num(first, nan=0.0)
        elif first.is_floating_point() and bool(torch.isnan(first).any()):
            raise PyrovaeError(
                f"{data_cfg['dataset']} has {int(torch.isnan(first).sum())} missing entries "
                "(NaN or empty cells); train on the observed entries with --missing mask, "
                "or remove them"
            )
        binarization.check(first)
        if check is not None:
            check(binarization.fixed(first, train_cfg["seed"]))
    data_cfg.update(n_train=len(Batch.of(data.train)), n_test=len(Batch.of(data.test)))
    return data, model, loss, binarization


def _resume_state(run: Path, vae, config: dict[str, Any], probe: Any):
    """The training state of the run's checkpoint, with its parameters loaded into vae."""
    from pyrovae.checkpoint import CHECKPOINT, load_checkpoint, restore_parameters
    from pyrovae.training import TrainState

    state = load_checkpoint(run / CHECKPOINT)
    if state.get("model_config") != config["model"]:
        raise PyrovaeError(
            f"{run / CHECKPOINT} was written for another model configuration than "
            f"{run / 'config.json'} describes; it cannot be resumed"
        )
    restore_parameters(vae, state, run, probe)
    try:
        return TrainState.from_dict(state["train_state"])
    except KeyError as err:
        raise PyrovaeError(f"{run / CHECKPOINT} does not match {run}: {err}") from None


def _train(args: argparse.Namespace) -> None:
    from pyrovae.checkpoint import CHECKPOINT, CONFIG, HISTORY, read_json, save_checkpoint
    from pyrovae.checkpoint import write_json as write
    from pyrovae.training import TrainState, fit, resolve_device
    from pyrovae.usermodel import store_params

    resolve_device(args.device)
    if args.resume:
        out = Path(args.resume)
        if not out.is_dir():
            raise PyrovaeError(f"--resume {out}: no such run folder")
        config = read_json(out / CONFIG)
        if args.epochs is not None:
            config["train"]["epochs"] = args.epochs
    else:
        out = Path(args.out)
        _check_out(out, args.force)
        config = _config_from_args(args)
    rank = _init_distributed(args.device)
    import pyro

    pyro.set_rng_seed(config["train"]["seed"])  # the initial parameters follow --seed too
    try:
        data, vae, loss, binarization = _build(config)
        train_cfg = config["train"]
        resume = _resume_state(out, vae, config, data.test) if args.resume else None
    except KeyError as err:
        raise PyrovaeError(f"{out / CONFIG} lacks the setting {err}; it is incomplete") from None
    if resume is not None and resume.epoch >= train_cfg["epochs"]:
        raise PyrovaeError(
            f"{out} has already trained for {resume.epoch} epoch"
            f"{'s' if resume.epoch != 1 else ''}; pass --epochs N with "
            f"N > {resume.epoch} to train further"
        )
    log_scalars = _tensorboard(out) if args.tensorboard and rank == 0 else None
    _barrier()  # every process has checked --out before the first one writes there
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write(out / CONFIG, config)

    user = config["model"].get("kind") == "user"

    def save(state) -> None:
        # The checkpoint first: history.json never runs ahead of what can be resumed.
        save_checkpoint(
            out / CHECKPOINT,
            {
                "pyrovae_version": __version__,
                "model_config": config["model"],
                "model_state": vae.state_dict(),
                "store_params": store_params(vae) if user else {},
                "train_state": state.to_dict(),
            },
        )
        write(out / HISTORY, state.history)
        if log_scalars is not None and state.end_of_epoch:
            log_scalars(state.history)

    try:
        history = fit(
            vae,
            data.train,
            epochs=train_cfg["epochs"],
            batch_size=train_cfg["batch_size"],
            lr=train_cfg["lr"],
            loss=loss,
            binarize=config["data"]["binarize"],
            device=args.device,
            seed=train_cfg["seed"],
            progress=not args.no_progress,
            validation=data.test,
            callback=save,
            beta=train_cfg["beta"],
            kl_warmup=train_cfg["kl_warmup"],
            amp=train_cfg["amp"],
            checkpoint_every=train_cfg.get("checkpoint_every"),
            on_nan=train_cfg.get("on_nan", "stop"),
            resume=resume,
            missing=train_cfg.get("missing", "error"),
        )
    except NonFiniteError as err:
        kept = (
            f"{out / CHECKPOINT} keeps the last good state"
            if (out / CHECKPOINT).exists()
            else "no checkpoint had been written yet"
        )
        raise PyrovaeError(f"{err}; {kept}") from None
    if rank > 0:
        return
    if not (out / CHECKPOINT).exists():  # --epochs 0: the untrained VAE
        save(TrainState(history=history))
    _figures(vae, data, out, train_cfg["seed"], binarization)
    from pyrovae.report import write_report

    write_report(out, device=args.device)
    written = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"wrote {out}/ ({written})")


def _tensorboard(out: Path):
    """A function that logs the last epoch of a history to TensorBoard under out."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PyrovaeError(
            "--tensorboard needs the tensorboard package: pip install tensorboard "
            "(or pip install 'pyrovae[tensorboard]')"
        ) from None
    writer: list = []

    def log(history: dict) -> None:
        if not writer:  # created at the first epoch, once the run folder exists
            writer.append(SummaryWriter(log_dir=str(out / "tensorboard")))
        epoch = history["epoch"][-1]
        for key, values in history.items():
            if key != "epoch" and values:
                writer[0].add_scalar(key, values[-1], epoch)
        writer[0].flush()

    return log


def _init_distributed(device: str) -> int:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); the rank."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    dist = torch.distributed
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank()


def _barrier() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _figures(vae, data, out: Path, seed: int, binarization) -> None:
    from pyrovae import plots

    if data.image_shape is None:
        print("no figures: the data are not images (no image_shape)", file=sys.stderr)
        return
    vae.eval()
    x = binarization.heldout(data.test[:16], seed)
    for name, fig in (
        ("reconstructions.png", plots.reconstructions(vae, x)),
        ("samples.png", plots.prior_samples(vae, 64, seed=seed)),
    ):
        fig.savefig(out / name, dpi=100)


# --------------------------------------------------------------------------- evaluate
def _add_run_data(p: argparse.ArgumentParser) -> None:
    """RUN_DIR and the options that pick which held-out data to use with it."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by pyrovae train")
    p.add_argument(
        "--dataset",
        help="held-out data to use (default: the run's own dataset and split); "
        "a dataset name or a .npy/.npz/.csv path, binarised as in training (impute fills "
        "every row of a table with missing entries)",
    )
    p.add_argument("--data-dir", help="folder with the torchvision files (no download)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")


def _load_run(args: argparse.Namespace, vae_only: bool = True):
    """The run's model and config, and its held-out data, binarised as in training."""
    from pyrovae.checkpoint import load_run

    run = load_run(args.run_dir, args.dataset, args.data_dir, args.device)
    if vae_only:
        _need_vae(run.vae, args)
    return run.vae, run.config, run.data, run.heldout


def _need_vae(model: Any, args: argparse.Namespace) -> None:
    """One-line error for commands that use a pyrovae VAE's encoder and decoder."""
    from pyrovae.vae import VAE

    if not isinstance(model, VAE):
        raise PyrovaeError(
            f"pyrovae {args.command} uses the encoder and decoder of a pyrovae VAE; "
            f"{args.run_dir} holds your own model ({type(model).__name__}): use evaluate, "
            "score or report, or pyrovae.load in Python"
        )


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


def _evaluate(args: argparse.Namespace) -> None:
    import math
    import time
    import warnings

    import pyro

    from pyrovae.ais import annealed_importance_sampling
    from pyrovae.batches import Batch
    from pyrovae.checkpoint import read_json, write_json
    from pyrovae.marginal import log_marginal_likelihood

    vae, config, data, x = _load_run(args, vae_only=False)
    pyro.set_rng_seed(args.seed)
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
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    seconds = time.perf_counter() - start
    first = Batch.of(x).first
    n, dims = first.shape[0], first[0].numel()
    nats_per_bit = math.log(2) * dims
    source = f"{n} held-out datapoints of {args.dataset or config['data']['dataset']}"
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
        "units": "nats per datapoint; test_elbo and test_nll are -ELBO and -log p(x), positive",
    }
    print(f"{source}, binarisation {config['data']['binarize']}, seed {args.seed}")
    print(f"held-out ELBO      {-metrics['test_elbo']:10.2f} nats")
    print(
        f"NLL (IS, K={args.num_samples})  {metrics['test_nll']:8.2f} +- "
        f"{metrics['test_nll_stderr']:.2f} nats   ({metrics['test_nll_bits_per_dim']:.4f} "
        f"bits/dim)   [{seconds:.1f} s]"
    )
    if args.estimator == "ais":
        start = time.perf_counter()
        ais = annealed_importance_sampling(
            vae.model,
            vae.guide,
            x,
            num_chains=args.ais_chains,
            num_steps=args.ais_steps,
            batch_size=args.batch_size,
        )
        diff = ais.per_datapoint - est.per_datapoint
        diff_se = float(diff.double().std()) / math.sqrt(diff.numel())
        metrics.update(
            estimator="ais",
            test_nll_is=metrics["test_nll"],
            test_nll_is_stderr=metrics["test_nll_stderr"],
            test_nll=-ais.mean,
            test_nll_stderr=ais.stderr,
            test_nll_bits_per_dim=-ais.mean / nats_per_bit,
            ais_chains=args.ais_chains,
            ais_steps=args.ais_steps,
            ais_seconds=time.perf_counter() - start,
        )
        print(
            f"NLL (AIS, {args.ais_chains} chains x {args.ais_steps} steps)  "
            f"{metrics['test_nll']:8.2f} +- {metrics['test_nll_stderr']:.2f} nats   "
            f"({metrics['test_nll_bits_per_dim']:.4f} bits/dim)"
        )
        if abs(float(diff.mean())) > 2 * diff_se:
            print(
                f"warning: the IS and AIS estimates differ by {float(diff.mean()):+.2f} +- "
                f"{diff_se:.2f} nats, more than their errors: trust the higher one (a "
                "stochastic lower bound) and treat the other as too low",
                file=sys.stderr,
            )
    path = Path(args.run_dir) / "metrics.json"
    old = read_json(path) if path.exists() else {}
    write_json(path, {**old, **metrics})
    from pyrovae.checkpoint import atomic_write
    from pyrovae.report import LOG_PX

    per_datapoint = est.per_datapoint.cpu().numpy()
    atomic_write(Path(args.run_dir) / LOG_PX, lambda f: np.save(f, per_datapoint))
    print(f"wrote {path} and {LOG_PX}")


# ------------------------------------------------------------------- using a run
def _save_png(fig, out: str) -> None:
    from pyrovae.checkpoint import atomic_write

    path = Path(out)
    if path.suffix.lower() != ".png":
        raise PyrovaeError(f"--out {out} must end in .png")
    if not path.parent.is_dir():
        raise PyrovaeError(f"--out {out}: folder {path.parent} does not exist")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    print(f"wrote {path}")


def _save_array(array, out: str) -> None:
    from pyrovae.checkpoint import atomic_write

    path = Path(out)
    if path.suffix != ".npy":
        raise PyrovaeError(f"--out {out} must end in .npy")
    if not path.parent.is_dir():
        raise PyrovaeError(f"--out {out}: folder {path.parent} does not exist")
    atomic_write(path, lambda f: np.save(f, array))
    print(f"wrote {path} {tuple(array.shape)}")


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by pyrovae train")
    p.add_argument("--data-dir", help="folder with the torchvision files (no download)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")


def _report(args: argparse.Namespace) -> None:
    from pyrovae.report import write_report

    print(f"wrote {write_report(args.run_dir, device=args.device, data_dir=args.data_dir)}")


def _add_sample(p: argparse.ArgumentParser) -> None:
    _add_report(p)
    p.add_argument("--n", type=_positive_int, default=64, help="how many samples (default 64)")
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument("--seed", type=int, default=0, help="default 0")


def _sample(args: argparse.Namespace) -> None:
    from pyrovae import plots
    from pyrovae.checkpoint import load
    from pyrovae.training import resolve_device

    vae = load(args.run_dir, device=resolve_device(args.device))
    _need_vae(vae, args)
    _save_png(plots.prior_samples(vae, args.n, seed=args.seed), args.out)


def _add_interpolate(p: argparse.ArgumentParser) -> None:
    _add_run_data(p)
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument(
        "--steps",
        type=_number(int, 1, True, "an integer >= 2"),
        default=10,
        help="images per row (default 10)",
    )
    p.add_argument(
        "--pairs",
        type=_positive_int,
        default=4,
        help="how many pairs of held-out inputs, one row each (default 4)",
    )


def _interpolate(args: argparse.Namespace) -> None:
    from pyrovae import plots

    vae, _, _, x = _load_run(args)
    pairs = [(2 * i, 2 * i + 1) for i in range(args.pairs)]
    _save_png(plots.interpolation(vae, x[: 2 * args.pairs], pairs, args.steps), args.out)


def _add_encode(p: argparse.ArgumentParser) -> None:
    _add_run_data(p)
    p.add_argument("--out", required=True, help="the .npy file to write, shape (N, z_dim)")
    p.add_argument(
        "--split",
        choices=["train", "test"],
        default="test",
        help="which split to encode (default test)",
    )


def _encode(args: argparse.Namespace) -> None:
    from pyrovae.applications import latent_means
    from pyrovae.datasets import get_binarization

    vae, config, data, x = _load_run(args)
    if args.split == "train":
        binarization = get_binarization(config["data"]["binarize"])
        x = binarization.heldout(data.train, config["train"]["seed"]).to(x.device)
    _save_array(latent_means(vae, x).cpu().numpy(), args.out)


def _add_score(p: argparse.ArgumentParser) -> None:
    _add_run_data(p)
    p.add_argument("--out", required=True, help="the .npy file to write, one score each")
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=1000,
        help="importance samples K (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the estimator (default 0)")


def _score(args: argparse.Namespace) -> None:
    import warnings

    import pyro

    from pyrovae.applications import anomaly_scores

    vae, _, _, x = _load_run(args, vae_only=False)
    pyro.set_rng_seed(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a poor proposal on unusual data is the point
        scores = anomaly_scores(vae.model, vae.guide, x, num_samples=args.num_samples)
    _save_array(scores.cpu().numpy(), args.out)


def _add_impute(p: argparse.ArgumentParser) -> None:
    from pyrovae.applications import MASKS

    _add_run_data(p)
    p.add_argument(
        "--out",
        required=True,
        help="the file to write: the filled data (.npy; for a table with missing entries, "
        ".npy or .csv, same rows in the same order)",
    )
    p.add_argument(
        "--mask",
        help=f"images: which pixels to hide and fill: {', '.join(MASKS)}, or a .npy file of "
        "booleans shaped like the data (default bottom-half); not for a --dataset with "
        "missing entries (NaN, empty cells), which are what gets filled",
    )
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=100,
        help="importance samples per datapoint (default 100)",
    )
    p.add_argument(
        "--multiple",
        type=_positive_int,
        metavar="M",
        help="tables: write M draws from p(x_missing | x_observed) instead of its mean "
        "(multiple imputation): a .npy of shape (M, N, D), or M files OUT_1.csv ...",
    )
    p.add_argument("--figure", help="also write a PNG of inputs, masked inputs and fills")
    p.add_argument("--seed", type=int, default=0, help="default 0")


def _read_table(path: str):
    """A table with NaN for missing entries (.csv or .npy), and its header."""
    from pyrovae.tables import check_table, read_csv

    if path.endswith(".csv"):
        return read_csv(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise PyrovaeError(f"{path}: expected a numeric table of shape (N, D)")
    values = values.astype(np.float64)
    check_table(values, path)
    return values, None


def _is_table_with_missing(dataset: str | None) -> bool:
    if dataset is None or not dataset.endswith((".csv", ".npy")) or not Path(dataset).is_file():
        return False
    return dataset.endswith(".csv") or bool(np.isnan(_read_table(dataset)[0]).any())


def _impute_table(args: argparse.Namespace) -> None:
    """Fill the missing entries of a whole table, in the run's units, rows in order."""
    import torch

    from pyrovae.checkpoint import CONFIG, load, read_json
    from pyrovae.missing import impute
    from pyrovae.tables import Standardizer, write_table
    from pyrovae.training import resolve_device

    if args.mask or args.figure:
        raise PyrovaeError(
            "--mask and --figure are for images; the missing entries of a table are filled"
        )
    if Path(args.out).suffix not in (".csv", ".npy"):
        raise PyrovaeError(f"--out {args.out} must end in .csv or .npy")
    config = read_json(Path(args.run_dir) / CONFIG)
    dev = resolve_device(args.device)
    model = load(args.run_dir, device=dev)
    values, header = _read_table(args.dataset)
    x = torch.from_numpy(values)
    stats = config["data"].get("standardizer")
    scaler = Standardizer.from_config(stats) if stats else None
    xs = (scaler.forward(x.float()) if scaler is not None else x).float()
    if hasattr(model, "check_data"):
        model.check_data(torch.nan_to_num(xs, nan=0.0))
    filled = impute(
        model.model,
        model.guide,
        xs.to(dev),
        num_samples=args.num_samples,
        multiple=args.multiple,
        seed=args.seed,
    ).cpu()
    out = (scaler.inverse(filled) if scaler is not None else filled).double()
    out = torch.where(torch.isnan(x), out, x).numpy()  # observed entries exactly as given
    path = Path(args.out)
    if args.multiple and path.suffix == ".csv":
        for m, table in enumerate(out, 1):
            write_table(path.with_name(f"{path.stem}_{m}.csv"), table, header)
        print(
            f"wrote {args.multiple} tables {path.stem}_1.csv ... {path.stem}_{args.multiple}.csv"
        )
        return
    write_table(path, out, header)
    print(f"wrote {path} {tuple(out.shape)}: {int(np.isnan(values).sum())} entries filled")


def _impute(args: argparse.Namespace) -> None:
    import pyro
    import torch

    from pyrovae import plots
    from pyrovae.applications import MASKS, impute

    if _is_table_with_missing(args.dataset):
        _impute_table(args)
        return
    if args.multiple:
        raise PyrovaeError("--multiple is for a --dataset with missing entries (NaN, empty cells)")
    args.mask = args.mask or "bottom-half"
    vae, _, data, x = _load_run(args)
    if args.mask in MASKS:
        if vae.image_shape is None:
            raise PyrovaeError(f"--mask {args.mask} needs image data; pass a .npy mask")
        missing = MASKS[args.mask](tuple(x.shape), vae.image_shape)
    else:
        try:
            missing = torch.from_numpy(np.load(args.mask, allow_pickle=False)).bool()
        except (OSError, ValueError) as err:
            raise PyrovaeError(f"cannot read --mask {args.mask}: {err}") from None
        if missing.shape != x.shape:
            raise PyrovaeError(
                f"--mask has shape {tuple(missing.shape)}; the data {tuple(x.shape)}"
            )
    missing = missing.to(x.device)
    pyro.set_rng_seed(args.seed)
    fill = data.train.mean(0).to(x.device)
    filled = impute(vae, x, missing, num_samples=args.num_samples, fill=fill)
    _save_array(filled.cpu().numpy(), args.out)
    if args.figure:
        n = min(8, x.shape[0])
        rows = torch.cat([x[:n], torch.where(missing[:n], 0.5, x[:n]), filled[:n]])
        fig = plots.image_rows(
            rows,
            vae.image_shape,
            n,
            "inputs / missing pixels in grey / imputed (mean of p(x_miss | x_obs))",
        )
        _save_png(fig, args.figure)


# ------------------------------------------------------------------------------ main
AddArguments = Callable[[argparse.ArgumentParser], None]
Command = tuple[str, AddArguments, Callable[[argparse.Namespace], None]]

COMMANDS: dict[str, Command] = {
    "train": ("train a VAE and write a run folder", _add_train, _train),
    "evaluate": (
        "estimate the held-out ELBO and log p(x) of a run; writes RUN_DIR/metrics.json",
        _add_evaluate,
        _evaluate,
    ),
    "report": (
        "write RUN_DIR/report.html: config, curves, metrics, figures",
        _add_report,
        _report,
    ),
    "sample": ("draw images from the prior into a PNG", _add_sample, _sample),
    "interpolate": (
        "interpolate between held-out inputs in latent space, into a PNG",
        _add_interpolate,
        _interpolate,
    ),
    "encode": ("write the latent means of a split to .npy (embeddings)", _add_encode, _encode),
    "score": (
        "write -log p(x) of each held-out datapoint to .npy (anomaly scores)",
        _add_score,
        _score,
    ),
    "impute": (
        "fill missing pixels of held-out data given the observed ones",
        _add_impute,
        _impute,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyrovae",
        description="Variational autoencoders written as Pyro models and guides.",
    )
    parser.add_argument("--version", action="version", version=f"pyrovae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyrovae`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command][2](args)
    except PyrovaeError as err:
        print(f"pyrovae {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"pyrovae {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
