"""``FastSVI``: Pyro's SVI with one fused optimiser, no host sync, and finiteness checks.

Pyro's ``SVI.step`` records the parameters on every step, gives each parameter its own
optimiser and returns the loss as a Python float (a host-device sync). :class:`FastSVI`
is a subclass of ``pyro.infer.SVI`` that computes the same gradient step with

* the parameters found once (again whenever Pyro's parameter store grows), all stepped
  by one torch optimiser built from the Pyro optimiser's constructor and arguments,
  fused or foreach where torch has it;
* the loss left on the device by :meth:`FastSVI.step_tensor`;
* an optional check that the loss and the gradients are finite *before* the optimiser
  applies them (:class:`~pyrovae.errors.NonFiniteError`), so a bad step never reaches
  the parameters;
* its optimiser state readable and restorable (:meth:`FastSVI.optim_state`,
  :meth:`FastSVI.load_optim_state`), for checkpoints;
* the Pyro optimiser honoured as the user built it: a Pyro LR scheduler
  (``pyro.optim.ExponentialLR``, ``MultiStepLR``, ``ReduceLROnPlateau``, ...) becomes one
  torch scheduler over the fused optimiser, stepped by :meth:`FastSVI.scheduler_step`;
  ``clip_norm`` / ``clip_value`` clip each parameter's gradient as Pyro does.

:class:`ELBOLoss` turns a model/guide pair into a module for
``DistributedDataParallel``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO, SVI
from pyro.optim.lr_scheduler import PyroLRScheduler
from torch import nn

from pyrovae.errors import NonFiniteError, PyrovaeError
from pyrovae.inference.programs import params_known


class FastSVI(SVI):
    """``pyro.infer.SVI`` with one fused optimiser over all parameters and no host sync.

    Parameters
    ----------
    model, guide, optim, loss
        As for ``pyro.infer.SVI``. Pyro optimisers with per-parameter arguments (a
        callable) fall back to ``SVI.step``.
    loss_module
        Under ``torch.distributed``: the loss as a ``DistributedDataParallel`` module
        (see :class:`ELBOLoss`), whose backward pass averages gradients over processes.
    loss_scale
        What the loss is multiplied by before the backward pass (the number of
        processes, which turns DDP's average back into the sum over the global batch).
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        optim: Any,
        loss: ELBO,
        loss_module: nn.Module | None = None,
        loss_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, guide, optim, loss, **kwargs)
        self.elbo = loss
        self.loss_module = loss_module
        self.loss_scale = loss_scale
        self.torch_optim: torch.optim.Optimizer | None = None
        self.params: list[torch.Tensor] = []
        #: The parameters' values when first seen, before any step changed them.
        self.initial_values: list[torch.Tensor] = []
        self._seen: set[int] = set()
        self._store_size = -1
        self._pending_state: dict | None = None
        self._pending_scheduler: dict | None = None
        self.scheduler: Any = None
        self.fast = not callable(optim.pt_optim_args) and not callable(optim.pt_clip_args)
        self.clip_args = dict(optim.pt_clip_args or {}) if self.fast else {}

    # ------------------------------------------------------------------ the step
    def _loss_and_backward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        try:
            return self._loss_and_backward_unchecked(*args, **kwargs)
        except ValueError as err:
            # Pyro's argument validation meeting a NaN parameter: a non-finite step too.
            if "found invalid values" not in str(err):
                raise
            first = str(err).strip().splitlines()[0]
            if "Expected value argument" in first:  # the data, not the parameters
                raise PyrovaeError(
                    f"an observed value lies outside its distribution's support ({first}); "
                    "check the data (binarise grey levels for a Bernoulli, say)"
                ) from None
            raise NonFiniteError(
                f"a distribution's parameters are NaN or infinite ({first})"
            ) from None

    def _loss_and_backward_unchecked(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.loss_module is not None:
            loss = self.loss_module(*args, **kwargs)  # this process's share of the batch
            (loss * self.loss_scale).backward()
            return loss.detach()
        if hasattr(self.elbo, "differentiable_loss"):
            # Parameters the optimiser holds need no param site (see params_known).
            known = params_known() if self.torch_optim is not None else contextlib.nullcontext()
            with known:
                loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
            if loss.requires_grad:
                loss.backward()
            return loss.detach()
        return torch.as_tensor(self.loss_and_grads(self.model, self.guide, *args, **kwargs))

    def _add_params(self, params: list[torch.Tensor]) -> None:
        new = [p for p in params if id(p) not in self._seen]
        if not new:
            return
        self._seen.update(id(p) for p in new)
        self.params += new
        self.initial_values += [p.detach().clone() for p in new]
        if self.torch_optim is not None:
            self.torch_optim.add_param_group({"params": new})
            return
        ctor, kwargs = self.optim.pt_optim_constructor, dict(self.optim.pt_optim_args)
        for extra in ({"fused": True}, {"foreach": True}, {}):
            try:
                self.torch_optim = ctor(new, **kwargs, **extra)
                break
            except (TypeError, RuntimeError, ValueError):
                continue
        if self.torch_optim is None:
            return
        if isinstance(self.optim, PyroLRScheduler):
            self.scheduler = self.optim.pt_scheduler_constructor(
                self.torch_optim, **self.optim.kwargs
            )
        if self._pending_state is not None:
            self.torch_optim.load_state_dict(self._pending_state)
            self._pending_state = None
        if self._pending_scheduler is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(self._pending_scheduler)
            self._pending_scheduler = None

    def _check_finite(self, loss: torch.Tensor, grads: bool = True) -> None:
        if not bool(torch.isfinite(loss).all()):
            raise NonFiniteError(f"the loss is {float(loss)}")
        if not grads:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads and not bool(torch.stack(torch._foreach_norm(grads)).isfinite().all()):
            raise NonFiniteError("a gradient is NaN or infinite")

    def _clip(self) -> None:
        """Clip each parameter's gradient on its own, as ``pyro.optim.PyroOptim`` does."""
        if not self.clip_args:
            return
        norm, value = self.clip_args.get("clip_norm"), self.clip_args.get("clip_value")
        for p in self.params:
            if p.grad is None:
                continue
            if norm is not None:
                torch.nn.utils.clip_grad_norm_(p, norm)
            if value is not None:
                torch.nn.utils.clip_grad_value_(p, value)

    def step_tensor(
        self, *args: Any, check_finite: bool = False, check_loss: bool = False, **kwargs: Any
    ) -> torch.Tensor:
        """One SVI step; returns the loss as a 0-dim tensor on the device.

        With ``check_finite`` (one host sync and one pass over the gradients), a
        non-finite loss or gradient raises :class:`~pyrovae.errors.NonFiniteError` and
        the step is not applied; ``check_loss`` checks the loss only (a host sync, free
        on the CPU).
        """
        if not self.fast:
            return torch.as_tensor(super().step(*args, **kwargs))
        store = pyro.get_param_store()
        if len(store) != self._store_size or self.torch_optim is None:
            with poutine.trace(param_only=True) as capture:
                loss = self._loss_and_backward(*args, **kwargs)
            self._add_params(
                [site["value"].unconstrained() for site in capture.trace.nodes.values()]
            )
            self._store_size = len(store)
        else:
            loss = self._loss_and_backward(*args, **kwargs)
        if self.torch_optim is None:
            return loss
        try:
            if check_finite or check_loss:
                self._check_finite(loss, grads=check_finite)
            self._clip()
            self.torch_optim.step()
        finally:
            self.torch_optim.zero_grad(set_to_none=True)
        return loss

    def step(self, *args: Any, **kwargs: Any) -> float:
        """One SVI step; returns the loss as a float, like ``pyro.infer.SVI.step``."""
        return float(self.step_tensor(*args, **kwargs))

    # ------------------------------------------------------------- checkpoints
    def optim_state(self) -> dict | None:
        """The torch optimiser's ``state_dict`` (a copy), or None before the first step."""
        if self.torch_optim is None:
            return copy.deepcopy(self._pending_state)
        return copy.deepcopy(self.torch_optim.state_dict())

    def load_optim_state(self, state: dict | None) -> None:
        """Restore an optimiser state now, or at the first step if none exists yet.

        ``None`` means the state before any step: the optimiser's moments are cleared.
        """
        if state is None:
            if self.torch_optim is not None:
                self.torch_optim.state.clear()
            return
        if self.torch_optim is None:
            self._pending_state = copy.deepcopy(state)
        else:
            self.torch_optim.load_state_dict(copy.deepcopy(state))

    def scheduler_step(self, metric: float | None = None) -> None:
        """Step the learning-rate scheduler, if the optimiser is one (once per epoch, say).

        ``ReduceLROnPlateau`` is given ``metric`` (the epoch's loss); others take none.
        """
        if self.scheduler is None and not self.fast and isinstance(self.optim, PyroLRScheduler):
            self.optim.step(*([metric] if _wants_metric(self.optim) else []))
            return
        if self.scheduler is not None:
            plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            self.scheduler.step(*([metric] if plateau else []))

    def scheduler_state(self) -> dict | None:
        """The scheduler's ``state_dict`` (a copy), or None without one."""
        if self.scheduler is None:
            return copy.deepcopy(self._pending_scheduler)
        return copy.deepcopy(self.scheduler.state_dict())

    def load_scheduler_state(self, state: dict | None) -> None:
        """Restore a scheduler state now, or when the optimiser is created."""
        if state is None:
            return
        if self.scheduler is None:
            self._pending_scheduler = copy.deepcopy(state)
        else:
            self.scheduler.load_state_dict(copy.deepcopy(state))

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group (NaN when unknown)."""
        if self.torch_optim is not None:
            return float(self.torch_optim.param_groups[0]["lr"])
        for obj in getattr(self.optim, "optim_objs", {}).values():  # Pyro's own path
            opt = getattr(obj, "optimizer", obj)
            return float(opt.param_groups[0]["lr"])
        args = self.optim.pt_optim_args
        return float(args.get("lr", math.nan)) if isinstance(args, dict) else math.nan

    def set_lr(self, lr: float) -> None:
        """Set every learning rate to ``lr`` (also in a state waiting to be loaded)."""
        groups = (
            self.torch_optim.param_groups
            if self.torch_optim is not None
            else (self._pending_state or {}).get("param_groups", [])
        )
        for group in groups:
            group["lr"] = lr


def _wants_metric(optim: PyroLRScheduler) -> bool:
    return optim.pt_scheduler_constructor is torch.optim.lr_scheduler.ReduceLROnPlateau


class ELBOLoss(nn.Module):
    """The loss of a model/guide pair as a module whose parameters are ``owner``'s.

    ``DistributedDataParallel`` wraps modules, not Pyro programs; this module's forward
    is the ELBO's ``differentiable_loss``, and its parameters are those of the module
    that owns the model and the guide (a :class:`~pyrovae.models.vae.VAE`).
    """

    def __init__(self, owner: nn.Module, elbo: ELBO, model: Callable, guide: Callable) -> None:
        super().__init__()
        if not hasattr(elbo, "differentiable_loss"):
            raise PyrovaeError(
                f"distributed training needs an ELBO with differentiable_loss; "
                f"{type(elbo).__name__} has none"
            )
        self.owner = owner
        self.elbo, self.model, self.guide = elbo, model, guide

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
