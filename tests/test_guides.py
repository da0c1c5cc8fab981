"""Contract tests: every guide family in GUIDES passes the same checks."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.guides import GUIDES

Z = 5


def _family(name, z_dim=Z, seed=0):
    torch.manual_seed(seed)
    family = GUIDES[name](z_dim)
    with torch.no_grad():  # move off the initial values, as training would
        for p in family.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return family


@pytest.fixture(params=sorted(GUIDES))
def family(request):
    return _family(request.param)


def test_distribution_over_z_with_the_encoder_batch_shape(family):
    q = family(torch.randn(4, 3, family.param_dim))
    assert isinstance(q, dist.Distribution)
    assert q.event_shape == (Z,) and q.batch_shape == (4, 3)
    assert q.has_rsample
    z = q.rsample()
    assert z.shape == (4, 3, Z) and torch.isfinite(q.log_prob(z)).all()
    g = family.gaussian(torch.randn(4, 3, family.param_dim))
    assert g.event_shape == (Z,) and g.batch_shape == (4, 3)


def test_draws_particles_under_plates(family):
    params = torch.randn(3, family.param_dim)
    with pyro.plate("particles", 7, dim=-2), pyro.plate("data", 3, dim=-1):
        z = pyro.sample("z", family(params))
    assert z.shape == (7, 3, Z)


def test_reparameterised_gradients_reach_encoder_output_and_parameters(family):
    params = torch.randn(6, family.param_dim, requires_grad=True)
    q = family(params)
    z = q.rsample()
    (z.pow(2).sum() - q.log_prob(z).sum()).backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    for name, p in family.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_density_integrates_to_one(name):
    family = _family(name, z_dim=2).double()
    params = 0.5 * torch.randn(family.param_dim, dtype=torch.float64)
    grid = torch.linspace(-12, 12, 601, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        q = family(params).expand([zz.shape[0]])
        mass = float(q.log_prob(zz).exp().sum()) * float(grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_log_prob_of_a_draw_matches_a_fresh_evaluation(family):
    """Flows cache the inverse of what they drew; a new point must give the same density."""
    params = torch.randn(4, family.param_dim)
    with torch.no_grad():
        z = family(params).rsample()
        cached = family(params)
        fresh = family(params)
        assert torch.allclose(cached.log_prob(z), fresh.log_prob(z.clone()), atol=1e-4)


def test_state_dict_round_trip(family):
    name = next(k for k, v in GUIDES.items() if type(family) is v)
    other = _family(name, seed=1)
    other.load_state_dict(family.state_dict())
    params = torch.randn(3, family.param_dim)
    z = family(params).sample()
    assert torch.allclose(family(params).log_prob(z), other(params).log_prob(z), atol=1e-5)


def test_diagonal_normal_scale_is_positive():
    q = GUIDES["diagonal"](Z)(torch.full((2, 2 * Z), -50.0))
    assert (q.base_dist.scale > 0).all()


def test_lowrank_covariance():
    family = GUIDES["lowrank"](Z, rank=2)
    params = torch.randn(family.param_dim)
    q = family(params)
    cov = q.covariance_matrix
    assert torch.allclose(cov, cov.T) and (torch.linalg.eigvalsh(cov) > 0).all()
