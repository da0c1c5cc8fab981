"""Write pyrovae/data/bundled/moses_sample.csv.gz: a seeded sample of MOSES.

MOSES (Polykovskiy et al. 2020, MIT licence) ships its train and test SMILES as data
files of the ``molsets`` wheel. This script draws 50,000 training and 5,000 test SMILES
from them without replacement (seed 0, kept in the files' order) and writes one gzipped
CSV with columns ``SMILES,SPLIT``, so that ``--dataset moses-sample`` runs offline. The
output is byte-for-byte reproducible (gzip without a timestamp).

Usage::

    python scripts/make_moses_sample.py [--moses-dir DIR] [--out FILE]

``DIR`` defaults to the installed wheel's ``moses`` folder, found without importing it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from importlib.util import find_spec
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "pyrovae" / "data" / "bundled" / "moses_sample.csv.gz"
SIZES = {"train": 50_000, "test": 5_000}
SEED = 0


def moses_dir() -> Path:
    """The installed ``molsets`` wheel's package folder (its ``__init__`` not run)."""
    spec = find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("molsets is not installed: pip install --no-deps molsets")
    return Path(list(spec.submodule_search_locations)[0])


def read_smiles(path: Path) -> list[str]:
    """The SMILES column of a MOSES ``.csv.gz``."""
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        column = next(reader).index("SMILES")
        return [row[column] for row in reader if row]


def sample(smiles: list[str], size: int, rng: np.random.Generator) -> list[str]:
    """``size`` of ``smiles`` drawn without replacement, in their original order."""
    chosen = np.sort(rng.choice(len(smiles), size=size, replace=False))
    return [smiles[i] for i in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moses-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = (args.moses_dir or moses_dir()) / "dataset" / "data"
    rng = np.random.default_rng(SEED)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["SMILES", "SPLIT"])
    for split, size in SIZES.items():
        for smiles in sample(read_smiles(data / f"{split}.csv.gz"), size, rng):
            writer.writerow([smiles, split])
    with open(args.out, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as f:
        f.write(text.getvalue().encode("ascii"))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
