"""A user's model class from a file: train, resume, evaluate, report and load from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.data.named_arrays import load_named_arrays
from pyrovae.errors import PyrovaeError
from pyrovae.rundir.checkpoint import load_checkpoint

#: The count model with a covariate, BatchNorm, a pyro.param and a plate of its own that
#: the 0.1 fixture run was trained with: the same file, here trained afresh.
MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "runs_4f9623b" / "user_model.py"


@pytest.fixture
def user_files(tmp_path):
    shutil.copy(MODEL, tmp_path / "counts_model.py")
    rng = np.random.default_rng(0)
    cov = rng.normal(size=(120, 1)).astype(np.float32)
    counts = rng.poisson(np.exp(0.3 * rng.normal(size=(120, 6)) + cov)).astype(np.float32)
    np.savez(tmp_path / "data.npz", counts=counts, cov=cov)
    return tmp_path


def _train(files, out, *extra):
    args = [
        "train",
        "--model",
        f"{files / 'counts_model.py'}:CountVAE",
        "--model-arg",
        "z_dim=2",
        "--dataset",
        str(files / "data.npz"),
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    return main(args)


def test_a_user_model_trains_resumes_exactly_evaluates_and_reports(user_files, capsys):
    whole, split = user_files / "whole", user_files / "split"
    assert _train(user_files, whole, "--epochs", "3") == 0
    pyro.clear_param_store()
    assert _train(user_files, split, "--epochs", "1") == 0
    pyro.clear_param_store()
    assert main(["train", "--resume", str(split), "--epochs", "3", "--no-progress"]) == 0
    a, b = (load_checkpoint(run / "checkpoint.pt") for run in (whole, split))
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert torch.equal(a["store_params"]["theta"], b["store_params"]["theta"])
    assert b["train_state"]["history"]["epoch"] == [1, 2, 3]
    config = json.loads((split / "config.json").read_text())
    assert config["model"]["kind"] == "user" and config["model"]["kwargs"] == {"z_dim": 2}
    assert config["data"]["binarize"] == "none" and config["data"]["n_test"] == 24

    assert main(["evaluate", str(split), "--num-samples", "20"]) == 0
    metrics = json.loads((split / "metrics.json").read_text())
    assert metrics["n_test"] == 24 and np.isfinite(metrics["test_nll"])
    assert np.load(split / "log_px.npy").shape == (24,)
    assert main(["report", str(split)]) == 0
    assert "test_nll" in (split / "report.html").read_text()

    pyro.clear_param_store()
    model = pyrovae.load(split)
    assert not model.training and type(model).__name__ == "CountVAE"
    assert torch.equal(pyro.param("theta").detach(), b["store_params"]["theta"].exp())
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--z-dim", "3"], "VAE's flags (--z-dim) do not apply"),
        (["--prior", "vamp"], "VAE's flags (--prior) do not apply"),
    ],
)
def test_flags_of_the_built_in_vae_are_refused_with_a_user_model(user_files, capsys, extra, match):
    assert _train(user_files, user_files / "run", "--epochs", "1", *extra) == 1
    assert match in capsys.readouterr().err
    assert not (user_files / "run").exists()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("missing.py:CountVAE", "does not exist"),
        ("counts_model.py:Nope", "defines no Nope"),
        ("counts_model", "write path/to/file.py:ClassName"),
    ],
)
def test_a_bad_model_path_is_one_line(user_files, capsys, spec, match):
    args = ["train", "--model", str(user_files / spec), "--dataset", str(user_files / "data.npz")]
    assert main([*args, "--out", str(user_files / "run")]) == 1
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_commands_for_vaes_refuse_a_user_model(user_files, capsys):
    assert _train(user_files, user_files / "run", "--epochs", "1") == 0
    code = main(["sample", str(user_files / "run"), "--out", str(user_files / "s.png")])
    assert code == 1 and "your own model" in capsys.readouterr().err


def test_named_arrays_split_by_name_or_by_the_last_fifth(tmp_path):
    np.savez(
        tmp_path / "a.npz",
        x_train=np.ones((5, 2)),
        x_test=np.zeros((2, 2)),
        y_train=np.arange(5),
        y_test=np.arange(2),
    )
    arrays = load_named_arrays(tmp_path / "a.npz")
    assert set(arrays.train) == {"x", "y"} and arrays.test["x"].shape == (2, 2)
    assert arrays.train["x"].dtype == torch.float32 and arrays.train["y"].dtype == torch.int64
    np.savez(tmp_path / "b.npz", x=np.ones((10, 2)), y=np.arange(10))
    arrays = load_named_arrays(tmp_path / "b.npz")
    assert arrays.test["y"].tolist() == [8, 9]
    np.savez(tmp_path / "c.npz", x_train=np.ones((5, 2)), y=np.arange(5))
    with pytest.raises(PyrovaeError, match="NAME_train and NAME_test"):
        load_named_arrays(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=np.ones((10, 2)), y=np.arange(9))
    with pytest.raises(PyrovaeError, match="same number"):
        load_named_arrays(tmp_path / "d.npz")


def test_the_command_line_honours_what_a_users_class_declares(user_files):
    source = (user_files / "counts_model.py").read_text()
    declared = source.replace(
        "class CountVAE(nn.Module):", "class CountVAE(nn.Module):\n    default_epochs = 2\n"
    )
    (user_files / "counts_model.py").write_text(declared)
    assert _train(user_files, user_files / "run") == 0  # no --epochs: the class's 2
    config = json.loads((user_files / "run" / "config.json").read_text())
    assert config["train"]["epochs"] == 2
    history = json.loads((user_files / "run" / "history.json").read_text())
    assert history["epoch"] == [1, 2]
