"""Every bad input of docs/errors.md gets exactly the message the table shows.

Each row of the table is run here, in a fresh folder holding the files the row needs,
and what the command line prints (and its exit status) must be the row's text, letter
for letter. ``python tests/test_errors_doc.py`` prints the table from the commands, to
paste into docs/errors.md when a message changes on purpose.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import socket
import sys
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _images(n: int = 200) -> np.ndarray:
    gen = np.random.default_rng(0)
    return (gen.random((n, 28, 28)) < 0.2).astype(np.uint8) * 255


def _evil_checkpoint(path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    torch.save({"format": "pyrovae-checkpoint", "payload": Evil()}, path)


def _edit_checkpoint(path: Path, **changes) -> None:
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save(state, path)


def _lock(folder: str, host: str | None = None) -> None:
    """A lock held by process 1 (always alive) on this host (HOST in the table) or another."""
    started = datetime.now(timezone.utc).isoformat()
    record = {"pid": 1, "host": host or socket.gethostname(), "started": started}
    Path(folder, ".lock").write_text(json.dumps(record))


def _edit_config(path: Path) -> None:
    text = path.read_text().replace('"z_dim": 4', '"z_dim": 8')
    path.write_text(text)


#: (bad input, command, how to make the files it needs in the current folder)
ROWS = [
    ("missing data file", "pyrovae train --dataset missing.npy", None),
    (
        "corrupt data file",
        "pyrovae train --dataset junk.npz",
        lambda: Path("junk.npz").write_bytes(b"not a zip archive"),
    ),
    (
        "data file of Python objects",
        "pyrovae train --dataset objects.npy",
        lambda: np.save("objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
    ),
    (
        "wrong shape",
        "pyrovae train --dataset shape.npy",
        lambda: np.save("shape.npy", np.zeros(10)),
    ),
    (
        "empty dataset",
        "pyrovae train --dataset empty.npy",
        lambda: np.save("empty.npy", np.zeros((0, 784))),
    ),
    (
        "NaN or Inf values",
        "pyrovae train --dataset nan.npy",
        lambda: np.save("nan.npy", np.where(np.eye(20, 784) > 0, np.nan, 0.5)),
    ),
    (
        "values outside the likelihood's support",
        "pyrovae train --dataset grey.npy --binarize none",
        lambda: np.save("grey.npy", np.full((20, 784), 0.5)),
    ),
    (
        "values outside [0, 1] to binarise",
        "pyrovae train --dataset big.npy",
        lambda: np.save("big.npy", np.full((20, 784), 3.0)),
    ),
    ("--out at an existing run", "pyrovae train --dataset tiny.npy --out run", "run"),
    ("unknown prior", "pyrovae train --prior cauchy", None),
    ("unknown likelihood", "pyrovae train --likelihood beta", None),
    ("unknown guide", "pyrovae train --guide nf", None),
    ("a prior with the vq guide", "pyrovae train --guide vq --prior mog", None),
    (
        "a vq code size that does not divide z",
        "pyrovae train --guide vq --guide-arg code_dim=7",
        None,
    ),
    ("unknown loss", "pyrovae train --loss vimco", None),
    ("CUDA where there is none", "pyrovae train --device cuda", None),
    ("negative epochs", "pyrovae train --epochs -1", None),
    ("zero batch size", "pyrovae train --batch-size 0", None),
    (
        "--conditional on data without labels",
        "pyrovae train --conditional --dataset tiny.npy",
        None,
    ),
    (
        "--label on a run that is not conditional",
        "pyrovae sample run --label 3 --out s.png",
        "run",
    ),
    ("K < 1", "pyrovae evaluate run --num-samples 0", "run"),
    ("missing run folder", "pyrovae evaluate nowhere", None),
    (
        "corrupt checkpoint",
        "pyrovae evaluate run",
        ("run", lambda: Path("run/checkpoint.pt").write_bytes(b"\x00garbage")),
    ),
    (
        "checkpoint holding a pickled object",
        "pyrovae evaluate run",
        ("run", lambda: _evil_checkpoint(Path("run/checkpoint.pt"))),
    ),
    (
        "checkpoint of an incompatible version",
        "pyrovae evaluate run",
        ("run", lambda: _edit_checkpoint(Path("run/checkpoint.pt"), format_version=99)),
    ),
    (
        "checkpoint from another configuration",
        "pyrovae train --resume run --epochs 3",
        ("run", lambda: _edit_config(Path("run/config.json"))),
    ),
    ("resuming a finished run", "pyrovae train --resume run", "run"),
    ("resuming a missing run", "pyrovae train --resume nowhere", None),
    (
        "resuming a run another process trains",
        "pyrovae train --resume run",
        ("run", lambda: _lock("run")),
    ),
    (
        "--force on a run another process trains",
        "pyrovae train --dataset tiny.npy --out run --force",
        ("run", lambda: _lock("run")),
    ),
    (
        "a run locked on another host",
        "pyrovae train --resume run",
        ("run", lambda: _lock("run", host="gpu-node-7")),
    ),
    ("a --model file that does not exist", "pyrovae train --model missing.py:Net", None),
    (
        "a --model class the file lacks",
        "pyrovae train --model net.py:Missing --dataset arrays.npz",
        lambda: _user_files(),
    ),
    (
        "a flag of the built-in VAE with --model",
        "pyrovae train --model net.py:Net --z-dim 3 --dataset arrays.npz",
        lambda: _user_files(),
    ),
    (
        "a .npz split for some arrays only",
        "pyrovae train --model net.py:Net --dataset half.npz",
        lambda: _user_files(),
    ),
    (
        "a non-numeric column in a table",
        "pyrovae train --dataset words.csv",
        lambda: Path("words.csv").write_text("a,b\n1,x\n2,3\n"),
    ),
    (
        "a table column missing everywhere",
        "pyrovae train --dataset hole.csv --missing mask",
        lambda: Path("hole.csv").write_text("a,b\n1,\n2,\n3,\n"),
    ),
    (
        "a table row missing everywhere",
        "pyrovae train --dataset row.csv --missing mask",
        lambda: Path("row.csv").write_text("a,b\n1,2\n,\n3,4\n"),
    ),
    (
        "empty cells without --missing mask",
        "pyrovae train --dataset gaps.csv --likelihood gaussian",
        lambda: Path("gaps.csv").write_text("a,b\n1,2\n,5\n3,4\n6,\n7,8\n"),
    ),
    (
        "a VAE-only command on a user model",
        "pyrovae sample user --out s.png",
        lambda: _user_run(),
    ),
]


def _user_files() -> None:
    """A user's model file and .npz files of named arrays, in the current folder."""
    Path("net.py").write_text(
        "import pyro, pyro.distributions as dist, torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.loc = torch.nn.Parameter(torch.zeros(2))\n"
        "    def model(self, x):\n"
        "        pyro.module('net', self)\n"
        "        with pyro.plate('rows', len(x)):\n"
        "            pyro.sample('x', dist.Normal(self.loc, 1.0).to_event(1), obs=x)\n"
        "    def guide(self, x):\n"
        "        pass\n"
    )
    np.savez("arrays.npz", x=np.zeros((10, 2), dtype=np.float32))
    np.savez("half.npz", x_train=np.zeros((10, 2)), y=np.zeros(10))


def _user_run() -> None:
    from pyrovae.cli import main

    _user_files()
    with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
        args = "train --model net.py:Net --dataset arrays.npz --epochs 1 --out user"
        assert main([*args.split(), "--no-progress"]) == 0


def train_tiny(folder: Path) -> Path:
    """Train a run folder ``folder/run`` for one epoch on small random images."""
    from pyrovae.cli import main

    np.save(folder / "tiny.npy", _images())
    old = os.getcwd()
    os.chdir(folder)
    try:
        args = "train --dataset tiny.npy --epochs 1 --z-dim 4 --hidden 16 --out run"
        with redirect_stderr(io.StringIO()):
            assert main([*args.split(), "--no-progress"]) == 0
    finally:
        os.chdir(old)
    return folder / "run"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder trained for one epoch, copied into each row's folder."""
    return train_tiny(tmp_path_factory.mktemp("trained"))


def run_row(command: str, setup, trained: Path, folder: Path) -> tuple[str, int]:
    """Run one row's command in ``folder``; return what it printed on stderr and its status."""
    from pyrovae.cli import main

    old = os.getcwd()
    os.chdir(folder)
    try:
        np.save("tiny.npy", _images())
        steps = setup if isinstance(setup, tuple) else (setup,)
        for step in steps:
            if step == "run":
                shutil.copytree(trained, "run")
            elif step is not None:
                step()
        err = io.StringIO()
        with redirect_stderr(err):
            try:
                code = main(shlex.split(command)[1:])
            except SystemExit as exit_info:
                code = exit_info.code
        # this machine's name shows as HOST, so that the table reads the same everywhere
        message = err.getvalue().strip().replace(f" on {socket.gethostname()} (", " on HOST (")
        return message, code
    finally:
        os.chdir(old)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _parse_doc() -> list[tuple[str, str, str, int]]:
    rows = []
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| (.+?) \| `(pyrovae .+?)` \| `(.+)` \| (\d) \|$", line)
        if match:
            bad, command, message, code = match.groups()
            rows.append((bad, command, message.replace("\\|", "|"), int(code)))
    return rows


def test_the_doc_lists_every_row():
    assert [(b, c) for b, c, _, _ in _parse_doc()] == [(b, c) for b, c, _ in ROWS]


@pytest.mark.parametrize(("bad", "command", "setup"), ROWS, ids=[r[0] for r in ROWS])
def test_the_cli_prints_what_the_doc_says(bad, command, setup, trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    doc = {b: (m, c) for b, _, m, c in _parse_doc()}
    message, code = run_row(command, setup, trained_run, tmp_path)
    assert "\n" not in message and "Traceback" not in message
    assert (message, code) == doc[bad]
    assert code != 0


if __name__ == "__main__":  # print the table for docs/errors.md
    import tempfile

    torch.cuda.is_available = lambda: False
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        trained = train_tiny(base)
        print("| bad input | command | what pyrovae prints on stderr | exit status |")
        print("| --- | --- | --- | --- |")
        for i, (bad, command, setup) in enumerate(ROWS):
            folder = base / f"row{i}"
            folder.mkdir()
            message, code = run_row(command, setup, trained, folder)
            print(f"| {bad} | `{command}` | `{_cell(message)}` | {code} |")
    sys.exit(0)
