"""Contract tests: every guide family in GUIDES passes the same checks."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.parts.distributions import UniformCodes
from pyrovae.parts.guides import GUIDES

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
    if family.implied_prior() is not None:  # vq: a point mass, no Gaussian part
        with pytest.raises(PyrovaeError, match="no Gaussian part"):
            family.gaussian(torch.randn(4, 3, family.param_dim))
        return
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
    factors = sum(f.sum() for f in family.training_factors(params).values())
    (z.pow(2).sum() - q.log_prob(z).sum() + factors).backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    for name, p in family.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_density_integrates_to_one(name):
    family = _family(name, z_dim=2).double()
    if family.implied_prior() is not None:
        pytest.skip("a point mass on its prior's discrete support: see the vq tests")
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


def test_training_factors_are_per_datapoint_and_absent_for_gaussian_families(family):
    factors = family.training_factors(torch.randn(4, 3, family.param_dim))
    assert all(f.shape == (4, 3) for f in factors.values())
    assert bool(factors) == (family.implied_prior() is not None) == family.brings_prior


# --------------------------------------------------------------- vector quantisation
def _vq(codes=3, code_dim=2, z_dim=4, **kwargs):
    torch.manual_seed(0)
    family = GUIDES["vq"](z_dim, codes=codes, code_dim=code_dim, **kwargs).double()
    with torch.no_grad():
        family.codebook.copy_(torch.randn(codes, code_dim, dtype=torch.float64))
    return family


def test_vq_quantises_each_code_to_its_nearest_row_exactly():
    family = _vq()
    params = torch.randn(7, 4, dtype=torch.float64)
    z = family(params).rsample()
    for i in range(7):
        for m in range(2):
            z_e = params[i, 2 * m : 2 * m + 2]
            nearest = family.codebook[(family.codebook - z_e).norm(dim=-1).argmin()]
            assert torch.equal(z[i, 2 * m : 2 * m + 2], nearest)


def test_vq_point_mass_on_the_prior_support_and_the_prior_sums_to_one():
    family = _vq()
    prior = family.implied_prior()()
    q = family(torch.randn(5, 4, dtype=torch.float64))
    z = q.sample()
    assert torch.equal(q.log_prob(z), torch.zeros(5))
    assert prior.support.check(z).all()
    # Every point of the support: 3 rows for each of 2 codes; the prior's mass is 1.
    rows = family.codebook.detach()
    points = torch.stack([torch.cat([rows[a], rows[b]]) for a in range(3) for b in range(3)])
    assert float(prior.log_prob(points).exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert not prior.support.check(points + 1e-9).any()
    checked = UniformCodes(rows, 4, validate_args=True)  # the prior's own: unchecked
    assert torch.equal(checked.log_prob(points), prior.log_prob(points))
    with pytest.raises(ValueError, match="support"):
        checked.log_prob(points + 1e-9)


def test_vq_prior_draws_codebook_rows_uniformly():
    family = _vq(codes=4, code_dim=1, z_dim=1)
    z = family.implied_prior()().sample((40_000,))
    counts = (z == family.codebook.detach().T).sum(0).double()
    assert counts.sum() == 40_000
    assert torch.allclose(counts / 40_000, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)


def test_vq_straight_through_gradient_and_the_two_terms():
    family = _vq(commitment=0.5)
    params = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = family(params).rsample()
    upstream = torch.randn_like(z)
    (z * upstream).sum().backward()
    assert torch.equal(params.grad, upstream)  # the identity, as the estimator says
    assert family.codebook.grad is None  # the decoder's gradient skips the codebook
    params.grad = None
    factors = family.training_factors(params)
    z_e = params.detach().reshape(3, 2, 2)
    z_q = z.detach().reshape(3, 2, 2)
    assert torch.allclose(factors["codebook"], (z_e - z_q).pow(2).sum((1, 2)))
    assert torch.allclose(factors["commitment"], 0.5 * (z_e - z_q).pow(2).sum((1, 2)))
    factors["codebook"].sum().backward()
    assert params.grad is None and family.codebook.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"codes": 1}, "codes >= 2"),
        ({"code_dim": 3}, "divides z_dim"),
        ({"commitment": -1.0}, "commitment"),
    ],
)
def test_vq_bad_arguments(kwargs, match):
    with pytest.raises(PyrovaeError, match=match):
        GUIDES["vq"](4, **kwargs)


def test_vq_default_code_size_divides_any_z_dim():
    assert [GUIDES["vq"](z).code_dim for z in (1, 2, 5, 7, 32, 50, 64)] == [1, 2, 5, 7, 8, 10, 8]
