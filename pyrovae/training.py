"""``fit``: maximise the ELBO of a model/guide pair with ``pyro.infer.SVI``.

``fit`` accepts a :class:`~pyrovae.VAE` (anything with ``model`` and ``guide``
methods) or a user's own ``(model, guide)`` pair, as long as the per-datapoint sites lie
under ``pyro.plate("data", batch_size)`` and both take the minibatch as first argument.
The data stay on the training device for the whole run when they fit in its memory, and
minibatches are indexed there.

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
    The learning rate of the epoch (lowered by a retry after a non-finite step).

Everything a run needs to continue exactly where it stopped is a :class:`TrainState`:
``fit`` hands one to ``callback`` after every epoch (and every ``checkpoint_every``
steps), and takes one back as ``resume``. Resuming replays nothing: the epoch's order of
the data is recomputed from the seed and the epoch, the random number generators, the
optimiser state and the partial sums of the epoch are restored, so on the CPU a resumed
run takes bit for bit the steps the uninterrupted run takes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.optim
import torch
from pyro.infer import ELBO
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pyrovae.datasets import get_binarization
from pyrovae.errors import NonFiniteError, PyrovaeError
from pyrovae.marginal import elbo_terms
from pyrovae.objectives import LatentScale, Trace_ELBO, get_loss
from pyrovae.svi import ELBOLoss, FastSVI

History = dict[str, list[float]]

HISTORY_KEYS = ("epoch", "steps", "seconds", "train_elbo", "kl_weight", "lr")
VALIDATION_KEYS = ("val_elbo", "val_log_likelihood", "val_kl")
#: The values ``on_nan`` may take (stop with an error, or go back to the last good state).
ON_NAN = ("stop", "retry")


@dataclass
class TrainState:
    """Where a run stands: enough to continue it exactly.

    Attributes
    ----------
    epoch
        Completed epochs.
    step
        Steps completed in the epoch under way (0 at an epoch boundary).
    global_step
        Steps completed in all.
    epoch_loss
        Sum of the losses of the epoch's completed steps (a 0-dim tensor).
    epoch_seconds
        Time spent in them.
    history
        The per-epoch history so far.
    optim_state
        The optimiser's ``state_dict`` (learning rates included), or None.
    rng
        Torch's random number generator states: ``"cpu"`` and, per GPU, ``"cuda"``.
    retries
        Restarts after non-finite steps so far.
    end_of_epoch
        Whether this state was taken at the end of an epoch (else every N steps).
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    epoch_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_seconds: float = 0.0
    history: History = field(default_factory=dict)
    optim_state: dict | None = None
    rng: dict | None = None
    retries: int = 0
    end_of_epoch: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Tensors and plain data only, for ``torch.save`` / ``torch.load(weights_only)``."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.global_step,
            "epoch_loss": self.epoch_loss.detach().cpu(),
            "epoch_seconds": self.epoch_seconds,
            "history": self.history,
            "optim_state": self.optim_state,
            "rng": self.rng,
            "retries": self.retries,
            "end_of_epoch": self.end_of_epoch,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        try:
            return cls(**d)
        except TypeError as err:
            raise PyrovaeError(f"the checkpoint's training state is incomplete: {err}") from None


#: Called with the :class:`TrainState` after every epoch (and every ``checkpoint_every``
#: steps); returning ``False`` stops training.
Callback = Callable[[TrainState], Any]


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else the CPU; CUDA asked for must exist."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise PyrovaeError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PyrovaeError(
            "CUDA was asked for but torch finds no usable GPU here; use device 'cpu' or 'auto'"
        )
    return dev


def as_data(data: Any, name: str = "data") -> torch.Tensor:
    """A float tensor, batch dimension first, with finite values."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if not isinstance(data, torch.Tensor):
        raise PyrovaeError(
            f"{name} must be a torch tensor or numpy array, not {type(data).__name__}"
        )
    if data.dim() == 0 or data.shape[0] == 0:
        raise PyrovaeError(f"{name} is empty: it holds no datapoints")
    if data.dtype == torch.uint8:
        data = data.float() / 255
    data = data.float()
    if not bool(torch.isfinite(data).all()):
        bad = int((~torch.isfinite(data)).sum())
        raise PyrovaeError(f"{name} contains {bad} NaN or infinite values; remove or impute them")
    return data


def _model_and_guide(obj: Any) -> tuple[Callable, Callable]:
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return obj[0], obj[1]
    if callable(getattr(obj, "model", None)) and callable(getattr(obj, "guide", None)):
        return obj.model, obj.guide
    raise PyrovaeError(
        "fit needs a VAE (an object with model and guide methods) or a (model, guide) pair"
    )


def _modules(obj: Any) -> list[nn.Module]:
    """The torch modules that own the model's and guide's parameters, to move to a device."""
    parts = obj if isinstance(obj, tuple | list) else (obj,)
    found: list[nn.Module] = []
    for part in parts:
        module = part if isinstance(part, nn.Module) else getattr(part, "__self__", None)
        if isinstance(module, nn.Module) and all(module is not m for m in found):
            found.append(module)
    return found


def _place(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move data to the device if they fit comfortably, else keep them pinned on the host."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if x.numel() * x.element_size() > free // 2:
            return x.pin_memory()
    return x.to(device)


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise PyrovaeError(f"{key} must be positive, got {value}")


def fit(
    vae_or_model_guide: Any,
    data: Any,
    *,
    epochs: int = 20,
    batch_size: int = 128,
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
    amp: bool = False,
    checkpoint_every: int | None = None,
    resume: TrainState | None = None,
    on_nan: str = "stop",
    max_retries: int = 3,
    nan_check_every: int | None = None,
) -> History:
    """Train a model/guide pair by stochastic variational inference.

    Parameters
    ----------
    vae_or_model_guide
        A :class:`~pyrovae.VAE`, or a ``(model, guide)`` pair of Pyro programs called as
        ``model(x_batch)`` / ``guide(x_batch)`` with their per-datapoint sites under
        ``pyro.plate("data", len(x_batch))``.
    data
        Training data, a tensor or array with the batch dimension first (uint8 is read as
        grey levels and divided by 255).
    epochs, batch_size, lr
        Passes over the data, minibatch size, Adam learning rate.
    loss
        A Pyro ELBO instance (:class:`pyrovae.objectives.Trace_ELBO`, Pyro's
        ``Trace_ELBO`` with a fast path, by default; any other Pyro ELBO works) or a
        name from ``pyrovae.objectives.LOSSES``.
    optim
        A Pyro optimiser; ``pyro.optim.Adam({"lr": lr})`` by default.
    binarize
        ``"dynamic"`` (a fresh Bernoulli draw per minibatch), ``"static"`` (one seeded
        draw) or ``"none"``. Validation data get one seeded draw when binarising.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    seed
        Seeds Pyro, torch and the binarisation.
    progress
        Show a progress bar and print one line per epoch.
    validation
        Held-out data for the per-epoch validation ELBO, or ``None``.
    callback
        ``callback(state)`` with a :class:`TrainState` after every epoch and every
        ``checkpoint_every`` steps; ``False`` stops training. This is where checkpoints
        are written.
    eval_batch_size
        Datapoints per pass when evaluating the validation ELBO.
    beta
        Weight of the KL term (beta-VAE; 1 is the ELBO). Applied with
        :class:`~pyrovae.objectives.LatentScale` on the latent sites of model and guide.
    kl_warmup
        Epochs over which the KL weight rises linearly from 0 to ``beta``, step by step
        (0: no warm-up). The validation ELBO is always the unweighted ELBO.
    amp
        Mixed precision: run each training step under ``torch.autocast`` in bfloat16.
        :class:`~pyrovae.VAE` casts its networks' outputs back to float32, so only the
        matrix products run in half precision and every density is computed in full
        precision. Worth it on GPUs with bfloat16 tensor cores; evaluation always runs
        in full precision.
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
        Check every this many steps (default: every step on the CPU, where the check is
        cheap; every 50 on a GPU, where it is a host sync). The bad step itself is never
        applied when it is a checked one.

    Notes
    -----
    Under ``torch.distributed`` (for example launched by ``torchrun``), each process
    takes its share of every global minibatch of ``batch_size``, gradients are averaged
    by ``DistributedDataParallel``, and every process ends with the same parameters;
    ``callback`` and progress run on rank 0 only.

    Returns
    -------
    dict
        The history: a list per key, one entry per epoch (see the module docstring).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise PyrovaeError(f"epochs must be a non-negative integer, got {epochs}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PyrovaeError(f"batch_size must be a positive integer, got {batch_size}")
    _check_positive(lr=lr)
    if not beta >= 0 or not kl_warmup >= 0:
        raise PyrovaeError(f"beta and kl_warmup must be >= 0, got {beta} and {kl_warmup}")
    if on_nan not in ON_NAN:
        raise PyrovaeError(f"unknown on_nan {on_nan!r}; choose one of: stop, retry")
    if checkpoint_every is not None and (
        not isinstance(checkpoint_every, int) or checkpoint_every < 1
    ):
        raise PyrovaeError(f"checkpoint_every must be a positive integer, got {checkpoint_every}")
    model, guide = _model_and_guide(vae_or_model_guide)
    dev = resolve_device(device)
    rank, world = _world()
    if world > 1 and dev.type == "cuda" and dev.index is None:  # one GPU per process
        dev = torch.device("cuda", rank % torch.cuda.device_count())
    binarization = get_binarization(binarize)
    if isinstance(loss, str):
        loss = get_loss(loss)
    loss = loss if loss is not None else Trace_ELBO()
    optim = optim if optim is not None else pyro.optim.Adam({"lr": lr})
    nan_check_every = nan_check_every or (50 if dev.type == "cuda" else 1)

    pyro.set_rng_seed(seed)
    x_train = as_data(data, "training data")
    x_val = as_data(validation, "validation data") if validation is not None else None
    check = getattr(vae_or_model_guide, "check_data", None)
    for x in (x_train, x_val):
        if x is not None:
            binarization.check(x)
            if check is not None:
                check(binarization.fixed(x, seed))
    for module in _modules(vae_or_model_guide):
        module.to(dev)
    x_train = _place(binarization.prepare(x_train, seed), dev)
    if x_val is not None:
        x_val = binarization.heldout(x_val, seed).to(dev)

    kl_weight = LatentScale(beta)
    train_model, train_guide = model, guide
    if beta != 1 or kl_warmup > 0:
        train_model, train_guide = kl_weight(model), kl_weight(guide)
    loss_module = None
    if world > 1:
        if not isinstance(vae_or_model_guide, nn.Module) or batch_size < world:
            raise PyrovaeError(
                "distributed training needs a VAE (an nn.Module owning the parameters) "
                f"and batch_size >= the {world} processes"
            )
        loss_module = DistributedDataParallel(
            ELBOLoss(vae_or_model_guide, loss, train_model, train_guide),
            device_ids=[dev.index] if dev.type == "cuda" else None,
        )
        pyro.set_rng_seed(seed + rank)  # own noise per process; the order is shared
    svi = FastSVI(train_model, train_guide, optim, loss, loss_module, float(world))

    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    warmup_steps = kl_warmup * steps_per_epoch
    keys = HISTORY_KEYS + (VALIDATION_KEYS if x_val is not None else ())

    def snapshot(state: TrainState) -> TrainState:
        """A copy of ``state`` with the current optimiser and generator states."""
        state = copy.copy(state)
        state.history = copy.deepcopy(state.history)
        state.optim_state = svi.optim_state()
        state.rng = _rng_state(dev)
        return state

    state = copy.copy(resume) if resume is not None else TrainState(history={k: [] for k in keys})
    if resume is not None:
        svi.load_optim_state(resume.optim_state)
        if resume.rng is not None:
            _set_rng_state(resume.rng, dev)
    good = snapshot(state)  # where a retry goes back to
    good_params: list[torch.Tensor] | None = None

    bar = tqdm(
        total=epochs,
        initial=state.epoch,
        desc="epochs",
        unit="epoch",
        disable=not progress or rank > 0,
    )
    while state.epoch < epochs:
        # The order comes from its own generator, seeded by seed and epoch, so that every
        # process of a distributed run, and a resumed run, walks the data in that order.
        order_gen = torch.Generator(device=x_train.device)
        order_gen.manual_seed(seed * 100_003 + state.epoch)
        order = torch.randperm(n, device=x_train.device, generator=order_gen)
        total = state.epoch_loss.to(dev)
        start = time.perf_counter() - state.epoch_seconds
        try:
            for step in range(state.step, steps_per_epoch):
                index = order[step * batch_size : (step + 1) * batch_size]
                batch = x_train[index.tensor_split(world)[rank]].to(dev, non_blocking=True)
                if warmup_steps:
                    kl_weight.scale = beta * min(1.0, (state.global_step + 1) / warmup_steps)
                checked = (state.global_step + 1) % nan_check_every == 0
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    total = total + svi.step_tensor(
                        binarization.batch(batch), check_finite=checked
                    )
                state.step, state.global_step = step + 1, state.global_step + 1
                if (
                    checkpoint_every
                    and state.step % checkpoint_every == 0
                    and (state.step < steps_per_epoch)
                ):
                    state.epoch_loss, state.end_of_epoch = total.detach(), False
                    state.epoch_seconds = time.perf_counter() - start
                    good, good_params = snapshot(state), [p.detach().clone() for p in svi.params]
                    if _should_stop(callback, good, rank, world, dev):
                        break
            if state.step < steps_per_epoch:  # stopped by the callback mid-epoch
                break
        except NonFiniteError as err:
            where = f"epoch {state.epoch + 1}, step {state.step + 1} of {steps_per_epoch}"
            if on_nan == "stop" or state.retries >= max_retries:
                tried = f" after {state.retries} retries" if state.retries else ""
                raise NonFiniteError(
                    f"training stopped at {where}{tried}: {err}; lower the learning rate "
                    "or let it retry (on_nan='retry', --on-nan retry)",
                    state.epoch + 1,
                    state.step + 1,
                ) from None
            if progress and rank == 0:
                bar.write(
                    f"non-finite step at {where}: {err}; back to the last good state "
                    "with half the learning rate"
                )
            retries, lowered = state.retries + 1, 0.5 * _lr(svi, optim)
            state = copy.copy(good)
            state.history = copy.deepcopy(good.history)
            state.retries = retries
            with torch.no_grad():
                for p, saved in zip(svi.params, good_params or svi.initial_values, strict=True):
                    p.copy_(saved)
            svi.load_optim_state(good.optim_state)
            svi.set_lr(lowered)
            _set_rng_state(good.rng, dev)
            continue

        if world > 1:
            torch.distributed.all_reduce(total)
        record = {
            "epoch": state.epoch + 1,
            "steps": steps_per_epoch,
            "train_elbo": -float(total) / n,  # the epoch's one host-device sync
            "seconds": time.perf_counter() - start,
            "kl_weight": kl_weight.scale,
            "lr": _lr(svi, optim),
        }
        if x_val is not None:
            terms = elbo_terms(model, guide, x_val, batch_size=eval_batch_size)
            record.update(
                val_elbo=float(terms.elbo.mean()),
                val_log_likelihood=float(terms.log_likelihood.mean()),
                val_kl=float(terms.kl.mean()),
            )
        for key in keys:
            state.history.setdefault(key, []).append(record[key])
        state.epoch, state.step = state.epoch + 1, 0
        state.epoch_loss, state.epoch_seconds, state.end_of_epoch = total.new_zeros(()), 0.0, True
        bar.update(1)
        if progress and rank == 0:
            line = f"epoch {state.epoch}/{epochs}  train ELBO {record['train_elbo']:.2f}"
            if x_val is not None:
                line += f"  val ELBO {record['val_elbo']:.2f}"
            bar.write(line + f" nats/datapoint  ({record['seconds']:.1f} s)")
        good, good_params = snapshot(state), [p.detach().clone() for p in svi.params]
        if _should_stop(callback, good, rank, world, dev):
            break
    bar.close()
    if world > 1:  # no process leaves while another may still be receiving from it
        torch.distributed.barrier()
    return state.history


def _should_stop(
    callback: Callback | None, state: TrainState, rank: int, world: int, dev: torch.device
) -> bool:
    """Call the callback on rank 0; every process learns whether it asked to stop."""
    stop = torch.zeros((), dtype=torch.int32, device=dev)
    if rank == 0 and callback is not None and callback(state) is False:
        stop.fill_(1)
    if world > 1:
        torch.distributed.broadcast(stop, 0)
    return bool(stop)


def _lr(svi: FastSVI, optim: Any) -> float:
    if svi.torch_optim is not None:
        return float(svi.torch_optim.param_groups[0]["lr"])
    args = optim.pt_optim_args
    return float(args.get("lr", math.nan)) if isinstance(args, dict) else math.nan
