"""The model contract: what ``fit``, the estimators and the command line may ask of a model.

Any Pyro model and guide train, evaluate and checkpoint: an object with ``model`` and
``guide`` methods, or a ``(model, guide)`` pair, whose per-datapoint sites lie under one
plate over the minibatch. A model may declare more, and each declaration has a default;
:class:`Model` is a base class that holds them, and pyrovae's own VAEs derive from it.
The rest of pyrovae reads the declarations in one place, :func:`contract_of`:

=========================  ==========  ==================================================
declaration                default     who asks, and what for
=========================  ==========  ==================================================
``mixed_precision_safe``   False       ``fit``: whether ``precision="auto"`` may run the
                                       programs under bfloat16 autocast (their
                                       distributions are built from float32 values)
``enumerates_in_model``    False       ``fit``: the model sums a discrete site out with
                                       no guide site for it: ``TraceEnum_ELBO`` is needed
``discrete_latent``        None        the command line: the name of a discrete latent
                                       that training sums out (``--loss`` is refused)
``default_epochs``         20          the command line: epochs when ``--epochs`` is
                                       not given
``check_data(x)``          accepts     ``fit``: raise :class:`~pyrovae.errors.PyrovaeError`
                                       unless the data fit the model (shape, support)
``end_of_epoch(e, data)``  nothing     ``fit``: called after epoch ``e``, before
                                       validation and the checkpoint (the cluster VAE
                                       fits its mixture there)
``label_scores(x, y)``     ``{}``      ``evaluate``: held-out scores against class labels
``config``                 none        run folders: the constructor's arguments, so that
                                       ``type(model)(**config)`` rebuilds the model
=========================  ==========  ==================================================

The command line reads ``default_epochs`` and ``discrete_latent`` from the class it is
asked to build (:func:`declared`), before there is a model to ask.

A name that is almost one of these in a subclass of :class:`Model` (``end_of_epoc``)
is a typo that would silently turn a feature off; defining the class warns of it.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.inference.programs import owner_modules


@runtime_checkable
class PyroModel(Protocol):
    """The least a model is: Pyro programs ``model`` and ``guide`` taking the same data."""

    def model(self, *args: Any, **kwargs: Any) -> Any:
        """The generative model p(x, z)."""

    def guide(self, *args: Any, **kwargs: Any) -> Any:
        """The approximate posterior q(z | x)."""


class Model(nn.Module):
    """A base class for models: ``model``, ``guide`` and the contract's defaults.

    Subclasses override ``model`` and ``guide`` and whatever they declare; see the
    module docstring for what each declaration means.
    """

    #: ``fit``'s ``precision="auto"`` may run the programs under bfloat16 autocast.
    mixed_precision_safe: ClassVar[bool] = False
    #: The model sums out a discrete site that the guide does not sample.
    enumerates_in_model: ClassVar[bool] = False
    #: The discrete latent site training sums out, if any ("y" for M2).
    discrete_latent: ClassVar[str | None] = None
    #: Epochs the command line trains for unless told.
    default_epochs: ClassVar[int] = 20

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _warn_near_misses(cls)

    def model(self, *args: Any, **kwargs: Any) -> Any:
        """The generative model p(x, z); subclasses define it."""
        raise NotImplementedError

    def guide(self, *args: Any, **kwargs: Any) -> Any:
        """The approximate posterior q(z | x); subclasses define it."""
        raise NotImplementedError

    def check_data(self, x: torch.Tensor) -> None:
        """Raise :class:`~pyrovae.errors.PyrovaeError` unless ``x`` fits (default: any)."""

    def end_of_epoch(self, epoch: int, data: Any) -> None:
        """Called by ``fit`` after epoch ``epoch`` (counted from 1); nothing by default."""

    def label_scores(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Held-out scores against class labels, by name (none by default)."""
        return {}


@dataclass(frozen=True)
class Contract:
    """What a trained object declares, the defaults filled in (see the module docstring).

    Attributes
    ----------
    model, guide
        The Pyro programs.
    owner
        The object that holds them (None for a ``(model, guide)`` pair).
    check_data, end_of_epoch, label_scores
        The object's own methods, or None where it has none.
    """

    model: Callable
    guide: Callable
    owner: Any = None
    mixed_precision_safe: bool = False
    enumerates_in_model: bool = False
    discrete_latent: str | None = None
    default_epochs: int = 20
    check_data: Callable[[torch.Tensor], None] | None = None
    end_of_epoch: Callable[[int, Any], None] | None = None
    label_scores: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None = None
    config: dict[str, Any] | None = None


#: The declarations :func:`contract_of` reads, in the order of :class:`Contract`.
DECLARATIONS = tuple(f.name for f in fields(Contract))[3:]


def contract_of(obj: Any) -> Contract:
    """The contract of a model, or of a ``(model, guide)`` pair.

    The one place where pyrovae reads what a model declares. A pair declares nothing
    itself; the modules that own its model may declare ``enumerates_in_model`` (a
    cluster VAE's bound methods passed as a pair).
    """
    if isinstance(obj, tuple | list) and len(obj) == 2 and all(map(callable, obj)):
        in_model = any(getattr(m, "enumerates_in_model", False) for m in owner_modules(obj[0]))
        return Contract(obj[0], obj[1], enumerates_in_model=in_model)
    if not isinstance(obj, PyroModel) or not (callable(obj.model) and callable(obj.guide)):
        raise PyrovaeError(
            "a model is an object with model and guide methods, or a (model, guide) pair; "
            f"got {type(obj).__name__}"
        )
    declared = {name: getattr(obj, name) for name in DECLARATIONS if hasattr(obj, name)}
    if not isinstance(obj, Model):
        _warn_near_misses(type(obj))
    return Contract(obj.model, obj.guide, obj, **declared)


def declared(obj: Any, name: str) -> Any:
    """What a model, or a model class, declares as ``name``, or the contract's default."""
    if name not in DECLARATIONS:
        raise KeyError(f"{name!r} is no declaration of the model contract")
    default = next(f.default for f in fields(Contract) if f.name == name)
    return getattr(obj, name, default)


def _warn_near_misses(cls: type) -> None:
    """Warn of attributes whose names are one slip away from a declaration's."""
    own = [n for n in vars(cls) if not n.startswith("__")]
    for name in own:
        if name in DECLARATIONS:
            continue
        close = difflib.get_close_matches(name, DECLARATIONS, n=1, cutoff=0.88)
        if close:
            warnings.warn(
                f"{cls.__name__}.{name} looks like a typo of the model declaration "
                f"{close[0]!r}, which pyrovae would otherwise not see",
                stacklevel=3,
            )
