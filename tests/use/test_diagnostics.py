"""Posterior-collapse diagnostics against closed forms, and in evaluate and the report."""

from __future__ import annotations

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.use.diagnostics import latent_units, summary, unit_marginals

A = torch.tensor([1.0, 0.5, 0.0])  # unit 2's posterior mean ignores x: dead
S = torch.tensor([0.5, 1.0, 1.0])  # and its posterior is the prior: KL 0


def model(x):
    with pyro.plate("rows", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def guide(x):
    with pyro.plate("rows", x.shape[0]):
        pyro.sample("z", dist.Normal(A * x, S).to_event(1))


def test_active_units_and_kl_per_unit_equal_their_closed_forms():
    x = torch.randn(500, 3, dtype=torch.float64).float()
    units = latent_units(model, guide, x, batch_size=128)["z"]
    mean = A * x.double()
    assert torch.allclose(units.variance.double(), mean.var(0, unbiased=False), atol=1e-5)
    # KL(N(m, s) || N(0, 1)) = (s^2 + m^2 - 1) / 2 - log s, averaged over the data
    expected = (0.5 * (S.double() ** 2 + mean**2 - 1) - S.double().log()).mean(0)
    assert torch.allclose(units.kl.double(), expected, atol=1e-5)
    assert units.analytic
    assert units.active.tolist() == [True, True, False] and units.active_units == 2
    assert float(units.kl[2]) == pytest.approx(0.0, abs=1e-6)


def test_a_vae_with_a_dead_unit_by_construction():
    vae = pyrovae.VAE(z_dim=4, hidden=(16,))
    last = [m for m in vae.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # unit 1: loc 0 and scale 1 whatever x is, so q = p
        for row in (1, 4 + 1):
            last.weight[row].zero_()
        last.bias[1] = 0.0
        last.bias[5] = math.log(math.expm1(1.0 - 1e-4))
    x = torch.bernoulli(torch.full((300, 784), 0.3))
    units = latent_units(vae.model, vae.guide, x)["z"]
    assert not bool(units.active[1]) and float(units.variance[1]) == pytest.approx(0, abs=1e-10)
    assert float(units.kl[1]) == pytest.approx(0.0, abs=1e-5)
    assert units.kl.shape == (4,) and bool((units.kl[[0, 2, 3]] > 0).all())


def test_mixture_marginals_are_the_per_unit_mixtures():
    logits = torch.tensor([0.3, -0.2])
    locs, scales = torch.randn(2, 3), torch.rand(2, 3) + 0.5
    mix = dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.Normal(locs, scales).to_event(1)
    )
    marginal = unit_marginals(mix)
    z = torch.randn(5, 3)
    expected = torch.logsumexp(
        logits.log_softmax(-1) + dist.Normal(locs, scales).log_prob(z[:, None, :]).movedim(-1, 1),
        -1,
    )
    assert torch.allclose(marginal.log_prob(z), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("prior", "guide_name", "analytic"),
    [
        ("mog", "diagonal", False),
        ("standard", "lowrank", True),
        ("flow", "diagonal", None),
        ("standard", "vq", None),  # codes: no per-unit marginals (each code costs log K)
    ],
)
def test_every_kind_of_prior_and_guide_is_diagnosed_or_said_not_to_be(prior, guide_name, analytic):
    vae = pyrovae.VAE(z_dim=3, hidden=(8,), prior=prior, posterior=guide_name)
    units = latent_units(vae.model, vae.guide, torch.bernoulli(torch.full((40, 784), 0.3)))["z"]
    assert units.variance.shape == (3,)
    if analytic is None:  # a flow has no per-unit marginal: no KL, said so
        assert units.kl is None and not units.analytic
        assert summary({"z": units})["kl_per_dim"] == {"z": None}
    else:
        assert units.kl.shape == (3,) and units.analytic == analytic
        assert bool(torch.isfinite(units.kl).all())


def test_iaf_guide_gets_its_posterior_mean_by_sampling():
    vae = pyrovae.VAE(z_dim=3, hidden=(8,), posterior="iaf")
    units = latent_units(vae.model, vae.guide, torch.bernoulli(torch.full((40, 784), 0.3)))["z"]
    assert units.kl is None and bool(torch.isfinite(units.variance).all())


def test_each_layer_of_a_hierarchical_program_is_diagnosed():
    def two_layers(x):
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2.repeat(1, 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z1, 1.0).to_event(1), obs=x)

    def two_guides(x):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(x, 0.5).to_event(1))
            pyro.sample("z2", dist.Normal(z1[:, :2], 0.5).to_event(1))

    units = latent_units(two_layers, two_guides, torch.randn(64, 4))
    assert list(units) == ["z1", "z2"]
    assert units["z1"].kl.shape == (4,) and units["z2"].kl.shape == (2,)


def test_evaluate_writes_the_diagnostics_and_the_report_draws_them(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--num-samples", "2"]) == 0
    assert "units active" in capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["active_units"]) == {"z"} and 0 <= metrics["active_units"]["z"] <= 4
    assert (
        len(metrics["kl_per_dim"]["z"]) == 4 and len(metrics["posterior_mean_variance"]["z"]) == 4
    )
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert "posterior collapse: KL and activity per latent unit" in page
