import pyro.distributions as dist
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.likelihoods import LIKELIHOODS

D = 12


@pytest.fixture(params=sorted(LIKELIHOODS))
def likelihood(request):
    return LIKELIHOODS[request.param](D)


def _in_support(likelihood, shape):
    """Draw data from the likelihood itself, so they are in its support by construction."""
    params = torch.randn(*shape, likelihood.param_dim)
    return likelihood(params).sample()


def test_maps_decoder_output_to_distribution_over_x(likelihood):
    params = torch.randn(4, 3, likelihood.param_dim)
    px = likelihood(params)
    assert isinstance(px, dist.Distribution)
    assert px.event_shape == (D,) and px.batch_shape == (4, 3)
    x = px.sample()
    assert x.shape == (4, 3, D)
    assert torch.isfinite(px.log_prob(x)).all()


def test_param_dim_is_a_multiple_of_x_dim(likelihood):
    assert likelihood.param_dim % D == 0 and likelihood.param_dim >= D


def test_samples_pass_the_support_check(likelihood):
    likelihood.check_support(_in_support(likelihood, (20,)))


def test_gradients_reach_decoder_output_and_parameters(likelihood):
    params = torch.randn(5, likelihood.param_dim, requires_grad=True)
    x = _in_support(likelihood, (5,))
    likelihood(params).log_prob(x).sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    for p in likelihood.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_bernoulli_log_prob_is_exact():
    logits = torch.randn(3, D)
    x = torch.bernoulli(torch.full((3, D), 0.5))
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(LIKELIHOODS["bernoulli"](D)(logits).log_prob(x), expected, atol=1e-5)


@pytest.mark.parametrize("bad", [torch.full((2, D), 0.5), torch.full((2, D), 2.0)])
def test_bernoulli_refuses_non_binary_data(bad):
    with pytest.raises(PyrovaeError, match="binary data"):
        LIKELIHOODS["bernoulli"](D).check_support(bad)
