"""Real tables: CSV files with empty cells, standardisation, and the CLI round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyrovae.cli import main
from pyrovae.data.tables import Standardizer, read_csv
from pyrovae.errors import PyrovaeError
from pyrovae.rundir.files import write_table


def _csv(path, text: str):
    path.write_text(text)
    return path


def test_a_csv_with_a_header_and_empty_cells(tmp_path):
    path = _csv(tmp_path / "t.csv", "a,b,c\n1,,3\n4,5,NaN\n7.5,8,9\n")
    values, header = read_csv(path)
    assert header == ["a", "b", "c"]
    assert np.isnan(values[0, 1]) and np.isnan(values[1, 2]) and values[2, 0] == 7.5
    values, header = read_csv(_csv(tmp_path / "u.csv", "1,2\n3,\n"))
    assert header is None and values.shape == (2, 2)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,x\n2,3\n", r"column 2 \('b'\) is not numeric \(line 2 holds 'x'\)"),
        ("a,b\n1,\n2,\n", r"column 2 \('b'\) is missing in every row"),
        ("a,b\n1,2\n,\n3,4\n", "line 3 is missing in every column"),
        ("a,b\n1,2,3\n", "has 3 cells, the table 2"),
    ],
)
def test_tables_that_cannot_be_modelled_are_one_line_errors(tmp_path, text, match):
    with pytest.raises(PyrovaeError, match=match):
        read_csv(_csv(tmp_path / "t.csv", text))


def test_write_table_round_trips_every_value_exactly(tmp_path):
    values = np.array([[17.99, 1e-30], [np.pi, -2.5]])
    write_table(tmp_path / "o.csv", values, ["a", "b"])
    back, header = read_csv(tmp_path / "o.csv")
    assert header == ["a", "b"] and np.array_equal(back, values)


def test_standardizer_uses_observed_entries_only():
    x = torch.tensor([[1.0, float("nan")], [3.0, 4.0], [5.0, 8.0]])
    scaler = Standardizer.fit(x)
    assert torch.allclose(scaler.mean, torch.tensor([3.0, 6.0]))
    z = scaler.forward(x)
    assert torch.isnan(z[0, 1]) and torch.allclose(scaler.inverse(z)[1:], x[1:])
    assert torch.equal(Standardizer.from_config(scaler.to_config()).std, scaler.std)


def test_a_csv_with_empty_cells_trains_evaluates_and_imputes(tmp_path, capsys):
    gen = np.random.default_rng(0)
    table = gen.normal(size=(80, 3)) @ gen.normal(size=(3, 6)) * 10 + 50
    holes = gen.random(table.shape) < 0.3
    holes[:, 0] &= gen.random(80) < 0.5
    lines = ["c0,c1,c2,c3,c4,c5"] + [
        ",".join("" if h else repr(float(v)) for v, h in zip(row, hrow, strict=True))
        for row, hrow in zip(table, holes, strict=True)
    ]
    data = _csv(tmp_path / "table.csv", "\n".join(lines) + "\n")
    run = tmp_path / "run"
    args = ["train", "--dataset", str(data), "--missing", "mask", "--standardize"]
    args += ["--likelihood", "student-t", "--z-dim", "2", "--hidden", "16", "--epochs", "3"]
    assert main([*args, "--out", str(run), "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (
        config["train"]["missing"] == "mask" and len(config["data"]["standardizer"]["mean"]) == 6
    )
    assert main(["evaluate", str(run), "--num-samples", "10"]) == 0
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["test_nll"])
    assert main(["report", str(run)]) == 0
    # Samples as an array come back in the table's own units, not standardised ones
    assert main(["sample", str(run), "--out", str(tmp_path / "s.npy"), "--n", "7"]) == 0
    samples = np.load(tmp_path / "s.npy")
    from pyrovae import load
    from pyrovae.use import plots

    scaler = Standardizer.from_config(config["data"]["standardizer"])
    expected = scaler.inverse(plots.seeded_samples(load(run), 7, 0)).numpy()
    assert samples.shape == (7, 6) and np.allclose(samples, expected)
    assert abs(samples.mean() - table.mean()) < 5 * table.std()
    out = tmp_path / "filled.csv"
    assert main(["impute", str(run), "--dataset", str(data), "--out", str(out)]) == 0
    filled, header = read_csv(out)
    original, _ = read_csv(data)
    assert header[0] == "c0" and filled.shape == (80, 6) and not np.isnan(filled).any()
    assert np.array_equal(filled[~holes], original[~holes])  # observed entries unchanged
    many = tmp_path / "many.npy"
    args = ["impute", str(run), "--dataset", str(data), "--out", str(many), "--multiple", "4"]
    assert main(args) == 0
    draws = np.load(many)
    assert draws.shape == (4, 80, 6) and (draws[:, ~holes] == original[~holes]).all()
    capsys.readouterr()
