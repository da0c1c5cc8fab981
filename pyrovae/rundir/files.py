"""Files of a run folder and of its outputs, written atomically.

Every file is written to a temporary name in the same folder and renamed over the old
one (:func:`atomic_write`), so a process killed at any instant leaves the last good file
intact: a run's ``config.json`` and ``history.json``, its checkpoint, and what the
commands write (tables, arrays, figures).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyrovae.errors import Param, PyrovaeError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file, flush it to disk, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True), mode="w")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with one-line errors for a missing or corrupt file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PyrovaeError(f"{path} does not exist; is this a pyrovae run folder?") from None
    except (OSError, ValueError) as err:
        raise PyrovaeError(f"{path} is unreadable or corrupt: {err}") from None


def check_output(path: str | Path, suffixes: Sequence[str]) -> Path:
    """``path`` as an output file: one of ``suffixes``, in a folder that exists."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise PyrovaeError(Param("out", str(path)), f" must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise PyrovaeError(Param("out", str(path)), f": folder {path.parent} does not exist")
    return path


def write_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` to a ``.npy`` file, atomically."""
    atomic_write(check_output(path, (".npy",)), lambda f: np.save(f, array))


def write_table(path: str | Path, values: np.ndarray, header: list[str] | None = None) -> None:
    """Write a table as ``.csv`` (with the header, if any) or ``.npy``, atomically."""
    path = Path(path)
    check_output(path, (".csv", ".npy"))
    if path.suffix == ".npy":
        atomic_write(path, lambda f: np.save(f, values))
        return

    def write(f: Any) -> None:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows([[repr(float(v)) for v in row] for row in values])

    atomic_write(path, write, mode="w")
