"""Real tables: numeric CSV files with empty cells, and per-column standardisation.

A CSV is read as numbers, one row a datapoint: a header row is allowed (and kept as the
column names), and an empty cell or ``NaN`` (``nan``, ``NA``) is a missing entry. A
column that is not numeric, a column missing everywhere and a row missing everywhere
are refused with one line each, since none of them can be modelled.

:class:`Standardizer` holds per-column means and standard deviations computed from the
*observed* training entries; a run stores them, and every output (imputed tables) is
mapped back to the original units.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.errors import PyrovaeError

#: Cells read as a missing entry (besides the empty cell), compared in lower case.
MISSING_CELLS = {"", "nan", "na", "n/a", "null"}


def _number(cell: str) -> float | None:
    text = cell.strip()
    if text.lower() in MISSING_CELLS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def read_csv(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """A numeric table (float64) with NaN for missing entries, and its header (or None)."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"data file {path} does not exist")
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    if not rows:
        raise PyrovaeError(f"{path} is empty: it holds no datapoints")
    header = None
    if any(_number(c) is None for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0])
    values = np.full((len(rows), width), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise PyrovaeError(
                f"{path}: line {i + 1 + bool(header)} has {len(row)} cells, the table {width}"
            )
        for j, cell in enumerate(row):
            value = _number(cell)
            if value is None:
                name = f" ({header[j]!r})" if header else ""
                raise PyrovaeError(
                    f"{path}: column {j + 1}{name} is not numeric (line {i + 1 + bool(header)} "
                    f"holds {cell.strip()!r}); pyrovae reads numeric tables only"
                )
            values[i, j] = value
    check_table(values, str(path), header, first_line=1 + bool(header))
    return values, header


def check_table(
    values: np.ndarray,
    source: str,
    header: list[str] | None = None,
    first_line: int | None = None,
) -> None:
    """Refuse a table with no rows, a column missing everywhere or a row missing everywhere.

    Rows are named by their line in the file when ``first_line`` (that of the first
    row) is given, else counted from 1.
    """
    if values.shape[0] == 0:
        raise PyrovaeError(f"{source} is empty: it holds no datapoints")
    if np.isinf(values).any():
        raise PyrovaeError(f"{source} contains infinite values; only empty cells mean missing")
    missing = np.isnan(values)
    columns = np.flatnonzero(missing.all(0))
    if columns.size:
        j = int(columns[0])
        name = f" ({header[j]!r})" if header else ""
        raise PyrovaeError(
            f"{source}: column {j + 1}{name} is missing in every row; drop it: nothing can be "
            "learned about it"
        )
    rows = np.flatnonzero(missing.all(1))
    if rows.size:
        where = f"line {int(rows[0]) + first_line}" if first_line else f"row {int(rows[0]) + 1}"
        raise PyrovaeError(
            f"{source}: {where} is missing in every column ({rows.size} such "
            f"row{'s' if rows.size > 1 else ''}); drop them: they carry no information"
        )


@dataclass
class Standardizer:
    """Per-column (x - mean) / std, from the observed entries of the training data."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        """Means and standard deviations of each column's observed entries."""
        mean = torch.nanmean(x, 0)
        std = torch.nanmean((x - mean) ** 2, 0).sqrt()
        return cls(mean, torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """To standard units (NaN stays NaN)."""
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Back to the original units."""
        return x * self.std.to(x) + self.mean.to(x)

    def to_config(self) -> dict[str, list[float]]:
        """Plain lists, for config.json."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, config: dict[str, list[float]]) -> Standardizer:
        return cls(torch.tensor(config["mean"]), torch.tensor(config["std"]))


def standardize_dataset(data: Any, data_cfg: dict[str, Any]) -> Any:
    """Standardise a :class:`~pyrovae.data.datasets.DataSplit` as its run config says.

    With ``data_cfg["standardize"]`` the statistics come from ``data_cfg["standardizer"]``
    when a run stored them, else from the observed training entries (and are stored).
    """
    if not data_cfg.get("standardize"):
        return data
    if data_cfg.get("standardizer") is None:
        data_cfg["standardizer"] = Standardizer.fit(data.train).to_config()
    scaler = Standardizer.from_config(data_cfg["standardizer"])
    return dataclasses.replace(
        data, train=scaler.forward(data.train), test=scaler.forward(data.test)
    )
