"""What ``fit`` resolves before its first step: settings, programs, device, data, SVI.

:class:`Settings` holds ``fit``'s keyword arguments, checked in one place
(:meth:`Settings.check`); :func:`prepare` turns them and the model's contract
(:mod:`pyrovae.models.protocol`) into a :class:`Setup`: the programs on their device,
the minibatches, the validation data, the objective and the SVI object that steps it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.optim
import torch
from pyro.infer import ELBO, TraceEnum_ELBO

from pyrovae._util import caller_level
from pyrovae.data.binarization import get_binarization
from pyrovae.data.devices import resolve_device
from pyrovae.data.masks import MISSING, as_masked
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.enumeration import has_enumerated_sites
from pyrovae.inference.objectives import LatentScale, get_loss
from pyrovae.inference.precision import for_precision, resolve_precision
from pyrovae.inference.programs import owner_modules
from pyrovae.inference.svi import FastSVI
from pyrovae.inference.trace_elbo import Trace_ELBO
from pyrovae.inference.traces import max_plate_nesting
from pyrovae.models.protocol import Contract
from pyrovae.training import distributed
from pyrovae.training.feeding import Minibatches, validation_data

#: The values ``on_nan`` may take (stop with an error, or go back to the last good state).
ON_NAN = ("stop", "retry")
#: When a Pyro LR scheduler steps.
SCHEDULER_STEPS = ("epoch", "step")
#: Steps between checks of the gradients for NaN and infinity (the loss: every step on
#: the CPU).
NAN_CHECK_EVERY = 50


@dataclass
class Settings:
    """``fit``'s settings (see :func:`pyrovae.training.loop.fit` for each)."""

    epochs: int = 20
    batch_size: int | None = None
    lr: float = 1e-3
    loss: ELBO | str | None = None
    optim: Any = None
    binarize: str = "dynamic"
    device: str | torch.device = "auto"
    seed: int = 0
    progress: bool = True
    eval_batch_size: int = 1000
    beta: float = 1.0
    kl_warmup: float = 0.0
    kl_cycles: int = 0
    precision: str = "auto"
    checkpoint_every: int | None = None
    on_nan: str = "stop"
    max_retries: int = 3
    nan_check_every: int | None = None
    plate: str | None = None
    scheduler_step: str = "epoch"
    missing: str = "error"
    early_stopping: Any = None

    def check(self, has_validation: bool = True) -> Settings:
        """One-line errors for settings out of range, before anything runs."""
        if self.early_stopping is not None and not has_validation:
            raise PyrovaeError(
                Param("early_stopping"),
                " watches the validation ELBO: pass held-out data as ",
                Param("validation"),
            )
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise PyrovaeError(
                Param("epochs"), f" must be a non-negative integer, got {self.epochs}"
            )
        for name in ("batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise PyrovaeError(Param(name), f" must be a positive integer, got {value}")
        if not self.lr > 0:
            raise PyrovaeError(Param("lr"), f" must be positive, got {self.lr}")
        if not self.beta >= 0 or not self.kl_warmup >= 0:
            raise PyrovaeError(
                Param("beta"),
                " and ",
                Param("kl_warmup"),
                f" must be >= 0, got {self.beta} and {self.kl_warmup}",
            )
        if not isinstance(self.kl_cycles, int) or self.kl_cycles < 0:
            raise PyrovaeError(
                Param("kl_cycles"), f" must be a non-negative integer, got {self.kl_cycles}"
            )
        if self.kl_cycles and self.kl_warmup:
            raise PyrovaeError(
                Param("kl_cycles"), " and ", Param("kl_warmup"), " do not combine; pick one"
            )
        choices = {"on_nan": ON_NAN, "scheduler_step": SCHEDULER_STEPS, "missing": MISSING}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise PyrovaeError(
                    "unknown ",
                    Param(name, getattr(self, name)),
                    f"; choose one of: {', '.join(allowed)}",
                )
        return self


@dataclass
class Setup:
    """What a training run is made of, once its settings are resolved (:func:`prepare`)."""

    model: Any
    guide: Any
    device: torch.device
    batches: Minibatches
    validation: Any
    svi: FastSVI
    kl_weight: LatentScale


def prepare(contract: Contract, data: Any, validation: Any, settings: Settings) -> Setup:
    """The programs, device, data, objective and SVI of a run, each checked."""
    rank, world = distributed.world()
    dev = distributed.process_device(resolve_device(settings.device), rank, world)
    precision = resolve_precision(settings.precision, dev, contract.mixed_precision_safe)
    binarization = get_binarization(settings.binarize)
    pyro.set_rng_seed(settings.seed)
    for module in owner_modules(contract.owner, contract.model, contract.guide):
        module.to(dev)
    if settings.missing == "mask":
        data = as_masked(data, "training data")
        validation = as_masked(validation, "validation data") if validation is not None else None
    check, seed = contract.check_data, settings.seed
    batches = Minibatches(data, settings.batch_size, binarization, seed, dev, check)
    val = validation_data(validation, binarization, seed, dev, check)
    kl_weight = LatentScale(settings.beta)
    loss = _loss(settings.loss, contract, batches)
    annealed = settings.kl_warmup > 0 or settings.kl_cycles > 0
    weighted = kl_weight if settings.beta != 1 or annealed else None
    svi = _svi(contract, loss, settings, precision, weighted, batches, dev)
    if annealed and not batches.steps:
        raise PyrovaeError(
            Param("kl_cycles" if settings.kl_cycles else "kl_warmup"),
            " counts epochs in steps, but the iterable of batches has no length; "
            "give it a __len__ or pass indexable data",
        )
    return Setup(contract.model, contract.guide, dev, batches, val, svi, kl_weight)


def _loss(loss: ELBO | str | None, contract: Contract, batches: Minibatches) -> ELBO:
    """The objective: by name, as given, or Trace_ELBO (TraceEnum_ELBO to enumerate).

    Programs that mark sites for enumeration (in the guide, or in the model as a cluster
    VAE declares with ``enumerates_in_model``) need ``TraceEnum_ELBO``: any other
    objective would sample those sites instead, so it is refused.
    """
    model, guide = contract.model, contract.guide
    probe = batches.data.first_batch().to(batches.device)
    enumerates = contract.enumerates_in_model or has_enumerated_sites(guide, probe)
    if loss is None and enumerates:
        nesting = max_plate_nesting(model, guide, *probe.args, **probe.kwargs)
        return TraceEnum_ELBO(max_plate_nesting=nesting, strict_enumeration_warning=False)
    if loss is None:
        return Trace_ELBO()
    loss = get_loss(loss) if isinstance(loss, str) else loss
    if enumerates and not isinstance(loss, TraceEnum_ELBO):
        raise PyrovaeError(
            f"the model or guide marks discrete sites for enumeration, which "
            f"{type(loss).__name__} would sample instead of summing out; leave ",
            Param("loss"),
            " out (fit then picks TraceEnum_ELBO) or pass a TraceEnum_ELBO",
        )
    return loss


def _svi(
    contract: Contract,
    loss: ELBO,
    settings: Settings,
    precision: str,
    kl_weight: LatentScale | None,
    batches: Minibatches,
    dev: torch.device,
) -> FastSVI:
    """The SVI of the training steps: the programs at ``precision``, KL-weighted, and
    under ``torch.distributed`` the loss as a DDP module and each process's own noise."""
    model, guide = (for_precision(p, precision, dev) for p in (contract.model, contract.guide))
    if kl_weight is not None:
        model, guide = kl_weight(model), kl_weight(guide)
    owner = contract.owner
    ddp = distributed.loss_module(owner, loss, model, guide, dev, batches.batch_size)
    rank, world = distributed.world()
    if world > 1:
        pyro.set_rng_seed(settings.seed + rank)  # own noise per process; the order is shared
    optim = settings.optim or pyro.optim.Adam({"lr": settings.lr})
    return FastSVI(model, guide, optim, loss, ddp, float(world))


def from_amp(amp: bool | None, precision: str) -> str:
    """The precision meant by the deprecated ``amp`` flag, if it was passed."""
    if amp is None:
        return precision
    if precision != "auto":
        raise PyrovaeError("pass ", Param("precision"), " or the deprecated amp, not both")
    warnings.warn(
        f"amp is deprecated; pass precision={'bfloat16' if amp else 'float32'!r}",
        FutureWarning,
        stacklevel=caller_level(),
    )
    return "bfloat16" if amp else "float32"
