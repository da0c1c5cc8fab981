"""``fit``: maximise the ELBO of a model/guide pair with ``pyro.infer.SVI``.

``fit`` accepts a :class:`~pyrovae.VAE` (anything with ``model`` and ``guide``
methods) or a user's own ``(model, guide)`` pair, called with the minibatch's arguments
(``model(x)``, ``model(*batch)``, ``model(**batch)``: see :mod:`pyrovae.batches`). The
loop below reads like Pyro's own SVI loop; the policies around it live in their own
modules: the data (:mod:`~pyrovae.training.feeding`), checkpoints and retries
(:mod:`~pyrovae.training.state`), distribution (:mod:`~pyrovae.training.distributed`).

The history reports everything per datapoint, in nats:

``epoch``, ``steps``, ``seconds``
    Counters and wall time of the epoch.
``train_elbo``
    Mean of minus the SVI loss over the epoch's minibatches (with dynamic binarisation,
    on the freshly drawn binary images the steps saw): the ELBO, or whatever objective
    the loss and KL weight make of it (the IWAE bound, a beta-weighted ELBO, ...).
``kl_weight``
    The weight of the KL term at the end of the epoch (``beta`` times the warm-up).
``val_elbo``, ``val_log_likelihood``, ``val_kl``
    When ``validation`` data are given: the one-sample ELBO of each held-out datapoint,
    and its two terms E_q[log p(x|z)] and KL(q(z|x) || p(z)), averaged.
``lr``
    The learning rate the epoch ran with (a Pyro LR scheduler steps after it; a retry
    after a non-finite step halves it).

Everything a run needs to continue exactly where it stopped is a :class:`TrainState`:
``fit`` hands one to ``callback`` after every epoch (and every ``checkpoint_every``
steps, and when SIGTERM or SIGINT stops it: :mod:`~pyrovae.training.preemption`), and
takes one back as ``resume``. Resuming replays nothing: the epoch's order of
the data is recomputed from the seed and the epoch, the random number generators, the
optimiser state and the partial sums of the epoch are restored, so on the CPU a resumed
run takes bit for bit the steps the uninterrupted run takes.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, NamedTuple

import pyro
import pyro.optim
import torch
from pyro.infer import ELBO, TraceEnum_ELBO
from tqdm.auto import tqdm

from pyrovae.datasets import get_binarization
from pyrovae.errors import NonFiniteError, Preempted, PyrovaeError
from pyrovae.marginal import caller_level, elbo_terms, max_plate_nesting
from pyrovae.missing import MISSING, as_masked
from pyrovae.objectives import LatentScale, Trace_ELBO, get_loss
from pyrovae.precision import for_precision, mixed_precision_safe, resolve_precision
from pyrovae.programs import has_enumerated_sites, owner_modules
from pyrovae.svi import FastSVI
from pyrovae.training import distributed, preemption
from pyrovae.training.devices import resolve_device
from pyrovae.training.feeding import Minibatches, validation_data
from pyrovae.training.state import Callback, GoodState, History, TrainState, set_rng_state

HISTORY_KEYS = ("epoch", "steps", "seconds", "train_elbo", "kl_weight", "lr")
VALIDATION_KEYS = ("val_elbo", "val_log_likelihood", "val_kl")
#: The values ``on_nan`` may take (stop with an error, or go back to the last good state).
ON_NAN = ("stop", "retry")
#: Steps between checks of the gradients for NaN and infinity (the loss: every step on
#: the CPU).
NAN_CHECK_EVERY = 50
#: When a Pyro LR scheduler steps.
SCHEDULER_STEPS = ("epoch", "step")


def _model_and_guide(obj: Any) -> tuple[Any, Any]:
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return obj[0], obj[1]
    if callable(getattr(obj, "model", None)) and callable(getattr(obj, "guide", None)):
        return obj.model, obj.guide
    raise PyrovaeError(
        "fit needs a VAE (an object with model and guide methods) or a (model, guide) pair"
    )


def _check_settings(epochs: Any, batch_size: Any, lr: float, **settings: Any) -> None:
    """One-line errors for settings out of range, before anything runs."""
    if not isinstance(epochs, int) or epochs < 0:
        raise PyrovaeError(f"epochs must be a non-negative integer, got {epochs}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise PyrovaeError(f"batch_size must be a positive integer, got {batch_size}")
    if not lr > 0:
        raise PyrovaeError(f"lr must be positive, got {lr}")
    beta, warmup = settings["beta"], settings["kl_warmup"]
    if not beta >= 0 or not warmup >= 0:
        raise PyrovaeError(f"beta and kl_warmup must be >= 0, got {beta} and {warmup}")
    choices = {"on_nan": ON_NAN, "scheduler_step": SCHEDULER_STEPS, "missing": MISSING}
    for key, allowed in choices.items():
        if settings[key] not in allowed:
            raise PyrovaeError(
                f"unknown {key} {settings[key]!r}; choose one of: {', '.join(allowed)}"
            )
    every = settings["checkpoint_every"]
    if every is not None and (not isinstance(every, int) or every < 1):
        raise PyrovaeError(f"checkpoint_every must be a positive integer, got {every}")


def _loss(loss: ELBO | str | None, model: Any, guide: Any, batches: Minibatches) -> ELBO:
    """The objective: by name, as given, or Trace_ELBO (TraceEnum_ELBO to enumerate).

    Programs that mark sites for enumeration (in the guide, or in the model as a
    cluster VAE declares with ``enumerates_in_model``) need ``TraceEnum_ELBO``: any
    other objective would sample those sites instead, so it is refused.
    """
    probe = batches.data.first_batch().to(batches.device)
    in_model = any(getattr(m, "enumerates_in_model", False) for m in owner_modules(model))
    enumerates = in_model or has_enumerated_sites(guide, probe)
    if loss is None and enumerates:
        nesting = max_plate_nesting(model, guide, *probe.args, **probe.kwargs)
        return TraceEnum_ELBO(max_plate_nesting=nesting, strict_enumeration_warning=False)
    if loss is None:
        return Trace_ELBO()
    loss = get_loss(loss) if isinstance(loss, str) else loss
    if enumerates and not isinstance(loss, TraceEnum_ELBO):
        raise PyrovaeError(
            f"the model or guide marks discrete sites for enumeration, which "
            f"{type(loss).__name__} would sample instead of summing out; leave loss out "
            "(fit then picks TraceEnum_ELBO) or pass a TraceEnum_ELBO"
        )
    return loss


def _validate(model: Any, guide: Any, data: Any, batch_size: int, plate: str | None) -> dict:
    terms = elbo_terms(model, guide, data, batch_size=batch_size, plate=plate)
    return {
        "val_elbo": float(terms.elbo.mean()),
        "val_log_likelihood": float(terms.log_likelihood.mean()),
        "val_kl": float(terms.kl.mean()),
    }


@preemption.stops_on_signals
def fit(
    vae_or_model_guide: Any,
    data: Any,
    *,
    epochs: int = 20,
    batch_size: int | None = None,
    lr: float = 1e-3,
    loss: ELBO | str | None = None,
    optim: pyro.optim.PyroOptim | None = None,
    binarize: str = "dynamic",
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    validation: Any = None,
    callback: Callback | None = None,
    eval_batch_size: int = 1000,
    beta: float = 1.0,
    kl_warmup: float = 0.0,
    precision: str = "auto",
    amp: bool | None = None,
    checkpoint_every: int | None = None,
    resume: TrainState | None = None,
    on_nan: str = "stop",
    max_retries: int = 3,
    nan_check_every: int | None = None,
    plate: str | None = None,
    scheduler_step: str = "epoch",
    missing: str = "error",
    handle_signals: bool = True,
) -> History:
    """Train a model/guide pair by stochastic variational inference.

    Parameters
    ----------
    vae_or_model_guide
        A :class:`~pyrovae.VAE`, an object with ``model`` and ``guide`` methods, or a
        ``(model, guide)`` pair of Pyro programs whose per-datapoint sites lie under one
        plate over the minibatch (any name). An object with an
        ``end_of_epoch(epoch, data)`` method (the cluster VAE) has it called with the
        number of the epoch just finished and ``data`` as given, after the epoch's last
        step and before validation and ``callback``, so that what it changes is
        validated and checkpointed.
    data
        Training data in any form of :mod:`pyrovae.batches`: a tensor or array
        (``model(x)``; uint8 is read as grey levels and divided by 255), a tuple or dict
        of tensors (``model(*batch)``, ``model(**batch)``), a Dataset, or a re-iterable
        of batches used as given (told each epoch's number first through its
        ``set_epoch``, if it has one).
    epochs, batch_size, lr
        Passes over the data, minibatch size (indexable data; 128 by default), Adam
        learning rate (when ``optim`` is not given).
    loss
        A Pyro ELBO instance or a name from ``pyrovae.objectives.LOSSES``. By default
        :class:`pyrovae.objectives.Trace_ELBO` (Pyro's with a fast path), or Pyro's
        ``TraceEnum_ELBO`` when the guide marks sites for enumeration or the model's
        owner declares ``enumerates_in_model`` (the cluster VAE). For such programs any
        other ELBO, which would sample those sites, is refused.
    optim
        A Pyro optimiser (``pyro.optim.Adam({"lr": lr})`` by default). A Pyro LR
        scheduler steps once per epoch (``scheduler_step="step"``: every step);
        ``ReduceLROnPlateau`` is given the epoch's mean training loss. Gradient
        clipping (``clip_args``) and ``ClippedAdam``'s decay are honoured.
    binarize
        ``"dynamic"`` (a fresh Bernoulli draw per minibatch), ``"static"`` (one seeded
        draw) or ``"none"``; applies to the first tensor of the data only. Validation
        data get one seeded draw when binarising.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    seed
        Seeds Pyro, torch and the binarisation.
    progress
        Show a progress bar and print one line per epoch.
    validation
        Held-out data (any form) for the per-epoch validation ELBO, or ``None``. The
        networks run in ``eval()`` mode for it.
    callback
        ``callback(state)`` with a :class:`TrainState` after every epoch, every
        ``checkpoint_every`` steps and when a signal stops training (``handle_signals``);
        ``False`` stops training. This is where checkpoints are written.
    eval_batch_size
        Datapoints per pass when evaluating the validation ELBO.
    beta
        Weight of the KL term (beta-VAE; 1 is the ELBO). Applied with
        :class:`~pyrovae.objectives.LatentScale` on the latent sites of model and guide.
    kl_warmup
        Epochs over which the KL weight rises linearly from 0 to ``beta``, step by step
        (0: no warm-up). The validation ELBO is always the unweighted ELBO.
    precision
        ``"auto"``, ``"float32"`` or ``"bfloat16"``: mixed precision, the networks in
        bfloat16 under ``torch.autocast`` while every density and the loss stay in
        float32 (see :mod:`pyrovae.precision`). ``"auto"`` is bfloat16 where the device
        multiplies it natively and the object trained has ``mixed_precision_safe =
        True`` (a :class:`~pyrovae.VAE`), float32 otherwise (a ``(model, guide)``
        pair, whose own code builds its distributions). Validation always runs in
        float32.
    amp
        Deprecated: ``amp=True`` is ``precision="bfloat16"``, ``amp=False`` is
        ``precision="float32"``.
    checkpoint_every
        Also call ``callback`` every this many steps within an epoch (None: only at the
        end of each epoch).
    resume
        A :class:`TrainState` to continue from (the parameters themselves must already
        be those saved with it).
    on_nan
        What a NaN or infinite loss or gradient does: ``"stop"`` raises
        :class:`~pyrovae.errors.NonFiniteError` naming the epoch and step;
        ``"retry"`` goes back to the last state handed to ``callback`` (or the start),
        halves the learning rate and carries on, at most ``max_retries`` times.
    nan_check_every
        Check the loss and every gradient every this many steps and before every
        state handed to ``callback`` (default 50: the check reads every gradient, a
        fifth of a small step's time on the CPU, and is a host sync on a GPU). On the
        CPU the loss alone is also checked at every step, for free. A step found bad
        is never applied; a non-finite gradient under a finite loss on an unchecked
        step shows up as a non-finite loss one step later.
    plate
        Name of the per-datapoint plate for the validation ELBO (found when None).
    scheduler_step
        When a Pyro LR scheduler steps: ``"epoch"`` (as Pyro's examples do) or ``"step"``.
    missing
        NaNs in the data: ``"error"`` refuses them; ``"mask"`` trains on the observed
        entries (MIWAE): the first tensor reaches the program zero-filled, with a
        ``mask`` keyword argument, True where observed (see :mod:`pyrovae.missing`).
    handle_signals
        Stop cleanly on SIGTERM and SIGINT (in the main thread): after the step under
        way, the state of that moment goes to ``callback`` (as ``checkpoint_every``
        takes it) and :class:`~pyrovae.errors.Preempted` is raised, so the run
        continues with ``resume``; a second SIGINT interrupts at once. False leaves the
        signals' handlers alone (see :mod:`pyrovae.training.preemption`).

    Returns
    -------
    dict
        The history: a list per key, one entry per epoch (see the module docstring).

    Raises
    ------
    Preempted
        On SIGTERM or SIGINT, once ``callback`` has the state to resume from.

    Notes
    -----
    Under ``torch.distributed`` (for example launched by ``torchrun``), each process
    takes its share of every global minibatch of ``batch_size``, gradients are averaged
    by ``DistributedDataParallel``, and every process ends with the same parameters;
    ``callback`` and progress run on rank 0 only. A signal to any process stops them all
    at the same step.
    """
    _check_settings(
        epochs,
        batch_size,
        lr,
        beta=beta,
        kl_warmup=kl_warmup,
        on_nan=on_nan,
        scheduler_step=scheduler_step,
        checkpoint_every=checkpoint_every,
        missing=missing,
    )
    model, guide, dev, batches, val, svi, kl_weight = _prepare(
        vae_or_model_guide,
        data,
        validation,
        batch_size=batch_size,
        loss=loss,
        optim=optim or pyro.optim.Adam({"lr": lr}),
        binarize=binarize,
        device=device,
        seed=seed,
        precision=_from_amp(amp, precision),
        beta=beta,
        kl_warmup=kl_warmup,
        missing=missing,
    )
    rank = distributed.world()[0]
    warmup_steps = kl_warmup * (batches.steps or 0)
    nan_check_every = nan_check_every or NAN_CHECK_EVERY
    check_loss = dev.type == "cpu"  # a host sync, free on the CPU
    keys = HISTORY_KEYS + (VALIDATION_KEYS if val is not None else ())
    good = GoodState(svi, dev)
    state = good.snapshot(_start(resume, keys, svi, dev), keep_params=False)
    show = progress and rank == 0
    bar = tqdm(total=epochs, initial=state.epoch, desc="epochs", unit="epoch", disable=not show)
    while state.epoch < epochs:
        signum = distributed.max_over_processes(preemption.pending(), dev)
        if signum:  # before the first step or between epochs: the state of the boundary
            bar.close()
            fresh = resume is None and state.global_step == 0  # no callback has had it
            raise _preempted(signum, state, batches.steps, callback if fresh else None, good, dev)
        total = state.epoch_loss.to(dev)
        start = time.perf_counter() - state.epoch_seconds
        stopped = False
        try:
            for batch in batches.epoch(state.epoch, state.step):
                if warmup_steps:
                    kl_weight.scale = beta * min(1.0, (state.global_step + 1) / warmup_steps)
                checked = (state.global_step + 1) % nan_check_every == 0 or _hands_over(
                    state.step + 1, batches.steps, checkpoint_every
                )
                step_loss = svi.step_tensor(
                    *batch.args, check_finite=checked, check_loss=check_loss, **batch.kwargs
                )
                total = total + step_loss
                state.step, state.global_step = state.step + 1, state.global_step + 1
                state.epoch_datapoints += len(batch)
                if scheduler_step == "step":
                    svi.scheduler_step(step_loss)
                if batches.steps is not None and state.step >= batches.steps:
                    continue  # the epoch's last step: the epoch's end takes over
                signum = distributed.max_over_processes(preemption.pending(), dev)
                if signum:  # the state of this step, as checkpoint_every takes it
                    _pause(state, total, start)
                    bar.close()
                    raise _preempted(signum, state, batches.steps, callback, good, dev)
                if checkpoint_every and state.step % checkpoint_every == 0:
                    _pause(state, total, start)
                    stopped = distributed.should_stop(callback, good.snapshot(state), dev)
                    if stopped:
                        break
        except NonFiniteError as err:
            if on_nan == "stop" or state.retries >= max_retries:
                raise _stopped(err, state, batches.steps) from None
            if show:
                bar.write(
                    f"{_where(state, batches.steps)}: {err}; back to the last good "
                    "state with half the learning rate"
                )
            state = good.restore(state.retries + 1, 0.5 * svi.lr)
            continue
        if stopped:  # by the callback, mid-epoch
            break
        batches.steps = state.step
        _end_of_epoch_hook(vae_or_model_guide, state.epoch + 1, data)
        record = _record(state, total, batches.size, start, kl_weight.scale, svi.lr)
        if val is not None:
            record.update(_validate(model, guide, val, eval_batch_size, plate))
        if scheduler_step == "epoch":
            svi.scheduler_step(-record["train_elbo"])
        _end_epoch(state, record, keys, total)
        bar.update(1)
        if show:
            bar.write(_epoch_line(record, epochs))
        if distributed.should_stop(callback, good.snapshot(state), dev):
            break
    bar.close()
    distributed.barrier()
    return state.history


class _Run(NamedTuple):
    """What a training run is made of, once its settings are resolved (:func:`_prepare`)."""

    model: Any
    guide: Any
    dev: torch.device
    batches: Minibatches
    val: Any
    svi: FastSVI
    kl_weight: LatentScale


def _prepare(
    vae_or_model_guide: Any,
    data: Any,
    validation: Any,
    *,
    batch_size: int | None,
    loss: ELBO | str | None,
    optim: Any,
    binarize: str,
    device: str | torch.device,
    seed: int,
    precision: str,
    beta: float,
    kl_warmup: float,
    missing: str,
) -> _Run:
    """The programs, device, data, objective and SVI of a run, each checked."""
    model, guide = _model_and_guide(vae_or_model_guide)
    rank, world = distributed.world()
    dev = distributed.process_device(resolve_device(device), rank, world)
    precision = resolve_precision(precision, dev, mixed_precision_safe(vae_or_model_guide))
    binarization = get_binarization(binarize)
    pyro.set_rng_seed(seed)
    check = getattr(vae_or_model_guide, "check_data", None)
    for module in _owners(vae_or_model_guide, model, guide):
        module.to(dev)
    if missing == "mask":
        data = as_masked(data, "training data")
        validation = as_masked(validation, "validation data") if validation is not None else None
    batches = Minibatches(data, batch_size, binarization, seed, dev, check)
    val = validation_data(validation, binarization, seed, dev, check)
    kl_weight = LatentScale(beta)
    svi = _svi(
        vae_or_model_guide,
        model,
        guide,
        _loss(loss, model, guide, batches),
        optim,
        precision=precision,
        kl_weight=kl_weight if beta != 1 or kl_warmup > 0 else None,
        batches=batches,
        dev=dev,
        seed=seed,
    )
    if kl_warmup and not batches.steps:
        raise PyrovaeError(
            "kl_warmup counts epochs in steps, but the iterable of batches has no length; "
            "give it a __len__ or pass indexable data"
        )
    return _Run(model, guide, dev, batches, val, svi, kl_weight)


def _svi(
    owner: Any,
    model: Any,
    guide: Any,
    loss: ELBO,
    optim: Any,
    *,
    precision: str,
    kl_weight: LatentScale | None,
    batches: Minibatches,
    dev: torch.device,
    seed: int,
) -> FastSVI:
    """The SVI of the training steps: the programs at ``precision``, KL-weighted, and
    under ``torch.distributed`` the loss as a DDP module and each process's own noise."""
    step_model, step_guide = (for_precision(p, precision, dev) for p in (model, guide))
    if kl_weight is not None:
        step_model, step_guide = kl_weight(step_model), kl_weight(step_guide)
    ddp = distributed.loss_module(owner, loss, step_model, step_guide, dev, batches.batch_size)
    rank, world = distributed.world()
    if world > 1:
        pyro.set_rng_seed(seed + rank)  # own noise per process; the order is shared
    return FastSVI(step_model, step_guide, optim, loss, ddp, float(world))


def _start(resume: TrainState | None, keys: tuple, svi: FastSVI, dev: torch.device):
    """A fresh state, or ``resume`` with the optimiser, scheduler and generators restored."""
    if resume is None:
        return TrainState(history={k: [] for k in keys})
    svi.load_optim_state(resume.optim_state)
    svi.load_scheduler_state(resume.scheduler_state)
    if resume.rng is not None:
        set_rng_state(resume.rng, dev)
    return resume


def _pause(state: TrainState, total: torch.Tensor, start: float) -> None:
    """Make ``state`` the state of this step within the epoch (to hand to the callback)."""
    state.epoch_loss, state.end_of_epoch = total.detach(), False
    state.epoch_seconds = time.perf_counter() - start


def _record(
    state: TrainState,
    total: torch.Tensor,
    size: int | None,
    start: float,
    kl_weight: float,
    lr: float,
) -> dict:
    """The history's entries for the epoch just ended (one host sync: the loss)."""
    return {
        "epoch": state.epoch + 1,
        "steps": state.step,
        "train_elbo": -float(distributed.all_reduce(total)) / (size or state.epoch_datapoints),
        "seconds": time.perf_counter() - start,
        "kl_weight": kl_weight,
        "lr": lr,
    }


def _end_of_epoch_hook(owner: Any, epoch: int, data: Any) -> None:
    """``owner.end_of_epoch(epoch, data)``, where the trained object has one (the cluster
    VAE sets its mixture there once)."""
    hook = getattr(owner, "end_of_epoch", None)
    if hook is not None:
        hook(epoch, data)


def _end_epoch(state: TrainState, record: dict, keys: tuple, total: torch.Tensor) -> None:
    """Append ``record`` to the history and move ``state`` to the next epoch's start."""
    for key in keys:
        state.history.setdefault(key, []).append(record[key])
    state.epoch, state.step, state.epoch_datapoints = state.epoch + 1, 0, 0
    state.epoch_loss, state.epoch_seconds, state.end_of_epoch = total.new_zeros(()), 0.0, True


def _hands_over(step: int, steps: int | None, checkpoint_every: int | None) -> bool:
    """Whether the state after ``step`` goes to the callback (so it must be checked)."""
    return step == steps or bool(checkpoint_every and step % checkpoint_every == 0)


def _preempted(
    signum: int,
    state: TrainState,
    steps: int | None,
    callback: Callback | None,
    good: GoodState,
    dev: torch.device,
) -> Preempted:
    """Hand ``state`` to the callback (when given one); the exception that stops training."""
    if callback is not None:
        distributed.should_stop(callback, good.snapshot(state), dev)
    distributed.barrier()  # as at a normal end: every process stops at this step
    of = f" of {steps}" if steps else ""
    where = f"epoch {state.epoch + 1}, step {state.step}{of}"
    if not state.step:
        where = f"the start of epoch {state.epoch + 1}"
    return Preempted(
        f"stopped by {preemption.signal_name(signum)} at {where}",
        signum,
        state.epoch + 1,
        state.step,
    )


def _from_amp(amp: bool | None, precision: str) -> str:
    """The precision meant by the deprecated ``amp`` flag, if it was passed."""
    if amp is None:
        return precision
    if precision != "auto":
        raise PyrovaeError("pass precision or the deprecated amp, not both")
    warnings.warn(
        f"amp is deprecated; pass precision={'bfloat16' if amp else 'float32'!r}",
        FutureWarning,
        stacklevel=caller_level(),
    )
    return "bfloat16" if amp else "float32"


def _owners(obj: Any, model: Any, guide: Any) -> list:
    from pyrovae.programs import owner_modules

    return owner_modules(obj, model, guide)


def _where(state: TrainState, steps: int | None) -> str:
    of = f" of {steps}" if steps else ""
    return f"non-finite step at epoch {state.epoch + 1}, step {state.step + 1}{of}"


def _stopped(err: NonFiniteError, state: TrainState, steps: int | None) -> NonFiniteError:
    of = f" of {steps}" if steps else ""
    tried = f" after {state.retries} retries" if state.retries else ""
    return NonFiniteError(
        f"training stopped at epoch {state.epoch + 1}, step {state.step + 1}{of}{tried}: "
        f"{err}; lower the learning rate or let it retry (on_nan='retry', --on-nan retry)",
        state.epoch + 1,
        state.step + 1,
    )


def _epoch_line(record: dict, epochs: int) -> str:
    line = f"epoch {record['epoch']}/{epochs}  train ELBO {record['train_elbo']:.2f}"
    if "val_elbo" in record:
        line += f"  val ELBO {record['val_elbo']:.2f}"
    return line + f" nats/datapoint  ({record['seconds']:.1f} s)"
