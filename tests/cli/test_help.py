"""``pyrovae <command> --help`` says what it said at 4f9623b, byte for byte.

The layout of the package changed under the command line, not the command line: the
help of every command is compared with what commit 4f9623b printed
(``tests/fixtures/help_4f9623b``, at a terminal 100 columns wide). A deliberate change
of a flag updates that file in the same commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrovae.cli import COMMANDS, build_parser

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "help_4f9623b"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_unchanged(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*([command] if command else []), "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out == (GOLDEN / f"{command or 'main'}.txt").read_text()


def test_every_command_has_its_help_on_file():
    assert {p.stem for p in GOLDEN.glob("*.txt")} == {"main", *COMMANDS}
