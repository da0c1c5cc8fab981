"""``pyrovae <command> --help`` says what the files on record say, byte for byte.

The help of every command is compared with ``tests/fixtures/help`` (at a terminal 100
columns wide), first written at commit 4f9623b, before the package's layout changed
under the command line: a change of layout leaves it alone, and a deliberate change of
a flag updates that file in the same commit (``git log tests/fixtures/help`` lists them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrovae.cli import COMMANDS, build_parser

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "help"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_unchanged(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*([command] if command else []), "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out == (GOLDEN / f"{command or 'main'}.txt").read_text()


def test_every_command_has_its_help_on_file():
    assert {p.stem for p in GOLDEN.glob("*.txt")} == {"main", *COMMANDS}
