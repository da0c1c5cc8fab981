"""Free bits clamped per unit: each unit's KL term is held up on its own, to the exact
analytic value, and a site that does not factorise over its units is refused."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae import PyrovaeError
from pyrovae.inference.iwae import FreeBits_ELBO, unit_kl
from pyrovae.inference.logweights import trace_log_weights
from pyrovae.inference.objectives import get_loss

B, Z = 6, 3
W = torch.tensor([[1.0, -0.5], [0.3, 0.2], [0.0, 1.0]])
X = torch.linspace(-1.0, 1.0, B * 2).reshape(B, 2)
# unit 0 far from the prior, units 1 and 2 close to it: their KLs straddle a threshold
LOC = torch.stack([torch.linspace(1.5, 2.5, B), torch.full((B,), 0.05), torch.zeros(B)], -1)
SCALE = torch.tensor([0.3, 0.95, 1.0])


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([Z]).to_event(1))
        pyro.sample("x", dist.Normal(z @ W, 1.0).to_event(1), obs=x)


def guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(LOC, SCALE).to_event(1))


def correlated_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MultivariateNormal(LOC, scale_tril=torch.eye(Z) * SCALE))


def exact_unit_kl() -> torch.Tensor:
    kl = torch.distributions.kl_divergence(dist.Normal(LOC, SCALE), dist.Normal(0.0, 1.0))
    return kl.mean(0)


def reconstruction(seed: int) -> float:
    pyro.set_rng_seed(seed)
    return float(trace_log_weights(model, guide, X).log_likelihood.sum())


def test_unit_kl_is_each_unit_s_analytic_kl_averaged_over_the_batch():
    tr = pyro.poutine.trace(guide).get_trace(X)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(model, trace=tr)).get_trace(X)
    kl = unit_kl(tr.nodes["z"], model_tr.nodes["z"], analytic_kl=True)
    assert kl.shape == (Z,)
    assert torch.allclose(kl, exact_unit_kl(), atol=1e-6)
    # the Monte Carlo estimate is log q - log p of the drawn z, unit by unit
    z = tr.nodes["z"]["value"]
    mc = dist.Normal(LOC, SCALE).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)
    assert torch.allclose(unit_kl(tr.nodes["z"], model_tr.nodes["z"]), mc.mean(0), atol=1e-6)


@pytest.mark.parametrize("free_bits", [0.0, 0.9, 50.0])
def test_each_unit_s_kl_is_clamped_at_its_share_of_the_free_bits(free_bits):
    kl = exact_unit_kl()
    assert kl[0] > 0.3 > kl[1:].max()  # 0.9 nats shared by 3 units clamp units 1 and 2 only
    loss = FreeBits_ELBO(free_bits, analytic_kl=True, per_unit=True)
    pyro.set_rng_seed(1)
    value = loss.loss(model, guide, X)
    expected = -(reconstruction(1) - B * torch.clamp(kl, min=free_bits / Z).sum())
    assert value == pytest.approx(float(expected), rel=1e-5)


def test_per_unit_differs_from_per_site_where_units_straddle_the_threshold():
    kl = exact_unit_kl()
    pyro.set_rng_seed(2)
    site = FreeBits_ELBO(0.9, analytic_kl=True).loss(model, guide, X)
    expected = -(reconstruction(2) - B * torch.clamp(kl.sum(), min=0.9))
    assert site == pytest.approx(float(expected), rel=1e-5)
    pyro.set_rng_seed(2)
    unit = FreeBits_ELBO(0.9, analytic_kl=True, per_unit=True).loss(model, guide, X)
    assert unit > site + 0.1  # units 1 and 2 are each held up to 0.3 nats


def test_a_unit_below_its_share_gets_no_kl_gradient():
    loc = LOC.clone().requires_grad_(True)

    def learnt(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, SCALE).to_event(1))

    def prior_only(x):  # no likelihood: the loss is the clamped KL term alone
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0).expand([Z]).to_event(1))

    FreeBits_ELBO(0.9, analytic_kl=True, per_unit=True).differentiable_loss(
        prior_only, learnt, X
    ).backward()
    assert loc.grad[:, 0].abs().min() > 0
    assert torch.equal(loc.grad[:, 1:], torch.zeros(B, Z - 1))


def test_a_site_that_does_not_factorise_over_its_units_is_refused():
    loss = FreeBits_ELBO(1.0, per_unit=True)
    with pytest.raises(PyrovaeError, match="free_bits_per_unit=False"):
        loss.loss(model, correlated_guide, X)


def test_get_loss_passes_per_unit_on_and_refuses_it_without_free_bits():
    assert get_loss("trace", free_bits=2.0, free_bits_per_unit=True).per_unit
    assert get_loss("meanfield", free_bits=2.0, free_bits_per_unit=True).analytic_kl
    with pytest.raises(PyrovaeError, match="free_bits_per_unit=True"):
        get_loss("trace", free_bits_per_unit=True)
    with pytest.raises(PyrovaeError, match="iwae bound"):
        get_loss("iwae", free_bits_per_unit=True)
