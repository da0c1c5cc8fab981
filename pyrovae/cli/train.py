"""``pyrovae train``: its options and the training run (the config: ``run_config``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from pyrovae import __version__
from pyrovae.cli.common import (
    _barrier,
    _choice,
    _init_distributed,
    _key_value,
    _nonnegative_float,
    _nonnegative_int,
    _number,
    _positive_float,
    _positive_int,
    _sizes,
)
from pyrovae.cli.run_config import _config_from_args, _resolved_precision
from pyrovae.errors import NonFiniteError, Preempted, PyrovaeError

_EXAMPLE_ARGS = {
    "prior": "num_components=20",
    "likelihood": "scale=decoder",
    "guide": "rank=10",
}


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
    from pyrovae.semisupervised import CLASSIFIERS

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
    model.add_argument(
        "--z-dim",
        type=_sizes,
        help="latent size (default 50; 10 with --clusters); several sizes, e.g. 32,16, "
        "for a hierarchical VAE with one stochastic layer each, z1 (next to x) first: "
        "p(z2) p(z1|z2) p(x|z1), q(z1|x) q(z2|z1) (Burda et al. 2016)",
    )
    model.add_argument(
        "--hidden",
        type=_sizes,
        help="hidden sizes, e.g. 512,256 (default 400; 500,500,2000 with --clusters)",
    )
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
    model.add_argument(
        "--conditional",
        action="store_const",
        const=True,
        default=None,
        help="a conditional VAE: p(x | z, y) and q(z | x, y) on the dataset's class labels y "
        "(mlp networks); then pyrovae sample --label K draws class K and evaluate reports "
        "log p(x | y)",
    )
    model.add_argument(
        "--labels",
        type=_positive_int,
        metavar="N",
        help="the semi-supervised VAE M2 (Kingma et al. 2014): keep the labels of N training "
        "datapoints (N/K per class, seeded), y ~ Cat in the model, q(y|x) in the guide, "
        "y summed out where unlabelled; then evaluate reports test_accuracy and pyrovae "
        "classify writes q(y|x)'s classes",
    )
    model.add_argument(
        "--classifier",
        **_choice({"auto": None, **CLASSIFIERS}),
        help="with --labels: the network of q(y|x): conv (small CNN with dropout), mlp, or "
        "auto (default): conv for images, mlp for tables",
    )
    model.add_argument(
        "--clusters",
        type=_positive_int,
        metavar="K",
        help="a discrete cluster latent: c ~ Cat(pi), z ~ N(mu_c, sigma_c), c summed out "
        "exactly, the mixture fitted to the encoder's means after 20 epochs (VaDE); then "
        "pyrovae cluster writes each datapoint's cluster",
    )
    model.add_argument(
        "--cluster-weights",
        choices=("uniform", "learnt"),
        help="with --clusters: pi, the clusters' weights: uniform (default) or learnt",
    )
    model.add_argument("--activation", **_choice(ACTIVATIONS), help="(default relu)")
    model.add_argument(
        "--init", **_choice(INITS), help="initial weights of the networks (default: torch's)"
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    from pyrovae.objectives import LOSSES
    from pyrovae.precision import PRECISIONS

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
        help="default 20 (40 with --clusters); with --resume, the new total (default: the "
        "run's own)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=128, help="default 128")
    train.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam step (default 1e-3)")
    train.add_argument("--seed", type=int, default=0, help="default 0")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="auto (default): bfloat16 where the device multiplies it natively (CUDA with "
        "compute capability 8+, CPUs with avx512_bf16 or AMX), else float32, and float32 "
        "for --model; bfloat16: networks in bfloat16, every density and the loss in "
        "float32. The choice made is recorded in config.json and kept on --resume",
    )
    train.add_argument(
        "--amp",
        action="store_true",
        help="deprecated: the same as --precision bfloat16",
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
    from pyrovae.runlock import check_free

    if out.exists() and not out.is_dir():
        raise PyrovaeError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        check_free(out)  # a run under way is never overwritten, --force or not
    _check_empty(out, force)


def _check_empty(out: Path, force: bool) -> None:
    from pyrovae.runlock import LOCK

    if out.is_dir() and not force and any(p.name != LOCK for p in out.iterdir()):
        raise PyrovaeError(
            f"--out {out} already holds files (a previous run?); choose another folder "
            "or pass --force to overwrite it"
        )


#: The built-in VAE's flags and their defaults; they do not apply to --model.
def _build_vae(config: dict[str, Any]):
    """Data and VAE of a run config; fills in what it derives."""
    from pyrovae.datasets import load_dataset, num_classes
    from pyrovae.tables import standardize_dataset
    from pyrovae.variants import build_vae

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
    if data_cfg.get("labels") is not None:  # every use of labels tells the model K
        model_cfg["num_classes"] = num_classes(data)
    try:
        vae = build_vae(**model_cfg)
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
    """pyrovae train; the run folder's lock (rank 0's) is released however it ends."""
    with contextlib.ExitStack() as locks:
        _train_run(args, locks)


def _train_run(args: argparse.Namespace, locks: contextlib.ExitStack) -> None:
    from pyrovae.checkpoint import CHECKPOINT, CONFIG, HISTORY, read_json, save_checkpoint
    from pyrovae.checkpoint import write_json as write
    from pyrovae.datasets import with_labels
    from pyrovae.runlock import RunLock, check_free
    from pyrovae.training import TrainState, fit, resolve_device
    from pyrovae.usermodel import store_params

    device = resolve_device(args.device)
    if args.resume:
        out = Path(args.resume)
        if not out.is_dir():
            raise PyrovaeError(f"--resume {out}: no such run folder")
        check_free(out)  # before anything else: not while another process trains there
        config = read_json(out / CONFIG)
        if args.precision or args.amp:
            raise PyrovaeError(
                "--precision does not apply with --resume: a run keeps the precision "
                f"recorded in {out / CONFIG}"
            )
        if args.epochs is not None:
            config["train"]["epochs"] = args.epochs
    else:
        out = Path(args.out)
        _check_out(out, args.force)
        config = _config_from_args(args)
    config["train"]["precision"] = _resolved_precision(config, device)
    rank = _init_distributed(args.device)
    import pyro

    pyro.set_rng_seed(config["train"]["seed"])  # the initial parameters follow --seed too
    try:
        data, vae, loss, binarization = _build(config)
        train, batch_size = _training_data(data, config, device)  # before anything is written
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
        locks.enter_context(RunLock(out))  # before anything is written there
        if not args.resume:
            _check_empty(out, args.force)  # no other run came in since _check_out
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

    use = config["data"].get("labels")  # the labels as the programs' input, if at all
    try:
        history = fit(
            vae,
            train,
            epochs=train_cfg["epochs"],
            batch_size=batch_size,
            lr=train_cfg["lr"],
            loss=loss,
            binarize=config["data"]["binarize"],
            device=args.device,
            seed=train_cfg["seed"],
            progress=not args.no_progress,
            validation=with_labels(data.test, getattr(data, "test_labels", None), use),
            callback=save,
            beta=train_cfg["beta"],
            kl_warmup=train_cfg["kl_warmup"],
            precision=train_cfg["precision"],
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
    except Preempted as err:  # the callback has saved the state of that step
        message = (
            f"{err}; the state is saved in {out / CHECKPOINT}: continue with "
            f"pyrovae train --resume {out}"
        )
        raise Preempted(message if rank == 0 else "", err.signum, err.epoch, err.step) from None
    if rank > 0:
        return
    if not (out / CHECKPOINT).exists():  # --epochs 0: the untrained VAE
        save(TrainState(history=history))
    _figures(vae, data, out, train_cfg["seed"], binarization)
    from pyrovae.report import write_report

    write_report(out, device=args.device)
    locks.close()  # the lock goes before the listing
    written = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"wrote {out}/ ({written})")


def _training_data(data, config: dict[str, Any], device) -> tuple[Any, int | None]:
    """The training data as the programs take them, and the batch size fit is given.

    M2 (--labels N) trains on a stream of unlabelled and labelled minibatches, which
    carry their own batch size; its tensors are placed on the training device once, so
    that no minibatch is copied there.
    """
    import torch

    from pyrovae.datasets import with_labels
    from pyrovae.semisupervised import SemiSupervisedBatches, balanced_labels

    data_cfg, train_cfg = config["data"], config["train"]
    use, labels = data_cfg.get("labels"), getattr(data, "train_labels", None)
    if use != "semi-supervised":
        return with_labels(data.train, labels, use), train_cfg["batch_size"]
    if labels is None:
        raise PyrovaeError(f"--labels needs a dataset with labels; {data_cfg['dataset']} has none")
    keep = torch.zeros(len(labels), dtype=torch.bool)
    keep[balanced_labels(labels, data_cfg["labelled"], train_cfg["seed"])] = True
    batches = SemiSupervisedBatches(
        data.train[~keep].to(device),
        data.train[keep].to(device),
        labels[keep].to(device),
        batch_size=train_cfg["batch_size"] or 128,
        seed=train_cfg["seed"],
    )
    return batches, None


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


def _figures(vae, data, out: Path, seed: int, binarization) -> None:
    from pyrovae import plots

    if data.image_shape is None:
        print("no figures: the data are not images (no image_shape)", file=sys.stderr)
        return
    vae.eval()
    x = binarization.heldout(data.test[:16], seed)
    y = data.test_labels[:16] if getattr(vae, "num_classes", None) else None
    for name, fig in (
        ("reconstructions.png", plots.reconstructions(vae, x, y)),
        ("samples.png", plots.prior_samples(vae, 64, seed=seed)),
    ):
        fig.savefig(out / name, dpi=100)
