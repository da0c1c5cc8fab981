"""Run folders written by pyrovae at commit 4f9623b load, evaluate to the same NLL, resume.

``tests/fixtures/runs_4f9623b`` holds one small run of each kind that commit could
train (``make_fixtures.py`` there says how they were made), with the NLL its
``evaluate`` gave (``expected.json``). They are copied before use: evaluating and
resuming write into a run folder. Their files are found again from any working
directory: the CSV table and the model file were recorded as typed, relative to a
folder that no longer exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.rundir.folder import read_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs_4f9623b"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
KINDS = sorted(EXPECTED)
EVALUATE = ["--num-samples", "20", "--seed", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """The fixtures, copied to a folder of their own (evaluate and resume write there)."""
    where = tmp_path_factory.mktemp("runs_4f9623b") / "runs"
    shutil.copytree(FIXTURES, where)
    return where


def test_every_kind_of_run_is_there():
    assert set(KINDS) == {
        "vae",
        "conditional",
        "hierarchical",
        "m2",
        "clusters",
        "vq",
        "csv_mask",
        "user",
    }
    assert all(
        "format_version" not in json.loads((FIXTURES / k / "config.json").read_text())
        for k in KINDS
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_of_4f9623b_loads(copied, kind):
    model = pyrovae.load(copied / kind)
    assert not model.training
    assert read_config(copied / kind)["format_version"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_of_4f9623b_evaluates_to_the_same_nll(copied, kind, monkeypatch, capsys):
    monkeypatch.chdir(copied.parent)  # not the folder the run was trained from
    assert main(["evaluate", str(copied / kind), *EVALUATE]) == 0
    metrics = json.loads((copied / kind / "metrics.json").read_text())
    expected = EXPECTED[kind]
    assert metrics["test_nll"] == pytest.approx(expected["test_nll"], rel=1e-6, abs=1e-4)
    assert metrics["test_elbo"] == pytest.approx(expected["test_elbo"], rel=1e-6, abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_of_4f9623b_resumes(tmp_path, kind, monkeypatch):
    run = tmp_path / "runs" / kind
    shutil.copytree(FIXTURES, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    before = torch.load(run / "checkpoint.pt", weights_only=True)["train_state"]["epoch"]
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert before == 1 and state["train_state"]["epoch"] == 2
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == 2 and config["train"]["epochs"] == 2


def test_a_moved_file_is_named_in_one_line(tmp_path, capsys):
    shutil.copytree(FIXTURES, tmp_path / "runs")
    (tmp_path / "runs" / "table.csv").rename(tmp_path / "elsewhere.csv")
    assert main(["evaluate", str(tmp_path / "runs" / "csv_mask"), *EVALUATE]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "table.csv, the dataset file that" in err and "is not there (moved?)" in err
    assert "pass --dataset with its new place" in err
    other = ["--dataset", str(tmp_path / "elsewhere.csv")]
    assert main(["evaluate", str(tmp_path / "runs" / "csv_mask"), *EVALUATE, *other]) == 0
