"""What pyrovae learns about a program: its modules, its plate, its enumerated sites."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from torch import nn

from pyrovae.inference.enumeration import FixSites, enumerated_sites, wrapped_by_config_enumerate
from pyrovae.inference.programs import evaluating, owner_modules
from pyrovae.inference.sites import find_plate


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3)

    def model(self, x):
        with pyro.plate("cells", len(x)):
            pyro.sample("y", dist.Categorical(logits=torch.zeros(4)))

    def guide(self, x):
        with pyro.plate("cells", len(x)):
            pyro.sample("y", dist.Categorical(logits=torch.zeros(4)))


def test_owner_modules_see_through_bound_methods_and_pyro_handlers():
    net = Net()
    wrapped = config_enumerate(net.guide, "parallel", expand=True)
    assert owner_modules(wrapped) == [net]
    assert owner_modules(poutine.scale(net.model, scale=0.5), net.guide) == [net]
    assert owner_modules(lambda x: None) == []


def test_evaluating_restores_each_modules_own_mode():
    net = Net()
    net.bn.eval()
    with evaluating(net.model):
        assert not net.training and not net.bn.training
    assert net.training and not net.bn.training


def test_find_plate_and_enumerated_sites():
    net = Net()
    guide = config_enumerate(net.guide, "parallel")
    assert wrapped_by_config_enumerate(guide) and not wrapped_by_config_enumerate(net.guide)
    trace = poutine.trace(guide).get_trace(torch.zeros(5, 3))
    assert find_plate([trace], 5) == "cells"
    assert enumerated_sites(trace) == {"y": 4}


def test_fix_sites_pins_a_value_as_observed():
    net = Net()
    trace = poutine.trace(FixSites({"y": 2})(net.guide)).get_trace(torch.zeros(5, 3))
    site = trace.nodes["y"]
    assert site["is_observed"] and site["value"].tolist() == [2] * 5
