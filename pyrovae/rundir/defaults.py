"""What a new run gets where its settings say nothing, by the kind of data it trains on.

One table, :data:`DATA_DEFAULTS`, holds every data-dependent default of a new run, so
that the command line, ``fit`` users who ask for them and the scikit-learn estimators
(:mod:`pyrovae.use.estimators`) start from the same measured settings. A kind's
defaults fill only what the user left unset:

``images``
    The VAE's own defaults (its signature) and ``fit``'s.
``table``
    A numeric ``.csv``: trained for a budget of optimiser steps, not of epochs (a
    150-row table is not stopped after 100 steps), with early stopping on the held-out
    rows' ELBO and the best epoch's parameters kept.
``incomplete-table``
    A ``.csv`` trained on its observed entries (``missing="mask"``): the settings under
    which the imputation benchmarks measured pyrovae against MIWAE and scikit-learn's
    ``IterativeImputer`` (``docs/howto/missing_data.md``), with the same budget and early
    stopping.
``sequences``
    SMILES or text: the GRU networks and the autoregressive likelihood, sized and trained
    to fit 15 minutes on 2 CPU cores (``docs/howto/molecules.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pyrovae.data.datasets import DATASETS, is_sequences
from pyrovae.data.sequences import suffix_of


def _frozen(d: dict[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class DataDefaults:
    """The defaults of a new run on one kind of data.

    Attributes
    ----------
    model
        Arguments of the built-in VAE (``net``, ``likelihood``, ``hidden``, ``z_dim``,
        ``activation``, ``init``, ...).
    likelihood_kwargs
        Settings of the default likelihood, used only when that likelihood is the run's.
    training
        Keys of a run's ``config["train"]`` (``batch_size``, ``lr``, ``loss``,
        ``num_particles``, ``early_stopping``, ...).
    steps
        With no epochs given: as many epochs as make this many optimiser steps on the
        run's training split (None: the model's own default epochs).
    patience_steps
        Early stopping's patience, in optimiser steps: the epochs it stands for on the
        run's data (at least :data:`MIN_PATIENCE`). None: no early stopping.
    validation
        At most this many held-out datapoints validated each epoch (None: all).
    """

    model: Mapping[str, Any] = field(default_factory=_frozen)
    likelihood_kwargs: Mapping[str, Any] = field(default_factory=_frozen)
    training: Mapping[str, Any] = field(default_factory=_frozen)
    steps: int | None = None
    patience_steps: int | None = None
    validation: int | None = None

    def epochs(self, n_train: int, batch_size: int) -> int | None:
        """The epochs that make :attr:`steps` optimiser steps on ``n_train`` datapoints."""
        if self.steps is None:
            return None
        return max(1, round(self.steps / steps_per_epoch(n_train, batch_size)))

    def patience(self, n_train: int, batch_size: int) -> int | None:
        """Early stopping's patience in epochs on ``n_train`` datapoints (None: off)."""
        if self.patience_steps is None:
            return None
        per_epoch = steps_per_epoch(n_train, batch_size)
        return max(MIN_PATIENCE, math.ceil(self.patience_steps / per_epoch))


#: The fewest epochs early stopping waits for an improvement.
MIN_PATIENCE = 10
#: The step budget of a run on a table (early stopping usually ends it sooner).
TABLE_STEPS = 20_000
#: Early stopping's patience on a table, in optimiser steps.
TABLE_PATIENCE_STEPS = 1_000
#: The step budget of a table trained on its observed entries: MIWAE's 500 epochs of a
#: 569-row table in batches of 64. On scikit-learn's breast cancer (50 % missing), more
#: steps imputed worse (9,000: RMSE 0.538 against 0.526) and so did stopping at the
#: best held-out bound (1,000 to 2,000 steps; ``docs/howto/sklearn.md``).
IMPUTATION_STEPS = 4_500

DATA_DEFAULTS: dict[str, DataDefaults] = {
    "images": DataDefaults(),
    "table": DataDefaults(
        training=_frozen({"precision": "float32"}),
        steps=TABLE_STEPS,
        patience_steps=TABLE_PATIENCE_STEPS,
    ),
    "incomplete-table": DataDefaults(
        model=_frozen(
            {
                "hidden": (128, 128),
                "activation": "tanh",
                "init": "orthogonal",
                "z_dim": 10,
                "likelihood": "gaussian",
            }
        ),
        likelihood_kwargs=_frozen({"scale": "decoder"}),
        training=_frozen(
            {"batch_size": 64, "loss": "iwae", "num_particles": 20, "precision": "float32"}
        ),
        steps=IMPUTATION_STEPS,
        patience_steps=TABLE_PATIENCE_STEPS,
    ),
    "sequences": DataDefaults(
        model=_frozen(
            {"net": "gru", "likelihood": "autoregressive", "hidden": (128,), "z_dim": 64}
        ),
        likelihood_kwargs=_frozen({"temperature": 0.7}),
        training=_frozen(
            {
                "batch_size": 64,
                "lr": 2e-3,
                "kl_warmup": 1.0,
                "free_bits": 7.5,
                "free_bits_per_unit": True,
                "precision": "float32",
            }
        ),
        steps=8500,
        validation=1000,
    ),
}


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Minibatches in one pass over ``n_train`` datapoints."""
    return max(1, -(-n_train // batch_size))


def data_kind(dataset: str, column: str | None = None, missing: str = "error") -> str:
    """The kind of data a new run trains on: a key of :data:`DATA_DEFAULTS`."""
    dataset = str(dataset)
    if is_sequences(dataset, column):
        return "sequences"
    if dataset not in DATASETS and suffix_of(dataset) == ".csv":
        return "incomplete-table" if missing == "mask" else "table"
    return "images"
