"""Errors name Python parameters in Python and flags on the command line."""

from __future__ import annotations

import pytest

import pyrovae
from pyrovae.cli import build_parser
from pyrovae.cli.flags import RENAMED, flags, speller
from pyrovae.errors import Param, PyrovaeError


@pytest.fixture(scope="module")
def spell():
    return speller(build_parser())


def test_a_parameter_is_its_flag_on_the_command_line(spell):
    assert spell(Param("z_dim")) == "--z-dim"
    assert spell(Param("loss", "trace")) == "--loss trace"
    assert spell(Param("code_dim", within="posterior_kwargs")) == "--guide-arg code_dim"
    assert (
        spell(Param("num_components", 3, within="prior_kwargs")) == "--prior-arg num_components=3"
    )
    assert spell(Param("force", True)) == "--force"  # a switch takes no value
    assert spell(Param("posterior", "vq")) == "--guide vq"
    assert spell(Param("plate")) == "plate"  # no flag: the Python name


def test_every_renamed_parameter_names_a_real_flag():
    known, _ = flags(build_parser())
    options = {
        option
        for sub in build_parser()._subparsers._group_actions[0].choices.values()
        for action in sub._actions
        for option in action.option_strings
    }
    assert set(RENAMED.values()) <= options and set(known.values()) <= options


def test_one_error_in_both_words(spell):
    with pytest.raises(PyrovaeError) as err:
        pyrovae.VAE(z_dim=50, posterior="vq", posterior_kwargs={"code_dim": 7})
    python = str(err.value)
    assert "(set code_dim to a divisor of z_dim)" in python and "--" not in python
    assert "(set --guide-arg code_dim to a divisor of --z-dim)" in err.value.spelled(spell)
