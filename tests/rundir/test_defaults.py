"""A new run's defaults by kind of data: every entry names settings that exist, the kind
is read from the dataset, the budget and patience follow the data's size, and the help
and the docs say what the table holds."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pyrovae.cli import main
from pyrovae.cli.train_flags import _defaults_epilog
from pyrovae.models.vae import VAE
from pyrovae.parts.likelihoods import LIKELIHOODS
from pyrovae.rundir.config import upgrade
from pyrovae.rundir.defaults import (
    DATA_DEFAULTS,
    MIN_PATIENCE,
    TABLE_PATIENCE_STEPS,
    TABLE_STEPS,
    data_kind,
    steps_per_epoch,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs_4f9623b"


@pytest.mark.parametrize("kind", sorted(DATA_DEFAULTS))
def test_each_kind_names_settings_that_exist(kind):
    defaults = DATA_DEFAULTS[kind]
    assert set(defaults.model) <= set(inspect.signature(VAE).parameters)
    old = json.loads((FIXTURES / "vae" / "config.json").read_text())
    train_keys = set(upgrade(old)["train"])
    assert set(defaults.training) <= train_keys | {"epochs"}
    likelihood = LIKELIHOODS[defaults.model.get("likelihood", "bernoulli")]
    assert set(defaults.likelihood_kwargs) <= set(inspect.signature(likelihood).parameters)
    if defaults.model:
        VAE(x_dim=12, vocab_size=9 if kind == "sequences" else None, **defaults.model)


@pytest.mark.parametrize(
    ("dataset", "column", "missing", "kind"),
    [
        ("sample", None, "error", "images"),
        ("x.npz", None, "error", "images"),
        ("t.csv", None, "error", "table"),
        ("t.csv", None, "mask", "incomplete-table"),
        ("t.csv", "smiles", "error", "sequences"),
        ("mols.smi", None, "error", "sequences"),
        ("moses-sample", None, "error", "sequences"),
    ],
)
def test_the_kind_of_data_is_read_from_the_dataset(dataset, column, missing, kind):
    assert data_kind(dataset, column, missing) == kind


@pytest.mark.parametrize(("n_train", "batch", "epochs"), [(142, 64, 6667), (455, 64, 2500)])
def test_a_table_s_budget_is_counted_in_steps(n_train, batch, epochs):
    table = DATA_DEFAULTS["table"]
    assert table.epochs(n_train, batch) == epochs
    per_epoch = steps_per_epoch(n_train, batch)
    assert abs(epochs * per_epoch - TABLE_STEPS) <= per_epoch
    assert table.patience(n_train, batch) == -(-TABLE_PATIENCE_STEPS // per_epoch)
    assert table.patience(10**6, 64) == MIN_PATIENCE  # big data: at least a few epochs
    assert DATA_DEFAULTS["images"].epochs(n_train, batch) is None
    assert DATA_DEFAULTS["images"].patience(n_train, batch) is None


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_docs_state_the_defaults_of_incomplete_tables():
    """The missing-data guide quotes the help's line for incomplete tables word for word."""
    kinds = re.split(r"\n  (?=\S)", _defaults_epilog())
    line = next(x for x in kinds if x.startswith("a table with"))
    assert _flat(line) in _flat((DOCS / "howto" / "missing_data.md").read_text())


def _table(path: Path, rows: int = 60, holes: float = 0.0) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2)) @ rng.normal(size=(2, 4))
    x[rng.random(x.shape) < holes] = np.nan
    np.savetxt(path, x, delimiter=",")
    return path


def test_a_table_trains_to_its_budget_and_stops_early(tmp_path, capsys):
    data, out = _table(tmp_path / "t.csv"), tmp_path / "run"
    args = ["train", "--dataset", str(data), "--likelihood", "gaussian", "--z-dim", "2"]
    args += ["--hidden", "8", "--lr", "0.05", "--early-stopping", "3", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["epochs"] == round(TABLE_STEPS / 1) and train["early_stopping"] == 3
    history = json.loads((out / "history.json").read_text())
    stopped, best = history["epoch"][-1], history["best_epoch"][-1]
    assert stopped == best + 3 < train["epochs"]
    said = capsys.readouterr().out
    assert f"stopped early at epoch {stopped} of {train['epochs']}" in said
    assert f"kept the parameters of epoch {best}" in said


def test_an_incomplete_table_gets_the_imputation_settings(tmp_path):
    data, out = _table(tmp_path / "t.csv", holes=0.2), tmp_path / "run"
    args = ["train", "--dataset", str(data), "--missing", "mask", "--epochs", "1"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    defaults = DATA_DEFAULTS["incomplete-table"]
    model = {k: config["model"][k] for k in defaults.model}
    assert model == {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.model.items()}
    assert config["model"]["likelihood_kwargs"] == dict(defaults.likelihood_kwargs)
    assert {k: config["train"][k] for k in defaults.training} == dict(defaults.training)
    patience = defaults.patience(config["data"]["n_train"], 64)
    assert config["train"]["early_stopping"] == patience


def test_no_early_stopping_trains_every_epoch_and_says_when_it_still_improved(tmp_path, capsys):
    data, out = _table(tmp_path / "t.csv"), tmp_path / "run"
    args = ["train", "--dataset", str(data), "--likelihood", "gaussian", "--z-dim", "2"]
    args += ["--hidden", "8", "--epochs", "4", "--no-early-stopping", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["early_stopping"] == 0
    assert "best_epoch" not in json.loads((out / "history.json").read_text())


def test_early_stopping_does_not_apply_on_resume(tmp_path, capsys):
    data, out = _table(tmp_path / "t.csv"), tmp_path / "run"
    args = ["train", "--dataset", str(data), "--likelihood", "gaussian", "--z-dim", "2"]
    assert main([*args, "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "2", "--early-stopping", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--early-stopping does not apply with --resume" in err
