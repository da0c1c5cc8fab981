"""``fit``: maximise the ELBO of a model/guide pair with ``pyro.infer.SVI``.

``fit`` accepts a :class:`~pyrovae.models.vae.VAE` (anything with ``model`` and
``guide`` methods) or a user's own ``(model, guide)`` pair, called with the minibatch's
arguments (``model(x)``, ``model(*batch)``, ``model(**batch)``: see
:mod:`pyrovae.data.batches`). It reads the way NumPyro's SVI does: an explicit state
(:class:`~pyrovae.training.state.TrainState`), a step (:meth:`Loop.step`), and a short
loop over them (:func:`train`); everything else is a policy around the loop
(:mod:`pyrovae.training.policies`: progress, KL warm-up, NaN checks and retries, LR
schedulers, the model's end-of-epoch hook, validation, checkpoints, preemption, the
processes of a distributed run). The settings are resolved by
:mod:`pyrovae.training.setup`, the run folder by :mod:`pyrovae.training.run_dir`.

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
``val_bound``
    When the loss is :class:`~pyrovae.inference.iwae.IWAE_ELBO` with K > 1 particles:
    the held-out IWAE bound L_K, the objective the run maximises (training on L_K
    widens q(z|x), which can lower the one-sample ELBO while L_K and log p(x) rise).
``lr``
    The learning rate the epoch ran with (a Pyro LR scheduler steps after it; a retry
    after a non-finite step halves it).

Everything a run needs to continue exactly where it stopped is a
:class:`~pyrovae.training.state.TrainState`: ``fit`` hands one to ``callback`` after
every epoch (and every ``checkpoint_every`` steps, and when SIGTERM or SIGINT stops it:
:mod:`~pyrovae.training.preemption`), and takes one back as ``resume``. Resuming replays
nothing: the epoch's order of the data is recomputed from the seed and the epoch, the
random number generators, the optimiser state and the partial sums of the epoch are
restored, so on the CPU a resumed run takes bit for bit the steps the uninterrupted run
takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.optim
import torch
from pyro.infer import ELBO

from pyrovae.errors import NonFiniteError
from pyrovae.inference.iwae import IWAE_ELBO
from pyrovae.inference.rng import set_rng_state
from pyrovae.models.protocol import Contract, contract_of
from pyrovae.rundir.folder import RunFolder
from pyrovae.training import distributed, preemption
from pyrovae.training.policies import (
    Checkpoints,
    KLWarmup,
    ModelHook,
    NaNGuard,
    Policies,
    Policy,
    Preemption,
    Processes,
    Progress,
    Schedulers,
    Validation,
    cyclical_ramp,
    linear_ramp,
)
from pyrovae.training.run_dir import opened, run_folder
from pyrovae.training.setup import NAN_CHECK_EVERY, Settings, Setup, from_amp, prepare
from pyrovae.training.state import Callback, GoodState, History, Loop, TrainState
from pyrovae.training.stopping import BEST_EPOCH, EarlyStopping, as_early_stopping

HISTORY_KEYS = ("epoch", "steps", "seconds", "train_elbo", "kl_weight", "lr")
VALIDATION_KEYS = ("val_elbo", "val_log_likelihood", "val_kl")
#: The held-out IWAE bound, recorded when the run trains on it.
VALIDATION_BOUND = "val_bound"


def train(loop: Loop, policies: Policies) -> History:
    """Epochs of steps over ``loop.state`` until ``loop.epochs``; the policies do the rest."""
    policies.start(loop)
    try:
        while loop.state.epoch < loop.epochs:
            policies.epoch_start(loop)
            try:
                stopped = _epoch(loop, policies)
            except NonFiniteError as err:  # the step was not applied
                policies.recover(loop, err)
                continue
            if stopped:
                break
            record = loop.record()
            policies.end_of_epoch(loop, record)
            loop.commit(record)
            if policies.epoch_done(loop):
                break
        policies.finish(loop)
    finally:
        policies.close(loop)
    return loop.state.history


def _epoch(loop: Loop, policies: Policies) -> bool:
    """The steps of one epoch, from the one the state stands at; True: a policy stopped."""
    loop.begin_epoch()
    for batch in loop.batches.epoch(loop.state.epoch, loop.state.step):
        policies.before_step(loop)
        loop.step(batch)
        if policies.after_step(loop):
            return True
    return False


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
    kl_cycles: int = 0,
    precision: str = "auto",
    amp: bool | None = None,
    checkpoint_every: int | None = None,
    resume: TrainState | bool | None = None,
    on_nan: str = "stop",
    max_retries: int = 3,
    nan_check_every: int | None = None,
    plate: str | None = None,
    scheduler_step: str = "epoch",
    missing: str = "error",
    handle_signals: bool = True,
    run_dir: str | RunFolder | None = None,
    force: bool = False,
    early_stopping: EarlyStopping | int | bool | None = None,
) -> History:
    """Train a model/guide pair by stochastic variational inference.

    Parameters
    ----------
    vae_or_model_guide
        A :class:`~pyrovae.models.vae.VAE`, an object with ``model`` and ``guide``
        methods, or a ``(model, guide)`` pair of Pyro programs whose per-datapoint sites
        lie under one plate over the minibatch (any name). What the object declares of
        the model contract (:mod:`pyrovae.models.protocol`) applies: its
        ``check_data``, its ``end_of_epoch(epoch, data)`` (called with the number of the
        epoch just finished and ``data`` as given, after the epoch's last step and before
        validation and ``callback``, so that what it changes is validated and
        checkpointed), ``mixed_precision_safe`` and ``enumerates_in_model``.
    data
        Training data in any form of :mod:`pyrovae.data.batches`: a tensor or array
        (``model(x)``; uint8 is read as grey levels and divided by 255), a tuple or dict
        of tensors (``model(*batch)``, ``model(**batch)``), a Dataset, or a re-iterable
        of batches used as given (told each epoch's number first through its
        ``set_epoch``, if it has one).
    epochs, batch_size, lr
        Passes over the data, minibatch size (indexable data; 128 by default), Adam
        learning rate (when ``optim`` is not given).
    loss
        A Pyro ELBO instance or a name from ``pyrovae.inference.objectives.LOSSES``. By default
        :class:`pyrovae.inference.trace_elbo.Trace_ELBO` (Pyro's with a fast path), or Pyro's
        ``TraceEnum_ELBO`` when the guide marks sites for enumeration or the model
        declares ``enumerates_in_model`` (the cluster VAE). For such programs any
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
        :class:`~pyrovae.inference.objectives.LatentScale` on the latent sites of model and guide.
    kl_warmup
        Epochs over which the KL weight rises linearly from 0 to ``beta``, step by step
        (0: no warm-up). The validation ELBO is always the unweighted ELBO.
    kl_cycles
        Cyclical annealing (Fu et al., 2019): the training's steps fall into this many
        equal cycles, in each the KL weight rises linearly from 0 to ``beta`` over the
        first half and then holds (0: none; not with ``kl_warmup``).
    precision
        ``"auto"``, ``"float32"`` or ``"bfloat16"``: mixed precision, the networks in
        bfloat16 under ``torch.autocast`` while every density and the loss stay in
        float32 (see :mod:`pyrovae.inference.precision`). ``"auto"`` is bfloat16 where the device
        multiplies it natively and the object trained has ``mixed_precision_safe =
        True`` (a :class:`~pyrovae.models.vae.VAE`), float32 otherwise (a ``(model, guide)``
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
        be those saved with it); with ``run_dir``, True continues the run saved there,
        its parameters loaded into the model.
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
        ``mask`` keyword argument, True where observed (see :mod:`pyrovae.data.masks`).
    handle_signals
        Stop cleanly on SIGTERM and SIGINT (in the main thread): after the step under
        way, the state of that moment goes to ``callback`` (as ``checkpoint_every``
        takes it) and :class:`~pyrovae.errors.Preempted` is raised, so the run
        continues with ``resume``; a second SIGINT interrupts at once. False leaves the
        signals' handlers alone (see :mod:`pyrovae.training.preemption`).
    run_dir
        Write the run into this folder, as ``pyrovae train`` does (``config.json``,
        ``checkpoint.pt`` and ``history.json`` at every hand-over to ``callback``), so
        that :func:`pyrovae.load`, ``pyrovae evaluate`` and ``pyrovae report`` work on
        it (see :mod:`pyrovae.training.run_dir`). The model must be one a folder can
        rebuild: a pyrovae VAE, or an ``nn.Module`` with a ``config`` of its
        constructor's arguments. Data loaded with :func:`pyrovae.load_dataset` are
        recorded by name (and their held-out split validates); other held-out data are
        kept in the folder. A :class:`~pyrovae.rundir.folder.RunFolder` (what the command
        line passes) is written as it is set up.
    force
        With ``run_dir``: overwrite a folder that holds files.
    early_stopping
        Stop when the held-out objective (``val_bound`` when the loss is the IWAE bound,
        else ``val_elbo``) has not improved for a number of epochs, and end with the
        parameters of the best epoch (:class:`~pyrovae.training.stopping.EarlyStopping`):
        True (patience 10), a patience in epochs, or an ``EarlyStopping`` with its own
        settings. Needs ``validation``. The history gains ``best_epoch``.

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
    settings = Settings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        loss=loss,
        optim=optim,
        binarize=binarize,
        device=device,
        seed=seed,
        progress=progress,
        eval_batch_size=eval_batch_size,
        beta=beta,
        kl_warmup=kl_warmup,
        kl_cycles=kl_cycles,
        precision=from_amp(amp, precision),
        checkpoint_every=checkpoint_every,
        on_nan=on_nan,
        max_retries=max_retries,
        nan_check_every=nan_check_every,
        plate=plate,
        scheduler_step=scheduler_step,
        missing=missing,
        early_stopping=as_early_stopping(early_stopping),
    ).check(has_validation=validation is not None)
    contract = contract_of(vae_or_model_guide)
    folder, data, validation = run_folder(run_dir, contract, data, validation, settings, resume)
    with opened(folder, force, resume) as (resume, callbacks):
        setup = prepare(contract, data, validation, settings)
        loop, good = _start(setup, settings, resume)
        hand_over = _chain([*callbacks, callback])
        policies = _policies(setup, settings, contract, hand_over, good, data, resume is not None)
        return train(loop, Policies(policies))


def _start(setup: Setup, settings: Settings, resume: TrainState | None) -> tuple[Loop, GoodState]:
    """The loop at its first step, or at ``resume`` with the optimiser, scheduler and
    generators restored; the good state a retry goes back to."""
    keys = HISTORY_KEYS + (VALIDATION_KEYS if setup.validation is not None else ())
    keys += (VALIDATION_BOUND,) if bound_particles(setup, settings) else ()
    keys += (BEST_EPOCH,) if settings.early_stopping is not None else ()
    state = TrainState(history={k: [] for k in keys})
    if resume is not None:
        setup.svi.load_optim_state(resume.optim_state)
        setup.svi.load_scheduler_state(resume.scheduler_state)
        if resume.rng is not None:
            set_rng_state(resume.rng, setup.device)
        state = resume
    good = GoodState(setup.svi, setup.device)
    good.snapshot(state, keep_params=False)
    loop = Loop(
        setup.svi, setup.batches, state, setup.device, settings.epochs, setup.kl_weight, keys
    )
    return loop, good


def _policies(
    setup: Setup,
    settings: Settings,
    contract: Contract,
    callback: Callback | None,
    good: GoodState,
    data: Any,
    resumed: bool,
) -> list[Policy]:
    """The policies of a run, in the order they act at each moment."""
    checkpoints = Checkpoints(callback, good, settings.checkpoint_every)
    every = settings.nan_check_every or NAN_CHECK_EVERY
    hooks = [ModelHook(contract.end_of_epoch, data)] if contract.end_of_epoch else []
    if setup.validation is not None:
        hooks.append(
            Validation(
                setup.model,
                setup.guide,
                setup.validation,
                settings.eval_batch_size,
                settings.plate,
                bound_particles(setup, settings),
            )
        )
    if settings.early_stopping is not None:  # after validation, before the checkpoint
        hooks.append(settings.early_stopping)
    return [
        Progress(settings.progress and distributed.world()[0] == 0),
        KLWarmup(setup.kl_weight, settings.beta, kl_ramp(settings, setup.batches.steps or 0)),
        NaNGuard(good, settings.on_nan, settings.max_retries, every, settings.checkpoint_every),
        *hooks,
        Schedulers(setup.svi, settings.scheduler_step),
        Preemption(checkpoints, resumed),
        checkpoints,
        Processes(),
    ]


def bound_particles(setup: Setup, settings: Settings) -> int | None:
    """K of the held-out IWAE bound a run validates beside its ELBO: the run's own, when
    it trains on that bound (with K > 1) and has held-out data; else None."""
    loss = setup.svi.elbo
    if setup.validation is None or type(loss) is not IWAE_ELBO or loss.num_particles < 2:
        return None
    return loss.num_particles


def kl_ramp(settings: Settings, steps_per_epoch: int) -> Callable[[int], float] | None:
    """The KL weight's schedule the settings ask for: a linear warm-up, cycles, or none."""
    if settings.kl_cycles:
        return cyclical_ramp(settings.epochs * steps_per_epoch, settings.kl_cycles)
    return linear_ramp(settings.kl_warmup * steps_per_epoch)


def _chain(callbacks: list[Callback | None]) -> Callback | None:
    """One callback that calls each of ``callbacks``: False (stop) if any returns False."""
    present = [c for c in callbacks if c is not None]
    if not present:
        return None

    def call(state: TrainState) -> bool | None:
        stops = [c(state) is False for c in present]  # every callback sees every state
        return False if any(stops) else None

    return call
