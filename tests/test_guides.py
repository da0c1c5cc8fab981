import pyro.distributions as dist
import pytest
import torch

from pyrovae.guides import GUIDES

Z = 5


@pytest.fixture(params=sorted(GUIDES))
def family(request):
    return GUIDES[request.param](Z)


def test_distribution_over_z_with_the_encoder_batch_shape(family):
    q = family(torch.randn(4, 3, family.param_dim))
    assert isinstance(q, dist.Distribution)
    assert q.event_shape == (Z,) and q.batch_shape == (4, 3)
    assert q.has_rsample
    z = q.rsample()
    assert z.shape == (4, 3, Z) and torch.isfinite(q.log_prob(z)).all()


def test_reparameterised_gradients_reach_encoder_output(family):
    params = torch.randn(6, family.param_dim, requires_grad=True)
    q = family(params)
    z = q.rsample()
    (z.pow(2).sum() - q.log_prob(z).sum()).backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    for p in family.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_diagonal_normal_scale_is_positive():
    q = GUIDES["diagonal"](Z)(torch.full((2, 2 * Z), -50.0))
    assert (q.base_dist.scale > 0).all()
