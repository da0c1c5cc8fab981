"""Contract tests: every prior in PRIORS passes the same checks."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.parts.guides import GUIDES
from pyrovae.parts.priors import PRIORS

Z, X = 6, 10


class Harness(nn.Module):
    """A prior with a small encoder attached, as a VAE would attach its own."""

    def __init__(self, name: str, z_dim: int = Z, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.family = GUIDES["diagonal"](z_dim)
        self.encoder = nn.Linear(X, self.family.param_dim)
        self.prior = PRIORS[name](z_dim)
        self.prior.attach(lambda x: self.family(self.encoder(x)), X)
        with torch.no_grad():  # move off the initial values, as training would
            for p in self.prior.parameters():
                p.add_(0.1 * torch.randn_like(p))


@pytest.fixture(params=sorted(PRIORS))
def harness(request):
    return Harness(request.param)


def test_returns_distribution_over_z(harness):
    p = harness.prior()
    assert isinstance(p, dist.Distribution)
    assert p.event_shape == (Z,)
    assert p.batch_shape == ()
    z = p.sample((4, 3))
    assert z.shape == (4, 3, Z)
    lp = p.log_prob(z)
    assert lp.shape == (4, 3) and torch.isfinite(lp).all()


def test_broadcasts_under_the_data_plate(harness):
    with pyro.plate("data", 5):
        z = pyro.sample("z", harness.prior())
    assert z.shape == (5, Z)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_density_integrates_to_one(name):
    """Checked on a fine grid over z in R^2."""
    harness = Harness(name, z_dim=2).double()
    grid = torch.linspace(-15, 15, 601, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = float(harness.prior().log_prob(zz).exp().sum()) * float(grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_state_dict_round_trip(harness):
    name = next(k for k, v in PRIORS.items() if type(harness.prior) is v)
    other = Harness(name, seed=1)
    other.load_state_dict(harness.state_dict())
    z = harness.prior().sample((3,))
    assert torch.allclose(harness.prior().log_prob(z), other.prior().log_prob(z))


def test_gradients_reach_every_learnable_parameter(harness):
    z = torch.randn(10, Z)
    own = dict(harness.prior.named_parameters())
    if not own:
        assert type(harness.prior).__name__ == "StandardNormal"
        return
    harness.prior().log_prob(z).sum().backward()
    for name, p in own.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_standard_normal_is_exact():
    z = torch.randn(7, Z)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(PRIORS["standard"](Z)().log_prob(z), expected)


def test_flow_starts_at_the_standard_normal():
    z = torch.randn(7, Z)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(PRIORS["flow"](Z)().log_prob(z), expected)


def test_mixture_of_gaussians_is_exact():
    prior = Harness("mog").prior
    z = torch.randn(5, Z)
    w = prior.logits.log_softmax(-1)
    scales = nn.functional.softplus(prior.raw_scales) + 1e-4
    comp = torch.distributions.Normal(prior.locs, scales).log_prob(z[:, None]).sum(-1)
    assert torch.allclose(prior().log_prob(z), (comp + w).logsumexp(-1), atol=1e-5)


def test_vamp_prior_is_the_mean_of_the_encoder_posteriors():
    harness = Harness("vamp")
    prior = harness.prior
    z = torch.randn(4, Z)
    q = harness.family(harness.encoder(prior.pseudo_inputs.clamp(0, 1)))
    expected = q.log_prob(z[:, None]).logsumexp(-1) - math.log(prior.num_components)
    assert torch.allclose(prior().log_prob(z), expected, atol=1e-5)


# ------------------------------------------------ the learned prior over VQ codes
def _code_prior(codes: int = 3, num_codes: int = 2, code_dim: int = 2):

    torch.manual_seed(0)
    family = GUIDES["vq"](num_codes * code_dim, codes=codes, code_dim=code_dim)
    return family, family.implied_prior("autoregressive", hidden_size=8, embedding_dim=4)


def test_the_code_prior_sums_to_one_over_every_choice_of_codes():
    import itertools

    family, prior = _code_prior()
    rows = family.codebook.detach()
    every = torch.stack(
        [torch.cat([rows[i], rows[j]]) for i, j in itertools.product(range(3), repeat=2)]
    )
    with torch.no_grad():
        total = prior().expand([len(every)]).log_prob(every).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-5)


def test_the_code_prior_draws_codebook_rows_and_scores_them():
    family, prior = _code_prior()
    z = prior().sample((50,))
    rows = family.codebook.detach()
    assert z.shape == (50, 4)
    for half in (z[:, :2], z[:, 2:]):
        assert bool(((half[:, None, :] - rows[None]).abs().sum(-1) == 0).any(-1).all())
    assert torch.isfinite(prior().log_prob(z)).all()
    assert prior().log_prob(z).shape == (50,)


def test_the_vq_guide_names_its_code_priors():

    family = GUIDES["vq"](4, codes=3, code_dim=2)
    assert family.implied_prior().name == "codebook"
    assert family.implied_prior("autoregressive").name == "autoregressive"
    with pytest.raises(PyrovaeError, match="unknown prior of the vq guide 'mog'"):
        family.implied_prior("mog")
