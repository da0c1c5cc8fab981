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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import ELBO, SVI
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pyrovae.datasets import get_binarization
from pyrovae.errors import PyrovaeError
from pyrovae.marginal import elbo_terms
from pyrovae.objectives import LatentScale, Trace_ELBO, get_loss

History = dict[str, list[float]]
#: Called after every epoch with the epoch index (from 0), the history so far and the
#: optimiser; returning ``False`` stops training.
Callback = Callable[[int, History, pyro.optim.PyroOptim], Any]

HISTORY_KEYS = ("epoch", "steps", "seconds", "train_elbo", "kl_weight")
VALIDATION_KEYS = ("val_elbo", "val_log_likelihood", "val_kl")


class FastSVI(SVI):
    """``pyro.infer.SVI`` with one fused optimiser over all parameters and no host sync.

    Pyro's ``SVI.step`` records the parameters on every step, gives each parameter its
    own optimiser and returns the loss as a Python float (a host-device sync). This
    subclass finds the parameters once (again whenever the parameter store grows),
    steps them all with one torch optimiser built from the Pyro optimiser's constructor
    and arguments (fused or foreach where torch has it), and :meth:`step_tensor` leaves
    the loss on the device. ``step`` keeps SVI's contract and returns a float. It falls
    back to ``SVI.step`` for Pyro optimisers with per-parameter arguments or gradient
    clipping.
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
    ):
        super().__init__(model, guide, optim, loss, **kwargs)
        self.elbo = loss
        # Under torch.distributed: the loss as a DistributedDataParallel module, whose
        # backward pass averages the gradients over processes; loss_scale (the number
        # of processes) turns that average back into the sum over the global batch.
        self.loss_module = loss_module
        self.loss_scale = loss_scale
        self.torch_optim: torch.optim.Optimizer | None = None
        self._seen: set[int] = set()
        self._store_size = -1
        self.fast = not callable(optim.pt_optim_args) and not optim.pt_clip_args

    def _loss_and_backward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.loss_module is not None:
            loss = self.loss_module(*args, **kwargs)  # this process's share of the batch
            (loss * self.loss_scale).backward()
            return loss.detach()
        if hasattr(self.elbo, "differentiable_loss"):
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
        if self.torch_optim is not None:
            self.torch_optim.add_param_group({"params": new})
            return
        ctor, kwargs = self.optim.pt_optim_constructor, dict(self.optim.pt_optim_args)
        for extra in ({"fused": True}, {"foreach": True}, {}):
            try:
                self.torch_optim = ctor(new, **kwargs, **extra)
                return
            except (TypeError, RuntimeError, ValueError):
                continue

    def step_tensor(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """One SVI step; returns the loss as a 0-dim tensor on the device."""
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
        if self.torch_optim is not None:
            self.torch_optim.step()
            self.torch_optim.zero_grad(set_to_none=True)
        return loss

    def step(self, *args: Any, **kwargs: Any) -> float:
        """One SVI step; returns the loss as a float, like ``pyro.infer.SVI.step``."""
        return float(self.step_tensor(*args, **kwargs))


class ELBOLoss(nn.Module):
    """The loss of a model/guide pair as a module whose parameters are ``owner``'s.

    ``DistributedDataParallel`` wraps modules, not Pyro programs; this module's forward
    is the ELBO's ``differentiable_loss``, and its parameters are those of the module
    that owns the model and the guide (a :class:`~pyrovae.VAE`).
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
        A Pyro ELBO instance (``Trace_ELBO()`` by default, any other Pyro ELBO works) or a
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
        ``callback(epoch, history, optim)`` after every epoch; ``False`` stops training.
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
    warmup_steps = kl_warmup * math.ceil(x_train.shape[0] / batch_size)
    step = 0
    keys = HISTORY_KEYS + (VALIDATION_KEYS if x_val is not None else ())
    history: History = {k: [] for k in keys}
    n = x_train.shape[0]
    bar = tqdm(range(epochs), desc="epochs", disable=not progress or rank > 0, unit="epoch")
    for epoch in bar:
        start = time.perf_counter()
        # The order comes from its own generator, seeded by seed and epoch, so that every
        # process of a distributed run walks the data in the same order.
        order_gen = torch.Generator(device=x_train.device).manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, device=x_train.device, generator=order_gen)
        total = x_train.new_zeros((), device=dev)
        steps = 0
        for i in range(0, n, batch_size):
            index = order[i : i + batch_size].tensor_split(world)[rank]
            batch = x_train[index].to(dev, non_blocking=True)
            if warmup_steps:
                kl_weight.scale = beta * min(1.0, (step + 1) / warmup_steps)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                total += svi.step_tensor(binarization.batch(batch))
            steps += 1
            step += 1
        if world > 1:
            torch.distributed.all_reduce(total)
        train_elbo = -float(total) / n  # the epoch's one host-device sync
        record = {
            "epoch": epoch + 1,
            "steps": steps,
            "seconds": time.perf_counter() - start,
            "train_elbo": train_elbo,
            "kl_weight": kl_weight.scale,
        }
        if x_val is not None:
            terms = elbo_terms(model, guide, x_val, batch_size=eval_batch_size)
            record.update(
                val_elbo=float(terms.elbo.mean()),
                val_log_likelihood=float(terms.log_likelihood.mean()),
                val_kl=float(terms.kl.mean()),
            )
        for key, value in record.items():
            history[key].append(value)
        if progress and rank == 0:
            line = f"epoch {epoch + 1}/{epochs}  train ELBO {record['train_elbo']:.2f}"
            if x_val is not None:
                line += f"  val ELBO {record['val_elbo']:.2f}"
            bar.write(line + f" nats/datapoint  ({record['seconds']:.1f} s)")
        stop = torch.zeros((), dtype=torch.int32, device=dev)
        if rank == 0 and callback is not None and callback(epoch, history, optim) is False:
            stop.fill_(1)
        if world > 1:
            torch.distributed.broadcast(stop, 0)
        if stop:
            break
    bar.close()
    return history
