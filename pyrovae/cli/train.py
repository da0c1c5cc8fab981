"""``pyrovae train``: the training run (its flags: ``train_flags``; the config:
``run_config``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any

from pyrovae.cli.common import _barrier, _init_distributed
from pyrovae.cli.run_config import _config_from_args
from pyrovae.errors import PyrovaeError


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
        _say_how_it_ended(history, config["train"])
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
    if args.early_stopping is not None:
        raise PyrovaeError(
            "--early-stopping does not apply with --resume: a run keeps the early stopping "
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
    """``fit`` with the run's settings, writing ``folder``; the CLI's words for its errors
    and for a run that ran out of epochs while it still improved."""
    from pyrovae.errors import NonFiniteError, Preempted
    from pyrovae.training.stopping import StillImprovingWarning

    def tensorboard(state) -> None:
        if log_scalars is not None and state.end_of_epoch:
            log_scalars(state.history)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StillImprovingWarning)
            history = _run_fit(run, train, batch_size, folder, resume, tensorboard, args)
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
    for w in caught:
        if issubclass(w.category, StillImprovingWarning):
            if rank == 0:
                print(f"pyrovae train: warning: {w.message}; pass --epochs N", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return history


def _run_fit(run, train, batch_size, folder, resume, callback, args) -> dict:
    """``fit`` with the settings of the run's config."""
    from pyrovae.data.labels import with_labels
    from pyrovae.training import fit

    config = folder.config
    train_cfg = config["train"]
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
        validation=_validation(run.data, config, with_labels),
        callback=callback,
        beta=train_cfg["beta"],
        kl_warmup=train_cfg["kl_warmup"],
        kl_cycles=train_cfg["kl_cycles"],
        precision=train_cfg["precision"],
        checkpoint_every=train_cfg["checkpoint_every"],
        on_nan=train_cfg["on_nan"],
        resume=resume,
        missing=train_cfg["missing"],
        run_dir=folder,
        early_stopping=train_cfg["early_stopping"] or None,
    )


def _say_how_it_ended(history: dict, train_cfg: dict[str, Any]) -> None:
    """With early stopping: where the run stopped and why, and whose parameters it keeps."""
    from pyrovae.training.stopping import MONITORS

    if "best_epoch" not in history or not history["epoch"]:
        return
    last, best = history["epoch"][-1], history["best_epoch"][-1]
    monitor = next(k for k in MONITORS if k in history)
    value, name = history[monitor][best - 1], MONITORS[monitor]
    if last < train_cfg["epochs"]:
        print(
            f"stopped early at epoch {last} of {train_cfg['epochs']}: the {name} had not "
            f"improved for {train_cfg['early_stopping']} epochs; kept the parameters of "
            f"epoch {best} ({name} {value:.2f} nats)"
        )
    else:
        print(
            f"trained all {last} epochs; kept the parameters of epoch {best}, the best "
            f"{name} ({value:.2f} nats)"
        )


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
    """The held-out data whose ELBO each epoch records: all of them, or the first
    ``validation`` of the data's defaults (sequences: the validation ELBO is a curve to
    watch, and ``evaluate`` scores every held-out sequence)."""
    labels = getattr(data, "test_labels", None)
    test = data.test
    limit = _data_defaults(config).validation
    if limit is not None:
        test = test[:limit]
        labels = labels[:limit] if labels is not None else None
    return with_labels(test, labels, config["data"]["labels"])


def _data_defaults(config: dict[str, Any]) -> Any:
    """The defaults of the kind of data a run's config names."""
    from pyrovae.rundir.defaults import DATA_DEFAULTS, data_kind

    data = config["data"]
    return DATA_DEFAULTS[data_kind(data["dataset"], data["column"], config["train"]["missing"])]


def _budget(config: dict[str, Any]) -> None:
    """A new run's epochs and early stopping where the flags left them to the data: the
    epochs that make the data's budget of optimiser steps on this training split (so a
    smaller file is not trained less), and the patience its steps stand for."""
    from pyrovae.rundir.defaults import MIN_PATIENCE

    train_cfg, defaults = config["train"], _data_defaults(config)
    n_train, batch_size = config["data"]["n_train"], train_cfg["batch_size"] or 128
    if train_cfg["epochs"] is None:
        train_cfg["epochs"] = defaults.epochs(n_train, batch_size)
    patience = train_cfg["early_stopping"]
    if patience is None:
        patience = defaults.patience(n_train, batch_size) or 0
    elif patience == "auto":
        patience = defaults.patience(n_train, batch_size) or MIN_PATIENCE
    train_cfg["early_stopping"] = patience


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
