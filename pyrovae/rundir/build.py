"""From a run's config to its data and its model: the one builder.

A config's ``model.kind`` names a :class:`ModelKind` (``MODEL_KINDS``): pyrovae's VAEs
by variant (:class:`VAEKind`), or a user's class by import path (:class:`UserKind`).
Everything that differs between kinds (how the model is built, how its data are read
and held out, what a new run records) is the kind's, asked of it here and in
:mod:`pyrovae.rundir.folder` and the CLI, never tested by name.

:func:`load_data` reads the data a config names, as the run trained on them
(standardised with the run's statistics). :func:`build_model` turns a config into its
model; settings that come from the data (``x_dim``, ``image_shape``, ``num_classes``)
are filled in from them where the config does not hold them yet (a new run's).
:func:`new_run` does both for a new run and completes its config with what they decide
(the binarisation ``auto`` means, the dataset's size, the model's full settings),
checking the data before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pyro.infer import ELBO
from torch import nn

from pyrovae._util import lookup
from pyrovae.data.batches import Batch
from pyrovae.data.binarization import Binarization, get_binarization
from pyrovae.data.datasets import DataSplit, fit_length, load_dataset
from pyrovae.data.labels import num_classes
from pyrovae.data.masks import as_masked
from pyrovae.data.named_arrays import NamedArrays, load_named_arrays
from pyrovae.data.sequences import Vocabulary
from pyrovae.data.tables import standardize_dataset
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.objectives import get_loss
from pyrovae.models import user
from pyrovae.models.protocol import contract_of
from pyrovae.models.variants import VARIANTS, build_vae
from pyrovae.rundir.config import is_named, locate, model_file

Data = DataSplit | NamedArrays


def dataset_of(config: dict[str, Any], run_dir: str | Path | None = None) -> str:
    """The dataset a config names: a name, or the file where it is now."""
    dataset = config["data"]["dataset"]
    if is_named(dataset) or run_dir is None:
        return dataset
    return str(locate(config, run_dir, "dataset"))


class ModelKind:
    """A kind of model a run config names: what the run folder does differently for it.

    Attributes
    ----------
    takes_x
        Whether the model takes the data as ``x`` (checked with its contract's
        ``check_data``), rather than as named arrays.
    keeps_store_params
        Whether the model's program may keep parameters in Pyro's param store
        (``pyro.param``), which checkpoints then save beside its ``state_dict``.
    default_loss
        The objective a new run from the CLI names when ``--loss`` is not given
        (None: :func:`pyrovae.fit` chooses from the model's contract).
    """

    takes_x: bool = True
    keeps_store_params: bool = False
    default_loss: str | None = None

    def model_class(self, model_config: dict[str, Any]) -> type:
        """The class the config's model settings name (what it declares, before building)."""
        raise NotImplementedError

    def build(self, config: dict[str, Any], data: Data | None, run_dir: Path | None) -> nn.Module:
        """The model of ``config``, its files found from ``run_dir``."""
        raise NotImplementedError

    def load_data(self, config: dict[str, Any], name: str, data_dir: str | None) -> Data:
        """The dataset ``name`` (from ``data_dir``) as this kind of model trains on it."""
        raise NotImplementedError

    def heldout_batch(self, config: dict[str, Any], data: Data) -> Batch:
        """The held-out split as the model takes it, before binarisation."""
        return Batch.of(data.test)

    def recorded(self, model_config: dict[str, Any], model: nn.Module) -> dict[str, Any]:
        """The config's model settings once the model is built (what a new run writes)."""
        return model_config

    def default_binarize(self, model: nn.Module) -> str:
        """What the binarisation ``"auto"`` means for ``model``."""
        return "none"


class VAEKind(ModelKind):
    """pyrovae's VAEs, by variant: data as ``x``, binarised as the likelihood models."""

    default_loss = "trace"

    def model_class(self, model_config: dict[str, Any]) -> type:
        return VARIANTS[model_config["variant"]]

    def build(self, config: dict[str, Any], data: Data | None, run_dir: Path | None) -> nn.Module:
        settings = {k: v for k, v in config["model"].items() if k != "kind"}
        if data is not None:
            settings.setdefault("x_dim", data.x_dim)
            settings.setdefault("image_shape", data.image_shape)
            if getattr(data, "vocabulary", None) is not None:
                settings.setdefault("vocab_size", data.vocabulary.size)
            if config["data"]["labels"] is not None:  # every use of labels tells the model K
                settings.setdefault("num_classes", num_classes(data))
        try:
            return build_vae(**settings)
        except TypeError as err:  # an argument a part does not take
            raise PyrovaeError(
                "bad ",
                Param("prior_kwargs"),
                ", ",
                Param("likelihood_kwargs"),
                " or ",
                Param("posterior_kwargs"),
                f": {err}",
            ) from None

    def load_data(self, config: dict[str, Any], name: str, data_dir: str | None) -> Data:
        data_cfg = config["data"]
        masked = config["train"]["missing"] == "mask"
        loaded = load_dataset(
            name,
            data_dir,
            allow_nan=masked,
            test_fraction=data_cfg["test_fraction"],
            **_sequence_options(data_cfg),
        )
        if loaded.vocabulary is not None and data_cfg["vocabulary"] is None:
            data_cfg["vocabulary"] = loaded.vocabulary.to_config()  # a new run's, kept
        elif loaded.vocabulary is not None and "x_dim" in config["model"]:
            loaded = fit_length(loaded, config["model"]["x_dim"])  # the model's length
        return standardize_dataset(loaded, data_cfg)

    def heldout_batch(self, config: dict[str, Any], data: Data) -> Batch:
        if config["train"]["missing"] == "mask":
            return as_masked(data.test, "held-out data").batch
        return Batch((data.test,))

    def recorded(self, model_config: dict[str, Any], model: nn.Module) -> dict[str, Any]:
        return {"kind": "vae", **model.config}

    def default_binarize(self, model: nn.Module) -> str:
        return model.likelihood.default_binarize


class UserKind(ModelKind):
    """A user's ``nn.Module`` with ``model`` and ``guide``: named arrays, taken as given."""

    takes_x = False
    keeps_store_params = True

    def model_class(self, model_config: dict[str, Any]) -> type:
        return user.import_object(model_config["source"])

    def build(self, config: dict[str, Any], data: Data | None, run_dir: Path | None) -> nn.Module:
        source, kwargs = config["model"]["source"], config["model"]["kwargs"]
        if run_dir is not None and model_file(source):
            source = f"{locate(config, run_dir, 'model')}:{source.rpartition(':')[2]}"
        return user.build(source, kwargs)

    def load_data(self, config: dict[str, Any], name: str, data_dir: str | None) -> Data:
        return load_named_arrays(name)


def _sequence_options(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings of a sequence dataset the config holds: its tokenizer and column as
    given, and the run's vocabulary once it has one (so that evaluation encodes the data
    exactly as training did). None of them for other data."""
    options = {"tokenizer": data_cfg["tokenizer"], "column": data_cfg["column"]}
    if data_cfg["vocabulary"] is not None:
        options["vocabulary"] = Vocabulary.from_config(data_cfg["vocabulary"])
    return {k: v for k, v in options.items() if v is not None}


#: The kinds of model a run config names (``model.kind``).
MODEL_KINDS: dict[str, ModelKind] = {"vae": VAEKind(), "user": UserKind()}


def model_kind(model_config: dict[str, Any]) -> ModelKind:
    """The kind of model a config's ``model`` settings describe (``"vae"`` if unnamed)."""
    return lookup(MODEL_KINDS, model_config.get("kind", "vae"), "model kind")


def load_data(
    config: dict[str, Any],
    run_dir: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> Data:
    """The data a run config names, or ``dataset`` (and ``data_dir``) instead.

    A run folder's files are found from ``run_dir`` (:func:`pyrovae.rundir.config.locate`).
    Tables are standardised with the statistics the config holds (computed from the
    training entries, and stored in ``config``, when a new run has none yet).
    """
    name = dataset or dataset_of(config, run_dir)
    folder = data_dir or (None if dataset else config["data"]["data_dir"])
    return model_kind(config["model"]).load_data(config, name, folder)


def build_model(
    config: dict[str, Any], data: Data | None = None, run_dir: str | Path | None = None
) -> nn.Module:
    """The model a run config describes (see the module docstring)."""
    kind = model_kind(config["model"])
    return kind.build(config, data, Path(run_dir) if run_dir is not None else None)


@dataclass
class NewRun:
    """A new run, built from its config: data, model, objective and binarisation."""

    data: Data
    model: nn.Module
    loss: ELBO | None
    binarization: Binarization


def new_run(config: dict[str, Any], run_dir: str | Path | None = None) -> NewRun:
    """Data, model, loss and binarisation of a run's config, checked; completes it.

    The config gains what the build decides: the model's full settings, the
    binarisation ``"auto"`` means (what the likelihood models; ``"none"`` for a user's
    model), the objective's number of particles, the sizes of both splits. A run to
    resume names ``run_dir``, from which its files are found.
    """
    data = load_data(config, run_dir)
    model = build_model(config, data, run_dir)
    data_cfg, train_cfg = config["data"], config["train"]
    kind = model_kind(config["model"])
    config["model"] = kind.recorded(config["model"], model)
    if data_cfg["binarize"] == "auto":
        data_cfg["binarize"] = kind.default_binarize(model)
    loss = _loss(train_cfg)
    binarization = get_binarization(data_cfg["binarize"])
    for split in (data.train, data.test):  # fail before anything is written
        _check_split(split, config, model, binarization)
    data_cfg.update(n_train=len(Batch.of(data.train)), n_test=len(Batch.of(data.test)))
    return NewRun(data, model, loss, binarization)


def _loss(train_cfg: dict[str, Any]) -> ELBO | None:
    """The objective a config names (None: ``fit`` chooses); its particles recorded."""
    if train_cfg["loss"] is None:
        if train_cfg["num_particles"] or train_cfg["free_bits"]:
            raise PyrovaeError(
                Param("num_particles"), " and ", Param("free_bits"), " need a ", Param("loss")
            )
        return None
    loss = get_loss(
        train_cfg["loss"],
        train_cfg["num_particles"],
        train_cfg["free_bits"],
        train_cfg["free_bits_per_unit"],
    )
    train_cfg["num_particles"] = loss.num_particles
    return loss


def _check_split(split: Any, config: dict, model: nn.Module, binarization: Binarization) -> None:
    """Missing entries only with ``missing="mask"``; values the binarisation and model take."""
    first = Batch.of(split).first
    if config["train"]["missing"] == "mask":
        first = torch.nan_to_num(first, nan=0.0)
    elif first.is_floating_point() and bool(torch.isnan(first).any()):
        raise PyrovaeError(
            f"{config['data']['dataset']} has {int(torch.isnan(first).sum())} missing entries "
            "(NaN or empty cells); train on the observed entries with ",
            Param("missing", "mask"),
            ", or remove them",
        )
    binarization.check(first)
    check = contract_of(model).check_data
    if check is not None and model_kind(config["model"]).takes_x:
        check(binarization.fixed(first, config["train"]["seed"]))
