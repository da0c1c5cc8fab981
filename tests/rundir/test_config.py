"""The run folder's config: one upgrade of older configs, files found from anywhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pyrovae.cli import main
from pyrovae.errors import PyrovaeError
from pyrovae.rundir.config import FORMAT_VERSION, locate, record_files, upgrade, upgrade_model

#: A config as pyrovae 0.1 wrote it before --precision, --missing and --init existed.
V1 = {
    "pyrovae_version": "0.1.0",
    "model": {
        "x_dim": 4,
        "z_dim": 2,
        "hidden": [8],
        "prior": "standard",
        "likelihood": "gaussian",
        "guide": "diagonal",
        "guide_kwargs": {},
        "net": "mlp",
        "activation": "relu",
        "image_shape": None,
        "prior_kwargs": {},
        "likelihood_kwargs": {},
    },
    "data": {"dataset": "table.csv", "binarize": "none"},
    "train": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "loss": "trace", "seed": 0, "amp": True},
}


def test_a_format_1_config_gets_every_key_with_what_it_meant():
    config = upgrade(V1)
    assert config["format_version"] == FORMAT_VERSION and config["files"] == {}
    model = config["model"]
    assert model["kind"] == "vae" and model["variant"] == "vae"
    assert model["posterior"] == "diagonal" and model["posterior_kwargs"] == {}
    assert "guide" not in model and model["init"] == "default" and model["num_classes"] is None
    assert config["train"]["precision"] == "bfloat16" and "amp" not in config["train"]
    assert config["train"]["missing"] == "error" and config["train"]["on_nan"] == "stop"
    assert config["data"]["test_fraction"] == 0.2 and config["data"]["labels"] is None
    assert V1["model"]["guide"] == "diagonal"  # the original is left alone
    assert upgrade(config) == config  # the current format comes back as it is


@pytest.mark.parametrize(
    ("variant", "meant"),
    [
        ("semi-supervised", {"classifier": "mlp"}),
        ("clusters", {"init_after": 0, "learn_weights": True}),
    ],
)
def test_a_format_1_variant_means_what_those_runs_did(variant, meant):
    model = upgrade_model({**V1["model"], "variant": variant}, 1)
    assert {k: model[k] for k in meant} == meant
    given = upgrade_model({**V1["model"], "variant": variant, **dict.fromkeys(meant, 7)}, 1)
    assert all(given[k] == 7 for k in meant)  # what the config says wins


def test_a_config_from_a_newer_pyrovae_is_refused():
    with pytest.raises(PyrovaeError, match="format version 9.*upgrade pyrovae"):
        upgrade({**V1, "format_version": 9})


def test_files_are_recorded_absolute_and_relative_to_the_run(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("a\n1\n2\n")
    config = record_files(
        upgrade({**V1, "data": {"dataset": str(tmp_path / "data" / "t.csv")}}),
        tmp_path / "runs" / "x",
    )
    assert config["data"]["dataset"] == str((tmp_path / "data" / "t.csv").resolve())
    assert config["files"] == {"dataset": "../../data/t.csv"}
    # The project moved, the run and its data together: found relative to the run.
    shutil.move(tmp_path / "data", tmp_path / "moved-data")
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "moved-data").rename(tmp_path / "runs" / "data")
    config["files"]["dataset"] = "../data/t.csv"
    assert (
        locate(config, tmp_path / "runs" / "x", "dataset").resolve()
        == (tmp_path / "runs" / "data" / "t.csv").resolve()
    )


def test_a_csv_run_evaluates_from_any_working_directory(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "project").mkdir()
    np.savetxt(tmp_path / "project" / "t.csv", rng.normal(size=(40, 3)), delimiter=",")
    monkeypatch.chdir(tmp_path / "project")
    args = ["--likelihood", "gaussian", "--z-dim", "2", "--hidden", "4", "--epochs", "1"]
    assert main(["train", "--dataset", "t.csv", *args, "--out", "run", "--no-progress"]) == 0
    config = json.loads((tmp_path / "project" / "run" / "config.json").read_text())
    assert config["files"] == {"dataset": "../t.csv"}
    monkeypatch.chdir(tmp_path)  # another folder: the path as typed would not be found
    assert main(["evaluate", "project/run", "--num-samples", "2"]) == 0
    shutil.move(tmp_path / "project", tmp_path / "moved")  # the project, moved whole
    assert main(["evaluate", "moved/run", "--num-samples", "2"]) == 0
