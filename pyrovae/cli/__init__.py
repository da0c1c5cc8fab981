"""The ``pyrovae`` command line: argparse subcommands over the registries.

This module parses arguments, looks names up in the registries and calls the library;
it holds no model logic. Every mistake in the input ends in one line on stderr and a
non-zero exit status (2 for malformed arguments, 1 for bad data, files or settings),
never a traceback, and never overwrites a good run folder. SIGTERM or SIGINT stops
``pyrovae train`` after saving the state of the step under way, with one line and the
status 128 + the signal's number.

One module per command group:

``common``
    What the groups share: the parser, argument types, run folders, output files.
``train``
    ``pyrovae train``: the training run.
``train_flags``
    ``pyrovae train``'s flags, and each kind of data's defaults at the end of its help.
``evaluate``
    ``pyrovae evaluate`` and ``pyrovae report``.
``use``
    ``pyrovae sample``, ``interpolate``, ``encode`` and ``score``.
``impute``
    ``pyrovae impute``, for images and for tables with missing entries.
``run_config``
    ``pyrovae train``'s flags, made into a new run's ``config.json``.
``flags``
    The library's parameters as flags, so that its errors name what to type.

This module holds the registry of commands, ``COMMANDS``, and :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pyrovae._version import __version__
from pyrovae.cli.common import EXIT_ERROR, _add_report, _Parser
from pyrovae.cli.design import _add_design, _design
from pyrovae.cli.evaluate import _add_evaluate, _evaluate, _report
from pyrovae.cli.flags import speller
from pyrovae.cli.impute import _add_impute, _impute
from pyrovae.cli.train import _train
from pyrovae.cli.train_flags import _add_train
from pyrovae.cli.use import (
    _add_classify,
    _add_cluster,
    _add_encode,
    _add_interpolate,
    _add_sample,
    _add_score,
    _classify,
    _cluster,
    _encode,
    _interpolate,
    _sample,
    _score,
)
from pyrovae.errors import Preempted, PyrovaeError

AddArguments = Callable[[argparse.ArgumentParser], None]
Command = tuple[str, AddArguments, Callable[[argparse.Namespace], None]]

COMMANDS: dict[str, Command] = {
    "train": ("train a VAE and write a run folder", _add_train, _train),
    "evaluate": (
        "estimate the held-out ELBO and log p(x) of a run, and its active latent units and "
        "KL per unit; writes RUN_DIR/metrics.json",
        _add_evaluate,
        _evaluate,
    ),
    "report": (
        "write RUN_DIR/report.html: config, curves, metrics, figures",
        _add_report,
        _report,
    ),
    "sample": (
        "draw from the prior: images into a PNG, tables to .npy, sequences to .smi or .txt",
        _add_sample,
        _sample,
    ),
    "design": (
        "search a SMILES run's latent space for molecules with a better property",
        _add_design,
        _design,
    ),
    "interpolate": (
        "interpolate between held-out inputs in latent space (a PNG; text for sequences)",
        _add_interpolate,
        _interpolate,
    ),
    "encode": ("write the latent means of a split to .npy (embeddings)", _add_encode, _encode),
    "score": (
        "write an anomaly score of each held-out datapoint to .npy (--method: -log p(x), "
        "the ELBO, reconstruction, complexity, LLR, a likelihood ratio)",
        _add_score,
        _score,
    ),
    "classify": (
        "write the classes q(y|x) gives the held-out data to .npy (a --labels run)",
        _add_classify,
        _classify,
    ),
    "cluster": (
        "write the clusters of the held-out data to .npy (a --clusters run)",
        _add_cluster,
        _cluster,
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command][2](args)
    except Preempted as err:  # SIGTERM or SIGINT: stopped cleanly, as the shell reports it
        if str(err):  # rank 0 only under torchrun
            print(f"pyrovae {args.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except PyrovaeError as err:  # in the flags' terms, not the library's parameters
        print(f"pyrovae {args.command}: error: {err.spelled(speller(parser))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"pyrovae {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_distributed()
    return 0


def _leave_distributed() -> None:
    """Leave the torchrun process group, so its threads stop before the process exits."""
    import gc

    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # The DDP wrapper sits in reference cycles (and in a Preempted traceback): freed
        # at interpreter exit, after the group, gloo's threads can abort the process.
        gc.collect()
        torch.distributed.destroy_process_group()
