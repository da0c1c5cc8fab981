import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.priors import PRIORS

Z = 6


@pytest.fixture(params=sorted(PRIORS))
def prior(request):
    return PRIORS[request.param](Z)


def test_returns_distribution_over_z(prior):
    p = prior()
    assert isinstance(p, dist.Distribution)
    assert p.event_shape == (Z,)
    assert p.batch_shape == ()
    z = p.sample((4, 3))
    assert z.shape == (4, 3, Z)
    assert torch.isfinite(p.log_prob(z)).all() and p.log_prob(z).shape == (4, 3)


def test_broadcasts_under_the_data_plate(prior):
    with pyro.plate("data", 5):
        z = pyro.sample("z", prior())
    assert z.shape == (5, Z)


def test_state_dict_round_trip(prior):
    other = type(prior)(Z)
    other.load_state_dict(prior.state_dict())
    z = prior().sample((3,))
    assert torch.allclose(prior().log_prob(z), other().log_prob(z))


def test_gradients_reach_learnable_parameters(prior):
    params = [p for p in prior.parameters() if p.requires_grad]
    if not params:
        pytest.skip("this prior has nothing to learn")
    z = torch.randn(10, Z)
    prior().log_prob(z).sum().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_standard_normal_is_exact():
    z = torch.randn(7, Z)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(PRIORS["standard"](Z)().log_prob(z), expected)
