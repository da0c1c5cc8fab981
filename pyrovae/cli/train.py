"""``pyrovae train``: its options and the training run (the config: ``run_config``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

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
from pyrovae.cli.run_config import _config_from_args
from pyrovae.errors import PyrovaeError

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
    from pyrovae.data.binarization import BINARIZATIONS
    from pyrovae.data.datasets import DATASETS
    from pyrovae.data.sequences import TOKENIZERS

    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="sample",
        help=f"one of {', '.join(sorted(DATASETS))}, or a .npy/.npz/.csv path; sequences: "
        "a .smi or .txt file (one per line) or a .csv with --column; with --model, a .npz "
        "of named arrays (default: sample, the bundled 8,000/2,000 MNIST split)",
    )
    data.add_argument(
        "--tokenizer",
        **_choice(TOKENIZERS),
        help="how sequences split into tokens (default: smiles for .smi files, moses and "
        "moses-sample, and a column named SMILES; words otherwise)",
    )
    data.add_argument(
        "--column", metavar="NAME", help="read the strings of this .csv column as sequences"
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
    from pyrovae.parts.guides import GUIDES
    from pyrovae.parts.likelihoods import LIKELIHOODS
    from pyrovae.parts.nets import ACTIVATIONS, INITS, NETS
    from pyrovae.parts.priors import CODE_PRIORS, PRIORS

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
        help="latent size (default 50; 10 with --clusters; 64 for sequences); several "
        "sizes, e.g. 32,16, "
        "for a hierarchical VAE with one stochastic layer each, z1 (next to x) first: "
        "p(z2) p(z1|z2) p(x|z1), q(z1|x) q(z2|z1) (Burda et al. 2016)",
    )
    model.add_argument(
        "--hidden",
        type=_sizes,
        help="hidden sizes, e.g. 512,256 (default 400; 500,500,2000 with --clusters); for "
        "sequences, the one size of the GRUs (default 128)",
    )
    model.add_argument(
        "--prior",
        **_choice({**PRIORS, **CODE_PRIORS}),
        help="prior p(z) (default standard; with --guide vq: codebook, uniform over its "
        "codes, or autoregressive, a GRU over them learnt with the rest)",
    )
    model.add_argument(
        "--likelihood",
        **_choice(LIKELIHOODS),
        help="likelihood p(x|z) (default bernoulli; autoregressive for sequences)",
    )
    model.add_argument("--guide", **_choice(GUIDES), help="family of q(z|x) (default diagonal)")
    model.add_argument(
        "--net",
        **_choice(NETS),
        help="encoder/decoder networks (default mlp; gru for sequences)",
    )
    model.add_argument(
        "--word-dropout",
        type=_number(float, 0, False, "a probability in [0, 1)"),
        default=None,
        metavar="P",
        help="sequences: replace each teacher-forced input token by <unk> with probability "
        "P while training, so the decoder must use z (Bowman et al. 2016; default 0)",
    )
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
    _add_variant_options(model)
    model.add_argument("--activation", **_choice(ACTIVATIONS), help="(default relu)")
    model.add_argument(
        "--init", **_choice(INITS), help="initial weights of the networks (default: torch's)"
    )


def _add_variant_options(model: argparse._ArgumentGroup) -> None:
    """The flags that make the built-in VAE one of its variants (in the model group)."""
    from pyrovae.parts.nets import CLASSIFIERS

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


def _add_kl_options(train: argparse._ArgumentGroup, seq: dict[str, Any]) -> None:
    """The flags of the KL term: its weight, warm-up, cycles and free bits."""
    train.add_argument(
        "--beta", type=_nonnegative_float, default=1.0, help="weight of the KL term (default 1)"
    )
    train.add_argument(
        "--kl-warmup",
        type=_nonnegative_float,
        default=None,
        metavar="EPOCHS",
        help="raise the KL weight linearly from 0 to --beta over this many epochs "
        "(default 0; 1 for sequences, unless --kl-cycles)",
    )
    train.add_argument(
        "--kl-cycles",
        type=_nonnegative_int,
        default=0,
        metavar="M",
        help="cyclical KL annealing (Fu et al. 2019): M cycles, each raising the KL weight "
        "from 0 to --beta over its first half (default 0: none)",
    )
    train.add_argument(
        "--free-bits",
        type=_nonnegative_float,
        default=None,
        metavar="NATS",
        help="free bits per latent site (trace and meanfield losses; default 0, "
        f"{seq['free_bits']:g} for sequences)",
    )
    train.add_argument(
        "--free-bits-per-unit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="share --free-bits out evenly over each latent site's units and hold up each "
        "unit's KL term on its own (default: off; on for sequences)",
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    from pyrovae.cli.run_config import SEQUENCE_STEPS, SEQUENCE_TRAINING
    from pyrovae.inference.objectives import LOSSES
    from pyrovae.inference.precision import PRECISIONS

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
    _add_kl_options(train, SEQUENCE_TRAINING)
    train.add_argument(
        "--epochs",
        type=_nonnegative_int,
        default=None,
        help=f"default 20 (40 with --clusters; sequences: as many as make {SEQUENCE_STEPS:,} "
        "optimiser steps); with --resume, the new total (default: the run's own)",
    )
    seq = SEQUENCE_TRAINING
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help=f"default 128 ({seq['batch_size']} for sequences)",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"Adam step (default 1e-3; {seq['lr']:g} for sequences)",
    )
    train.add_argument("--seed", type=int, default=0, help="default 0")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="auto (default): bfloat16 where the device multiplies it natively (CUDA with "
        "compute capability 8+, CPUs with avx512_bf16 or AMX), else float32, and float32 "
        "for --model and for sequences; bfloat16: networks in bfloat16, every density and "
        "the loss in float32. The choice made is recorded in config.json and kept on "
        "--resume",
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


def _train(args: argparse.Namespace) -> None:
    """pyrovae train: a new run from the flags, or ``--resume`` of a run folder."""
    import pyro

    from pyrovae.inference.precision import resolve_precision
    from pyrovae.models.protocol import contract_of
    from pyrovae.rundir.build import new_run
    from pyrovae.rundir.folder import RunFolder
    from pyrovae.training import resolve_device

    device = resolve_device(args.device)
    out, config = _run_config(args)
    rank = _init_distributed(args.device)
    pyro.set_rng_seed(config["train"]["seed"])  # the initial parameters follow --seed too
    try:
        run = new_run(config, out if args.resume else None)
        train, batch_size = _training_data(run.data, config, device)  # before anything is written
        _budget(config)
    except KeyError as err:
        raise PyrovaeError(
            f"{out / 'config.json'} lacks the setting {err}; it is incomplete"
        ) from None
    train_cfg = config["train"]
    train_cfg["precision"] = resolve_precision(
        train_cfg["precision"], device, contract_of(run.model).mixed_precision_safe
    )
    folder = RunFolder(out, config, run.model)
    resume = _resume(folder, run.data) if args.resume else None
    log_scalars = _tensorboard(out) if args.tensorboard and rank == 0 else None
    _barrier()  # every process has checked --out before the first one writes there
    with contextlib.ExitStack() as held:
        if rank == 0:  # the lock before anything is written; the config first
            held.enter_context(folder.open(args.force, resume=resume is not None))
        history = _fit(run, train, batch_size, folder, resume, log_scalars, args, rank)
        if rank > 0:
            return
        _finish(folder, run, history, args)


def _run_config(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The run folder and its config: a new run's from the flags, or the one to resume."""
    from pyrovae.rundir.folder import RunFolder, read_config
    from pyrovae.rundir.lock import check_free

    if not args.resume:
        RunFolder.check_target(args.out, args.force)
        return Path(args.out), _config_from_args(args)
    out = Path(args.resume)
    if not out.is_dir():
        raise PyrovaeError(f"--resume {out}: no such run folder")
    check_free(out)  # before anything else: not while another process trains there
    config = read_config(out)
    if args.precision or args.amp:
        raise PyrovaeError(
            "--precision does not apply with --resume: a run keeps the precision "
            f"recorded in {out / 'config.json'}"
        )
    if args.epochs is not None:
        config["train"]["epochs"] = args.epochs
    return out, config


def _resume(folder: Any, data: Any) -> Any:
    """The training state of the run's checkpoint, its parameters loaded into the model."""
    from pyrovae.training import TrainState

    state = TrainState.from_dict(folder.resume(data.test))
    epochs = folder.config["train"]["epochs"]
    if state.epoch >= epochs:
        raise PyrovaeError(
            f"{folder.path} has already trained for {state.epoch} epoch"
            f"{'s' if state.epoch != 1 else ''}; pass --epochs N with "
            f"N > {state.epoch} to train further"
        )
    return state


def _fit(run, train, batch_size, folder, resume, log_scalars, args, rank: int) -> dict:
    """``fit`` with the run's settings, writing ``folder``; the CLI's words for its errors."""
    from pyrovae.data.labels import with_labels
    from pyrovae.errors import NonFiniteError, Preempted
    from pyrovae.training import fit

    config = folder.config
    train_cfg, data = config["train"], run.data

    def tensorboard(state) -> None:
        if log_scalars is not None and state.end_of_epoch:
            log_scalars(state.history)

    try:
        return fit(
            run.model,
            train,
            epochs=train_cfg["epochs"],
            batch_size=batch_size,
            lr=train_cfg["lr"],
            loss=run.loss,
            binarize=config["data"]["binarize"],
            device=args.device,
            seed=train_cfg["seed"],
            progress=not args.no_progress,
            validation=_validation(data, config, with_labels),
            callback=tensorboard,
            beta=train_cfg["beta"],
            kl_warmup=train_cfg["kl_warmup"],
            kl_cycles=train_cfg["kl_cycles"],
            precision=train_cfg["precision"],
            checkpoint_every=train_cfg["checkpoint_every"],
            on_nan=train_cfg["on_nan"],
            resume=resume,
            missing=train_cfg["missing"],
            run_dir=folder,
        )
    except NonFiniteError as err:
        out = folder.path
        kept = (
            f"{out / 'checkpoint.pt'} keeps the last good state"
            if (out / "checkpoint.pt").exists()
            else "no checkpoint had been written yet"
        )
        raise PyrovaeError(*err.parts, f"; {kept}") from None
    except Preempted as err:  # the callback has saved the state of that step
        message = (
            f"{err}; the state is saved in {folder.path / 'checkpoint.pt'}: continue with "
            f"pyrovae train --resume {folder.path}"
        )
        raise Preempted(message if rank == 0 else "", err.signum, err.epoch, err.step) from None


def _finish(folder: Any, run: Any, history: dict, args: argparse.Namespace) -> None:
    """A run's last files: the untrained checkpoint of --epochs 0, figures, the report."""
    from pyrovae.training import TrainState
    from pyrovae.use.report import write_report

    out = folder.path
    if not (out / "checkpoint.pt").exists():  # --epochs 0: the untrained model
        folder.save(TrainState(history=history))
    _figures(run.model, run.data, out, folder.config["train"]["seed"], run.binarization)
    write_report(out, device=args.device)
    folder.close()  # the lock goes before the listing
    written = ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()))
    print(f"wrote {out}/ ({written})")


def _validation(data, config: dict[str, Any], with_labels) -> Any:
    """The held-out data whose ELBO each epoch records: all of them; for sequences, the
    first SEQUENCE_VALIDATION (the validation ELBO is a curve to watch, and
    ``evaluate`` scores every held-out sequence)."""
    from pyrovae.cli.run_config import SEQUENCE_VALIDATION

    labels = getattr(data, "test_labels", None)
    test = data.test
    if config["data"].get("vocabulary") is not None:
        test = test[:SEQUENCE_VALIDATION]
        labels = labels[:SEQUENCE_VALIDATION] if labels is not None else None
    return with_labels(test, labels, config["data"]["labels"])


def _budget(config: dict[str, Any]) -> None:
    """A new run on sequences without --epochs: as many epochs as the default budget of
    optimiser steps takes on this dataset (so a smaller file is not trained less)."""
    from pyrovae.cli.run_config import SEQUENCE_STEPS

    train_cfg = config["train"]
    if train_cfg["epochs"] is None:
        per_epoch = -(-config["data"]["n_train"] // (train_cfg["batch_size"] or 128))
        train_cfg["epochs"] = max(1, round(SEQUENCE_STEPS / per_epoch))


def _training_data(data, config: dict[str, Any], device) -> tuple[Any, int | None]:
    """The training data as the programs take them, and the batch size fit is given.

    M2 (--labels N) trains on a stream of unlabelled and labelled minibatches, which
    carry their own batch size; its tensors are placed on the training device once, so
    that no minibatch is copied there.
    """
    import torch

    from pyrovae.data.labels import SemiSupervisedBatches, balanced_labels, with_labels

    data_cfg, train_cfg = config["data"], config["train"]
    use, labels = data_cfg["labels"], getattr(data, "train_labels", None)
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
    from pyrovae.use import plots

    if data.image_shape is None:
        print(
            "no image figures (the data are not images); report.html shows the run",
            file=sys.stderr,
        )
        return
    vae.eval()
    x = binarization.heldout(data.test[:16], seed)
    y = data.test_labels[:16] if getattr(vae, "num_classes", None) else None
    for name, fig in (
        ("reconstructions.png", plots.reconstructions(vae, x, y)),
        ("samples.png", plots.prior_samples(vae, 64, seed=seed)),
    ):
        fig.savefig(out / name, dpi=100)
