"""``fit(..., run_dir=...)``: a run from Python written as ``pyrovae train`` writes one.

:func:`run_folder` makes the :class:`~pyrovae.rundir.folder.RunFolder` of a run from
``fit``'s own arguments: the model's config (a pyrovae VAE's, or a user's class by
import path with its ``config``), the data by name when they came from
:func:`pyrovae.load_dataset` (else the held-out data kept in the folder), and the
training settings. :func:`opened` holds the folder for the run: its lock, its config
written first, a checkpoint at every hand-over, and ``resume=True`` read from it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyro.infer import ELBO

from pyrovae._version import __version__
from pyrovae.data.batches import Batch
from pyrovae.data.datasets import DATASETS, DataSplit
from pyrovae.data.devices import resolve_device
from pyrovae.data.labels import with_labels
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.precision import resolve_precision
from pyrovae.models.protocol import Contract
from pyrovae.models.vae import VAE
from pyrovae.rundir.config import FORMAT_VERSION
from pyrovae.rundir.folder import RunFolder
from pyrovae.training import distributed
from pyrovae.training.setup import Settings
from pyrovae.training.state import Callback, TrainState


def run_folder(
    run_dir: str | Path | RunFolder | None,
    contract: Contract,
    data: Any,
    validation: Any,
    settings: Settings,
    resume: TrainState | bool | None,
) -> tuple[RunFolder | None, Any, Any]:
    """The run folder of a ``fit`` call, with the data it trains and validates on.

    Data loaded by :func:`pyrovae.load_dataset` train on their training split and, unless
    ``validation`` is given, validate on their held-out one.
    """
    if resume is True and run_dir is None:
        raise PyrovaeError(Param("resume", True), " continues the run in ", Param("run_dir"))
    split = data if isinstance(data, DataSplit) else None
    if split is not None:
        use = _label_use(contract)
        data = with_labels(split.train, split.train_labels, use)
        if validation is None:
            validation = with_labels(split.test, split.test_labels, use)
    if run_dir is None or isinstance(run_dir, RunFolder):
        return run_dir, data, validation
    config = fit_config(contract, split, settings)
    heldout = None if split is not None else validation
    return RunFolder(run_dir, config, contract.owner, heldout), data, validation


def _label_use(contract: Contract) -> str | None:
    """How a model takes a dataset's labels: as the condition of a conditional VAE."""
    if contract.discrete_latent is not None:
        raise PyrovaeError(
            f"a model with the discrete latent {contract.discrete_latent!r} trains on its own "
            "batches (pyrovae.data.labels.SemiSupervisedBatches), not on a dataset's splits; "
            "pass those, and the held-out data as ",
            Param("validation"),
        )
    return "condition" if getattr(contract.owner, "num_classes", None) else None


def fit_config(contract: Contract, split: DataSplit | None, settings: Settings) -> dict:
    """The ``config.json`` of a run trained from Python (:mod:`pyrovae.rundir.config`)."""
    return {
        "format_version": FORMAT_VERSION,
        "pyrovae_version": __version__,
        "model": _model_config(contract),
        "data": _data_config(contract, split, settings),
        "train": _train_config(contract, settings),
        "files": {},
    }


def _model_config(contract: Contract) -> dict[str, Any]:
    """A pyrovae VAE's config, or a user's class by import path and its ``config``."""
    owner = contract.owner
    if isinstance(owner, VAE):
        return {"kind": "vae", **owner.config}
    cls = type(owner)
    kwargs = contract.config if contract.config is not None else {}
    try:
        source = f"{Path(inspect.getfile(cls)).resolve()}:{cls.__qualname__}"
        inspect.signature(cls).bind(**kwargs)
    except (TypeError, OSError):
        source = None
    if owner is None or source is None or "." in cls.__qualname__ or "<" in source:
        raise PyrovaeError(
            "a run folder rebuilds its model from a config: pass a pyrovae VAE, or an "
            "nn.Module class defined at the top of a file, whose config attribute holds "
            "its constructor's arguments; not a (model, guide) pair (leave ",
            Param("run_dir"),
            " out)",
        )
    return {"kind": "user", "source": source, "kwargs": dict(kwargs)}


def _data_config(contract: Contract, split: DataSplit | None, settings: Settings) -> dict:
    """The dataset by name (``load_dataset``'s), or none: the folder keeps held-out data."""
    named = split is not None and _loadable(split.name)
    vocabulary = split.vocabulary if named else None
    return {
        "dataset": split.name if named else None,
        "data_dir": split.data_dir if named else None,
        "test_fraction": split.test_fraction if named else None,
        "binarize": settings.binarize,
        "standardize": False,
        "standardizer": None,
        "labels": _label_use(contract) if named else None,
        "tokenizer": vocabulary.tokenizer if vocabulary is not None else None,
        "column": split.column if named else None,
        "vocabulary": vocabulary.to_config() if vocabulary is not None else None,
        "n_train": len(Batch.of(split.train)) if named else None,
        "n_test": len(Batch.of(split.test)) if named else None,
    }


def _loadable(name: str) -> bool:
    """Whether ``load_dataset`` reads the dataset ``name`` again: a name, or a file."""
    return name in DATASETS or Path(name).is_file()


def _train_config(contract: Contract, settings: Settings) -> dict:
    """The training settings; an ELBO given as an object is recorded as none (by name
    only: ``fit``'s default on resume from the command line)."""
    loss = settings.loss
    named = isinstance(loss, str)
    device = resolve_device(settings.device)
    return {
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "loss": loss if named else None,
        "num_particles": None if named or loss is None else getattr(loss, "num_particles", None),
        "beta": settings.beta,
        "kl_warmup": settings.kl_warmup,
        "kl_cycles": settings.kl_cycles,
        "free_bits": getattr(loss, "free_bits", 0.0) if isinstance(loss, ELBO) else 0.0,
        "free_bits_per_unit": getattr(loss, "per_unit", False)
        if isinstance(loss, ELBO)
        else False,
        "seed": settings.seed,
        "precision": resolve_precision(settings.precision, device, contract.mixed_precision_safe),
        "checkpoint_every": settings.checkpoint_every,
        "on_nan": settings.on_nan,
        "missing": settings.missing,
        "early_stopping": settings.early_stopping.patience if settings.early_stopping else 0,
    }


@contextlib.contextmanager
def opened(
    folder: RunFolder | None, force: bool, resume: TrainState | bool | None
) -> Iterator[tuple[TrainState | None, list[Callback]]]:
    """Hold ``folder`` for the run: the state to resume from, and the callback that writes.

    Rank 0 alone takes the lock and writes; every process reads the state to resume.
    A folder the caller opened already is used as it is, and left open.
    """
    if folder is None:
        yield (resume if isinstance(resume, TrainState) else None), []
        return
    state = resume
    if resume is True:
        state = TrainState.from_dict(folder.resume())
    rank = distributed.world()[0]
    with contextlib.ExitStack() as stack:
        if rank == 0 and not folder.is_open:
            stack.enter_context(folder.open(force, resume=state is not None))
        yield state, ([folder.save] if rank == 0 else [])
