"""The kinds of model a run config names (``MODEL_KINDS``): one contract for all.

Each kind is checked on the run folders of ``tests/fixtures/runs_4f9623b`` of that
kind, read in place (nothing here writes into them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyrovae.data.binarization import BINARIZATIONS
from pyrovae.errors import PyrovaeError
from pyrovae.inference.objectives import LOSSES
from pyrovae.rundir.build import MODEL_KINDS, build_model, load_data, model_kind
from pyrovae.rundir.config import located
from pyrovae.rundir.folder import read_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs_4f9623b"
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file())


def _kind_name(run: str) -> str:
    return read_config(FIXTURES / run)["model"]["kind"]


def test_every_kind_has_a_run_folder_to_check_it_on():
    assert {_kind_name(run) for run in RUNS} == set(MODEL_KINDS)


@pytest.fixture(scope="module", params=RUNS)
def built(request):
    """A fixture run's config, kind, data and model, built as ``load_run`` builds them."""
    run_dir = FIXTURES / request.param
    config = located(read_config(run_dir), run_dir)  # its files where they are now
    data = load_data(config, run_dir)
    return config, model_kind(config["model"]), data, build_model(config, data, run_dir)


def test_the_kind_is_the_one_the_config_names(built):
    config, kind, _, _ = built
    assert kind is MODEL_KINDS[config["model"]["kind"]]


def test_the_model_is_of_the_class_the_kind_names_before_building(built):
    config, kind, _, model = built
    assert type(model) is kind.model_class(config["model"])


def test_a_trained_runs_model_settings_are_what_its_build_records(built):
    config, kind, _, model = built
    assert kind.recorded(config["model"], model) == config["model"]


def test_auto_binarisation_and_the_default_loss_are_registry_names(built):
    _, kind, _, model = built
    assert kind.default_binarize(model) in BINARIZATIONS
    assert kind.default_loss is None or kind.default_loss in LOSSES


def test_the_heldout_batch_is_the_test_split_in_the_form_the_model_takes(built):
    config, kind, data, _ = built
    batch = kind.heldout_batch(config, data)
    if kind.takes_x:  # x first (its mask, for missing entries, by name)
        assert torch.is_tensor(batch.first) and batch.first.shape[-1] == data.x_dim
        assert bool(batch.kwargs) == (config["train"]["missing"] == "mask")
    else:  # the user's named arrays, every one
        assert set(batch.kwargs) == set(data.test)


def test_an_unknown_kind_names_the_kinds_there_are():
    with pytest.raises(PyrovaeError, match="model kind.*user, vae"):
        build_model({"model": {"kind": "gan"}})
