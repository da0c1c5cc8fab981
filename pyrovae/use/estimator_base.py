"""What pyrovae's scikit-learn estimators share (:mod:`pyrovae.use.estimators`).

:class:`_VAEEstimator` checks ``X``, puts its columns in standard units, builds a
:class:`~pyrovae.models.vae.VAE` and trains it (:func:`~pyrovae.training.loop.fit`) for a
budget of optimiser steps, with early stopping on a seeded share of the rows when asked.
A setting left at None takes the default of the kind of data in
:data:`~pyrovae.rundir.defaults.DATA_DEFAULTS` (:func:`data_default`). Everything runs
seeded, in a Pyro parameter store of its own (:func:`_isolated`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import numbers
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyro
import torch
from sklearn.base import (
    BaseEstimator,
)
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from pyrovae.data.datasets import holdout_size
from pyrovae.data.devices import resolve_device
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.objectives import get_loss
from pyrovae.models.vae import VAE
from pyrovae.rundir.defaults import DATA_DEFAULTS, DataDefaults
from pyrovae.training.feeding import DEFAULT_BATCH_SIZE
from pyrovae.training.loop import fit
from pyrovae.training.stopping import EarlyStopping

#: The settings of the VAE (the first six) and of its training that ``fit`` resolves.
SETTINGS = tuple(
    "z_dim hidden activation init likelihood likelihood_kwargs loss num_particles "
    "batch_size lr max_steps patience_steps".split()
)
_VAE_SIGNATURE = inspect.signature(VAE).parameters
#: What a kind of data leaves unset: the VAE's and ``fit``'s own defaults, but a Gaussian
#: likelihood (a table's columns are real numbers in standard units).
FALLBACKS: dict[str, Any] = {
    **{k: _VAE_SIGNATURE[k].default for k in ("z_dim", "hidden", "activation", "init")},
    "likelihood": "gaussian",
    "loss": "trace",
    "num_particles": 1,
    "batch_size": DEFAULT_BATCH_SIZE,
    "lr": inspect.signature(fit).parameters["lr"].default,
    "precision": "float32",
}
#: The likelihoods of real numbers, whose columns ``standardize="auto"`` standardises.
REAL_LIKELIHOODS = ("gaussian", "laplace", "student-t")
_FLOATS = (np.float64, np.float32)


def data_default(kind: str, name: str) -> Any:
    """The default of setting ``name`` (of :data:`SETTINGS`) on data of ``kind``, a key of
    :data:`~pyrovae.rundir.defaults.DATA_DEFAULTS` (:data:`FALLBACKS` where it says none)."""
    defaults = DATA_DEFAULTS[kind]
    if name in ("max_steps", "patience_steps"):
        return defaults.steps if name == "max_steps" else defaults.patience_steps
    if name == "likelihood_kwargs":
        return dict(defaults.likelihood_kwargs)
    for table in (defaults.model, defaults.training):
        if name in table:
            return table[name]
    return FALLBACKS[name]


@contextlib.contextmanager
def _isolated(seed: int, device: torch.device) -> Iterator[None]:
    """Seeded draws in a Pyro parameter store of their own; afterwards the caller's
    generators (Python's, numpy's, torch's) and parameter store are as they were."""
    states = random.getstate(), np.random.get_state()  # noqa: NPY002 (what Pyro seeds)
    devices = [device] if device.type == "cuda" else []
    try:
        with pyro.get_param_store().scope(), torch.random.fork_rng(devices=devices):
            pyro.set_rng_seed(seed)
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])  # noqa: NPY002


def _store(estimator: BaseEstimator, given: dict[str, Any]) -> None:
    """scikit-learn's convention: ``__init__`` stores its parameters and nothing else."""
    for name, value in given.items():
        if name != "self":
            setattr(estimator, name, value)


def _check_count(name: str, value: Any, low: int = 1) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise PyrovaeError(Param(name), f" must be an integer >= {low}, got {value!r}")


def _column_scales(x: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation over its observed entries (0 and 1
    without ``standardize``; a constant column's scale is 1)."""
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    mean = np.nanmean(x, axis=0)
    std = np.sqrt(np.nanmean((x - mean) ** 2, axis=0))
    return mean, np.where(std > 0, std, 1.0)


def _tensor(x: np.ndarray | None, device: torch.device | None = None) -> torch.Tensor | None:
    """A float32 copy of ``x`` on ``device`` (None stays None)."""
    if x is None:
        return None
    return torch.tensor(np.asarray(x), dtype=torch.float32, device=device)


class _VAEEstimator(BaseEstimator):
    """What the three estimators share: checks, standard units, the VAE, training, seeds."""

    #: Parameters spelled otherwise than the setting (the transformer's ``n_components``).
    _aliases: dict[str, str] = {}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing entries: trained on the observed ones
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        vae = state.get("vae_")
        if vae is not None and any(p.device.type != "cpu" for p in vae.parameters()):
            state["vae_"] = copy.deepcopy(vae).cpu()  # loads where no GPU is
        return state

    def _kind(self, has_missing: bool) -> str:
        """The key of ``DATA_DEFAULTS`` whose settings fill the parameters left at None."""
        return "incomplete-table" if has_missing else "table"

    def _resolved(self, kind: str) -> dict[str, Any]:
        """The settings of :data:`SETTINGS`, those left at None taken from ``kind``'s."""
        given = {name: getattr(self, self._aliases.get(name, name)) for name in SETTINGS}
        out = {k: data_default(kind, k) if v is None else v for k, v in given.items()}
        out["precision"] = data_default(kind, "precision")
        if given["likelihood_kwargs"] is None:
            own = DATA_DEFAULTS[kind].model.get("likelihood", FALLBACKS["likelihood"])
            out["likelihood_kwargs"] = out["likelihood_kwargs"] if out["likelihood"] == own else {}
        return out

    def _check_params(self, settings: dict[str, Any]) -> None:
        """One-line errors for parameters that ``VAE`` and ``fit`` do not check."""
        _check_count("max_steps", settings["max_steps"])
        _check_count("patience_steps", settings["patience_steps"])
        _check_count("num_samples", self.num_samples)
        if not 0 <= (got := self.validation_fraction) < 1:
            raise PyrovaeError(Param("validation_fraction"), f" must lie in [0, 1), got {got}")
        if (got := self.standardize) not in ("auto", True, False):
            raise PyrovaeError(Param("standardize"), f" must be 'auto', True or False: {got!r}")

    def _standardizes(self, likelihood: Any) -> bool:
        if self.standardize == "auto":
            return isinstance(likelihood, str) and likelihood in REAL_LIKELIHOODS
        return bool(self.standardize)

    def _fit_vae(self, X: Any) -> np.ndarray:
        """Check ``X``, put it in standard units, build and train the VAE; ``X`` in them."""
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=_FLOATS)
        missing = np.isnan(X)
        empty = np.flatnonzero(missing.all(axis=0))
        if empty.size:
            raise PyrovaeError(
                f"column {int(empty[0])} of X is missing in every row ({empty.size} such "
                "column(s)); drop it: nothing can be learned about it"
            )
        kind = self._kind(bool(missing.any()))
        settings = self._resolved(kind)
        self._check_params(settings)
        self.mean_, self.scale_ = _column_scales(X, self._standardizes(settings["likelihood"]))
        xs = (X - self.mean_) / self.scale_
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train, held_out = self._split(xs[~missing.all(axis=1)])  # empty rows carry nothing
        device = resolve_device(self.device)
        with _isolated(self.seed_, device):
            vae = VAE(x_dim=X.shape[1], **{k: settings[k] for k in SETTINGS[:6]})
            mode = "mask" if kind == "incomplete-table" else "error"
            self.history_, stopping = self._train(vae, (train, held_out), settings, mode)
        self.vae_, self.settings_ = vae.eval(), settings
        self.n_iter_ = int(sum(self.history_["steps"]))
        self.stopped_epoch_, self.best_epoch_ = 0, len(self.history_["epoch"])
        if stopping is not None:
            self.stopped_epoch_, self.best_epoch_ = stopping.stopped_epoch, stopping.best_epoch
        return xs

    def _split(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The training rows and the held-out rows of early stopping (a seeded split)."""
        n = xs.shape[0]
        if self.validation_fraction == 0:
            return xs, None
        if n < 2:
            raise PyrovaeError(
                f"early stopping needs 2 rows with an observed entry, got {n} sample"
                f"{'s' * (n != 1)}; pass more rows or ",
                Param("validation_fraction", 0.0),
            )
        order = np.random.default_rng(self.seed_).permutation(n)
        held = holdout_size(n, self.validation_fraction)
        return xs[np.sort(order[held:])], xs[np.sort(order[:held])]

    def _train(self, vae: VAE, rows: tuple, settings: dict[str, Any], missing: str) -> tuple:
        """``fit`` for ``max_steps`` optimiser steps, early stopping on the held-out rows:
        the history and the :class:`EarlyStopping` (None without held-out rows)."""
        (train, held_out), batch_size, n = rows, settings["batch_size"], rows[0].shape[0]
        budget = DataDefaults(
            steps=settings["max_steps"], patience_steps=settings["patience_steps"]
        )
        stopping = None
        if held_out is not None:
            stopping = EarlyStopping(patience=budget.patience(n, batch_size))
        history = fit(
            vae,
            _tensor(train),
            epochs=budget.epochs(n, batch_size),
            batch_size=batch_size,
            lr=settings["lr"],
            loss=get_loss(settings["loss"], settings["num_particles"]),
            binarize="none",
            device=resolve_device(self.device),
            seed=self.seed_,
            progress=bool(self.verbose),
            validation=_tensor(held_out),
            missing=missing,
            handle_signals=False,
            early_stopping=stopping,
            precision=settings["precision"],
        )
        return history, stopping

    def _inputs(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``X`` checked against the fitted estimator, and in standard units."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=_FLOATS)
        return X, (X - self.mean_) / self.scale_

    def _run(self, fn: Callable[[VAE, torch.device], torch.Tensor]) -> np.ndarray:
        """``fn(vae, device)`` drawing from ``seed_ + 1``, as float64 (the VAE moved to
        ``device`` first: after unpickling, say)."""
        device = resolve_device(self.device)
        vae = self.vae_.to(device)
        with _isolated(self.seed_ + 1, device):
            return fn(vae, device).cpu().double().numpy()


_SHARED = """
    z_dim : int, tuple of int or None
        Latent units; a tuple ``(d_1, ..., d_L)``: a hierarchical VAE, z_1 next to x.
    hidden : tuple of int or None
        Hidden layer sizes of the encoder; the decoder's are reversed.
    activation : str or None
        The networks' nonlinearity (``"tanh"``, ``"relu"``, ...).
    init : str or None
        How the networks' weights start (``"default"``, ``"orthogonal"``).
    likelihood : str or None
        A key of :data:`~pyrovae.parts.likelihoods.LIKELIHOODS`: ``"gaussian"`` for real
        columns, ``"bernoulli"`` for binary rows, ``"continuous-bernoulli"`` in [0, 1], ...
    likelihood_kwargs : dict or None
        None: the data's when the likelihood is the data's default (``{"scale":
        "decoder"}`` for the Gaussian of an incomplete table), else the likelihood's own.
    standardize : {"auto", True, False}
        Put the columns in standard units (``mean_``, ``scale_``) for the VAE.
        ``"auto"``: for the likelihoods of real numbers only (gaussian, laplace,
        student-t); binary or [0, 1] rows are used as given.
    loss : str or None
        The objective: a key of :data:`~pyrovae.inference.objectives.LOSSES`.
    num_particles : int or None
        Its particles (draws of z per row and step).
    batch_size : int or None
        Rows per optimiser step.
    lr : float or None
        Adam's learning rate.
    max_steps : int or None
        The budget of optimiser steps.
    patience_steps : int or None
        Early stopping after this many steps (at least ``MIN_PATIENCE`` epochs) without a
        better held-out ELBO; the best epoch's parameters are kept.
    validation_fraction : float
        The rows held out for early stopping (seeded); the fitted model still serves
        every row. 0: no early stopping, ``max_steps`` steps on every row.
    num_samples : int
        K, importance samples per row for imputations and scores.
    random_state : int, numpy.random.RandomState or None
        Seeds the split, the initial weights, training and the draws of every method.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
    verbose : bool
        Print one line per epoch while training.
""".strip()

_FITTED = r"""
    vae\_ : pyrovae.VAE
        The trained model (of the best epoch, with early stopping).
    settings\_ : dict
        The settings it was built and trained with, the data's defaults filled in.
    mean\_ : ndarray of shape (n_features,)
        The columns' observed means: the standard units, with ``scale_``.
    scale\_ : ndarray of shape (n_features,)
        Their observed standard deviations (1 for a constant column).
    history\_ : dict
        ``fit``'s history: one entry per epoch (``train_elbo``, ``val_elbo``, ...).
    n_iter\_ : int
        The optimiser steps taken.
    stopped_epoch\_ : int
        The epoch early stopping ended the run at (0: it ran out of steps).
    best_epoch\_ : int
        The epoch whose parameters were kept.
    seed\_ : int
        The seed drawn from ``random_state``; the methods draw from ``seed_ + 1``.
""".strip()


def _shared_docs(cls: type) -> type:
    cls.__doc__ = (cls.__doc__ or "").replace("{shared}", _SHARED).replace("{fitted}", _FITTED)
    return cls
