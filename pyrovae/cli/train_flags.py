"""``pyrovae train``'s flags: the data, the model, training and output, and the list of
each kind of data's defaults at the end of its help."""

from __future__ import annotations

import argparse
from typing import Any

from pyrovae.cli.common import (
    _choice,
    _key_value,
    _nonnegative_float,
    _nonnegative_int,
    _number,
    _positive_float,
    _positive_int,
    _sizes,
)

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
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _defaults_epilog()


#: What each kind of data is, for the help's list of defaults.
_KINDS = {
    "images": "images (sample, mnist, .npy/.npz)",
    "table": "a table (.csv)",
    "incomplete-table": "a table with --missing mask",
    "sequences": "sequences (.smi, .txt, --column, moses)",
}


def _defaults_epilog() -> str:
    """The defaults of each kind of data (``DATA_DEFAULTS``), as the flags they stand for."""
    from pyrovae.rundir.defaults import DATA_DEFAULTS, MIN_PATIENCE

    lines = ["defaults by kind of data (a flag given always wins):"]
    for kind, defaults in DATA_DEFAULTS.items():
        flags = [_as_flag(k, v) for k, v in {**defaults.model, **defaults.training}.items()]
        flags += [f"--likelihood-arg {k}={v}" for k, v in defaults.likelihood_kwargs.items()]
        if defaults.steps:
            flags.append(f"--epochs: as many as make {defaults.steps:,} optimiser steps")
        if defaults.patience_steps:
            flags.append(
                f"--early-stopping: after {defaults.patience_steps:,} steps without "
                f"improvement (at least {MIN_PATIENCE} epochs)"
            )
        if defaults.validation:
            flags.append(f"the first {defaults.validation:,} held-out rows validated")
        lines += _packed(f"{_KINDS[kind]}: ", flags or ["the flags' own defaults"])
    return "\n".join(lines)


def _packed(head: str, items: list[str], width: int = 96) -> list[str]:
    """``items`` joined by "; " into lines of at most ``width``, never split inside one."""
    lines, line = [], "  " + head
    for i, item in enumerate(items):
        text = item + (";" if i < len(items) - 1 else "")
        if len(line) + 1 + len(text) > width and line.strip():
            lines.append(line)
            line = "     "
        line += ("" if line.endswith((": ", "     ")) else " ") + text
    return [*lines, line]


def _as_flag(name: str, value: Any) -> str:
    """A setting as the flag that sets it: ``--hidden 128,128``, ``--free-bits-per-unit``."""
    flag = "--" + {"posterior": "guide"}.get(name, name).replace("_", "-")
    if value is True:
        return flag
    if isinstance(value, tuple | list):
        value = ",".join(str(v) for v in value)
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


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
        help="latent size (default 50; 10 with --clusters; 4 with --conditional; the data's: "
        "see below); several "
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


def _add_kl_options(train: argparse._ArgumentGroup) -> None:
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
        help="free bits per latent site (trace and meanfield losses; default 0; the data's: "
        "see below)",
    )
    train.add_argument(
        "--free-bits-per-unit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="share --free-bits out evenly over each latent site's units and hold up each "
        "unit's KL term on its own (default: off; the data's: see below)",
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    from pyrovae.inference.objectives import LOSSES
    from pyrovae.inference.precision import PRECISIONS

    train = p.add_argument_group("training")
    train.add_argument(
        "--loss",
        **_choice(LOSSES),
        help="objective (default trace, or the data's: see below; with --model, Pyro's "
        "TraceEnum_ELBO when the guide enumerates, else trace)",
    )
    train.add_argument(
        "--num-particles",
        type=_positive_int,
        default=None,
        help="samples per datapoint in the loss (default: 1, or 5 for iwae)",
    )
    _add_kl_options(train)
    train.add_argument(
        "--epochs",
        type=_nonnegative_int,
        default=None,
        help="default 20 (40 with --clusters; tables and sequences: a budget of optimiser "
        "steps, see below); with --resume, the new total (default: the run's own)",
    )
    train.add_argument(
        "--early-stopping",
        nargs="?",
        const="auto",
        type=_positive_int,
        default=None,
        metavar="PATIENCE",
        help="stop when the held-out objective (the ELBO; the IWAE bound with --loss iwae) "
        "has not improved for PATIENCE epochs and keep the "
        "best epoch's parameters (default: on for tables, see below; off otherwise)",
    )
    train.add_argument(
        "--no-early-stopping",
        dest="early_stopping",
        action="store_const",
        const=0,
        help="train for all the epochs, whatever the held-out objective does",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="default 128 (the data's: see below)",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="Adam step (default 1e-3; the data's: see below)",
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
