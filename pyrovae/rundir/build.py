"""From a run's config to its data and its model: the one builder.

:func:`load_data` reads the data a config names, as the run trained on them
(standardised with the run's statistics). :func:`build_model` turns a config into its
model, by the config's ``model.kind`` (``MODEL_KINDS``): pyrovae's VAEs by variant, a
user's class by import path; settings that come from the data (``x_dim``,
``image_shape``, ``num_classes``) are filled in from them where the config does not
hold them yet (a new run's). :func:`new_run` does both for a new run and completes its
config with what they decide (the binarisation ``auto`` means, the dataset's size, the
model's full settings), checking the data before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pyro.infer import ELBO
from torch import nn

from pyrovae._util import lookup
from pyrovae.data.batches import Batch
from pyrovae.data.binarization import Binarization, get_binarization
from pyrovae.data.datasets import DataSplit, load_dataset
from pyrovae.data.labels import num_classes
from pyrovae.data.named_arrays import NamedArrays, load_named_arrays
from pyrovae.data.tables import standardize_dataset
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.objectives import get_loss
from pyrovae.models import user
from pyrovae.models.protocol import contract_of
from pyrovae.models.variants import build_vae
from pyrovae.rundir.config import is_named, locate

Data = DataSplit | NamedArrays


def dataset_of(config: dict[str, Any], run_dir: str | Path | None = None) -> str:
    """The dataset a config names: a name, or the file where it is now."""
    dataset = config["data"]["dataset"]
    if is_named(dataset) or run_dir is None:
        return dataset
    return str(locate(config, run_dir, "dataset"))


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
    if config["model"]["kind"] == "user":
        return load_named_arrays(name)
    data_cfg = config["data"]
    folder = data_dir or (None if dataset else data_cfg["data_dir"])
    masked = config["train"]["missing"] == "mask"
    loaded = load_dataset(name, folder, allow_nan=masked, test_fraction=data_cfg["test_fraction"])
    return standardize_dataset(loaded, data_cfg)


def _vae(config: dict[str, Any], data: Data | None, run_dir: Path | None) -> nn.Module:
    """pyrovae's VAE of the config's variant; a new run's data-derived settings filled."""
    settings = {k: v for k, v in config["model"].items() if k != "kind"}
    if data is not None:
        settings.setdefault("x_dim", data.x_dim)
        settings.setdefault("image_shape", data.image_shape)
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


def _user(config: dict[str, Any], data: Data | None, run_dir: Path | None) -> nn.Module:
    """A user's class, imported from the file the config names (found from ``run_dir``)."""
    source, kwargs = config["model"]["source"], config["model"]["kwargs"]
    if run_dir is not None and source.rpartition(":")[0].endswith(".py"):
        source = f"{locate(config, run_dir, 'model')}:{source.rpartition(':')[2]}"
    return user.build(source, kwargs)


#: How each kind of model in a run config is built: ``build(config, data, run_dir)``.
MODEL_KINDS: dict[str, Callable[[dict, Data | None, Path | None], nn.Module]] = {
    "vae": _vae,
    "user": _user,
}


def build_model(
    config: dict[str, Any], data: Data | None = None, run_dir: str | Path | None = None
) -> nn.Module:
    """The model a run config describes (see the module docstring)."""
    kind = lookup(MODEL_KINDS, config["model"].get("kind", "vae"), "model kind")
    return kind(config, data, Path(run_dir) if run_dir is not None else None)


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
    vae = config["model"]["kind"] == "vae"
    if vae:
        config["model"] = {"kind": "vae", **model.config}
    if data_cfg["binarize"] == "auto":  # what the likelihood models; as given for the rest
        data_cfg["binarize"] = model.likelihood.default_binarize if vae else "none"
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
    loss = get_loss(train_cfg["loss"], train_cfg["num_particles"], train_cfg["free_bits"])
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
    if check is not None and config["model"]["kind"] == "vae":  # a user's takes named arrays
        check(binarization.fixed(first, config["train"]["seed"]))
