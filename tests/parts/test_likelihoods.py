"""Contract tests: every likelihood in LIKELIHOODS passes the same checks."""

import pyro.distributions as dist
import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.parts.likelihoods import LIKELIHOODS

D = 12
#: What a likelihood of token sequences is built with besides x_dim (the VAE passes the
#: vocabulary's size).
SEQUENCES = {"vocab_size": 7, "hidden_size": 8}


def _likelihood(name, x_dim=D, seed=0):
    torch.manual_seed(seed)
    cls = LIKELIHOODS[name]
    likelihood = cls(x_dim, **SEQUENCES) if cls.models_sequences else cls(x_dim)
    with torch.no_grad():
        for p in likelihood.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return likelihood


@pytest.fixture(params=sorted(LIKELIHOODS))
def likelihood(request):
    return _likelihood(request.param)


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
    assert px.mean.shape == (4, 3, D) and torch.isfinite(px.mean).all()


def test_broadcasts_observations_over_particles(likelihood):
    x = _in_support(likelihood, (3,))
    px = likelihood(torch.randn(7, 3, likelihood.param_dim))
    assert px.log_prob(x).shape == (7, 3)
    assert px.expand([2, 7, 3]).log_prob(x).shape == (2, 7, 3)


def test_param_dim_is_a_multiple_of_x_dim(likelihood):
    if likelihood.models_sequences:  # a context for the whole sequence, of hidden_size
        assert likelihood.param_dim == SEQUENCES["hidden_size"]
        return
    assert likelihood.param_dim % D == 0 and likelihood.param_dim >= D


def test_samples_pass_the_support_check(likelihood):
    likelihood.check_support(_in_support(likelihood, (20,)))


def test_support_check_refuses_nan(likelihood):
    with pytest.raises(PyrovaeError):
        likelihood.check_support(torch.full((2, D), float("nan")))


def test_gradients_reach_decoder_output_and_parameters(likelihood):
    params = torch.randn(5, likelihood.param_dim, requires_grad=True)
    x = _in_support(likelihood, (5,))
    likelihood(params).log_prob(x).sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    for name, p in likelihood.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_state_dict_round_trip(likelihood):
    name = next(k for k, v in LIKELIHOODS.items() if type(likelihood) is v)
    other = _likelihood(name, seed=1)
    other.load_state_dict(likelihood.state_dict())
    params = torch.randn(3, likelihood.param_dim)
    x = _in_support(likelihood, (3,))
    assert torch.allclose(likelihood(params).log_prob(x), other(params).log_prob(x))


LEVELS = torch.arange(256, dtype=torch.float64) / 255
#: The support of one pixel, as points and the weight of each (1 for a mass function,
#: the cell width for a density), to check that each likelihood is normalised.
SUPPORT = {
    "bernoulli": (torch.tensor([0.0, 1.0], dtype=torch.float64), 1.0),
    "continuous-bernoulli": (torch.linspace(0.00005, 0.99995, 10000, dtype=torch.float64), 1e-4),
    "gaussian": (torch.linspace(-20, 20, 40001, dtype=torch.float64), 1e-3),
    "laplace": (torch.linspace(-20, 20, 40001, dtype=torch.float64), 1e-3),
    "discretized-logistic": (LEVELS, 1.0),
    "categorical": (LEVELS, 1.0),
    "poisson": (torch.arange(0, 200, dtype=torch.float64), 1.0),
    "negative-binomial": (torch.arange(0, 2000, dtype=torch.float64), 1.0),
    "student-t": (torch.linspace(-20, 20, 40001, dtype=torch.float64), 1e-3),
    "columns": (torch.linspace(-20, 20, 40001, dtype=torch.float64), 1e-3),
}


def _every_sequence(vocab: int, length: int) -> torch.Tensor:
    """All sequences of at most length - 1 ordinary tokens, each ended by EOS (2)."""
    rows = [[2] + [0] * (length - 1)]
    for n in range(1, length):
        for body in torch.cartesian_prod(*[torch.arange(4, vocab)] * n).reshape(-1, n):
            rows.append(body.tolist() + [2] + [0] * (length - n - 1))
    return torch.tensor(rows)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_is_normalised(name):
    if LIKELIHOODS[name].models_sequences:  # a mass function over whole sequences
        likelihood = _likelihood(name, x_dim=4)
        x = _every_sequence(SEQUENCES["vocab_size"], 4)
        with torch.no_grad():
            px = likelihood(torch.randn(likelihood.param_dim)).expand([len(x)])
            assert float(px.log_prob(x).exp().sum()) == pytest.approx(1.0, abs=1e-5)
        return
    likelihood = _likelihood(name, x_dim=1).double()
    points, weight = SUPPORT[name]
    params = torch.randn(likelihood.param_dim, dtype=torch.float64)
    with torch.no_grad():
        px = likelihood(params).expand([points.shape[0]])
        mass = float(px.log_prob(points[:, None]).exp().sum()) * weight
    assert mass == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_bernoulli_log_prob_and_its_gradient_are_exact(grad):
    # Two code paths: two reductions without gradients, fused cross-entropy with them.
    logits = torch.randn(2, 3, D, dtype=torch.float64, requires_grad=grad)
    x = torch.bernoulli(torch.full((3, D), 0.5, dtype=torch.float64))
    expected = dist.Bernoulli(logits=logits).to_event(1).log_prob(x)
    got = LIKELIHOODS["bernoulli"](D)(logits).log_prob(x)
    assert got.shape == (2, 3)
    assert torch.allclose(got, expected, atol=1e-10)
    if grad:
        (g_got,) = torch.autograd.grad(got.sum(), logits)
        (g_expected,) = torch.autograd.grad(expected.sum(), logits)
        assert torch.allclose(g_got, g_expected, atol=1e-10)


def test_gaussian_scales():
    x = torch.rand(4, D)
    params = torch.randn(4, 2 * D)
    decoder_scale = LIKELIHOODS["gaussian"](D, scale="decoder")
    loc, raw = params.split(D, -1)
    expected = dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-3).log_prob(x).sum(-1)
    assert torch.allclose(decoder_scale(params).log_prob(x), expected, atol=1e-5)
    fixed = LIKELIHOODS["gaussian"](D, scale=0.3)
    assert fixed.param_dim == D and not list(fixed.parameters())
    expected = dist.Normal(loc, 0.3).log_prob(x).sum(-1)
    assert torch.allclose(fixed(loc).log_prob(x), expected, atol=1e-5)
    with pytest.raises(PyrovaeError, match="learned"):
        LIKELIHOODS["gaussian"](D, scale="wide")


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("bernoulli", torch.full((2, D), 0.5), "binary data"),
        ("bernoulli", torch.full((2, D), 2.0), "binary data"),
        ("continuous-bernoulli", torch.full((2, D), 1.5), r"values in \[0, 1\]"),
        ("discretized-logistic", torch.full((2, D), 0.5), "8-bit levels"),
        ("categorical", torch.full((2, D), -0.1), r"values in \[0, 1\]"),
        ("poisson", torch.full((2, D), 0.5), "non-negative integer counts"),
        ("negative-binomial", torch.full((2, D), -1.0), "non-negative integer counts"),
        ("gaussian", torch.full((2, D), float("inf")), "NaN or infinite"),
    ],
)
def test_support_checks_say_what_is_wrong(name, bad, match):
    with pytest.raises(PyrovaeError, match=match):
        LIKELIHOODS[name](D).check_support(bad)


def test_every_likelihood_gives_per_pixel_log_densities(likelihood):
    """Imputation conditions on observed pixels, so each density must factorise."""
    from pyrovae.use.applications import pixel_log_prob

    px = likelihood(torch.randn(5, likelihood.param_dim))
    x = px.sample()
    if likelihood.models_sequences:  # p(x_t | x_<t): conditionals, not per-entry densities
        with pytest.raises(PyrovaeError, match="factorises over entries"):
            pixel_log_prob(px, x)
        return
    per_pixel = pixel_log_prob(px, x)
    assert per_pixel.shape == (5, D)
    assert torch.allclose(per_pixel.sum(-1), px.log_prob(x), atol=1e-4)


def test_columns_give_each_group_its_own_likelihood():
    columns = LIKELIHOODS["columns"](5, spec="gaussian:0-1,bernoulli:2-3,poisson:4")
    params = torch.randn(7, columns.param_dim)
    px = columns(params)
    x = px.sample()
    gauss = columns.groups[0](params[:, : columns.groups[0].param_dim])
    start = columns.groups[0].param_dim
    bern = columns.groups[1](params[:, start : start + 2])
    pois = columns.groups[2](params[:, start + 2 :])
    expected = gauss.log_prob(x[:, :2]) + bern.log_prob(x[:, 2:4]) + pois.log_prob(x[:, 4:])
    assert torch.allclose(px.log_prob(x), expected, atol=1e-5)
    assert set(x[:, 2:4].unique().tolist()) <= {0.0, 1.0}
    assert px.mean.shape == (7, 5)


def test_columns_may_come_in_any_order():
    shuffled = LIKELIHOODS["columns"](3, spec="poisson:2,gaussian:0-1")
    x = torch.tensor([[0.5, -1.0, 3.0]])
    params = torch.zeros(1, shuffled.param_dim)
    rate = torch.nn.functional.softplus(torch.zeros(1)) + 1e-6
    expected = dist.Poisson(rate).log_prob(x[:, 2]) + shuffled.groups[1](params[:, 1:]).log_prob(
        x[:, :2]
    )
    assert torch.allclose(shuffled(params).log_prob(x), expected)


@pytest.mark.parametrize(
    ("spec", "match"),
    [("gaussian:0-3", "exactly once"), ("nope:0-4", "cannot read"), ("gaussian:0-9", "outside")],
)
def test_a_bad_column_spec_is_one_line(spec, match):
    with pytest.raises(PyrovaeError, match=match):
        LIKELIHOODS["columns"](5, spec=spec)


def test_the_discretised_logistic_mean_is_the_mean_of_its_256_levels():
    from pyrovae.parts.distributions import LEVELS, DiscretizedLogisticMixtureDist

    torch.manual_seed(0)
    b, m, d = 3, 4, 7
    locs, log_scales = torch.tanh(torch.randn(b, m, d)), torch.randn(b, m, d) - 1
    px = DiscretizedLogisticMixtureDist(torch.randn(b, m, d), locs, log_scales)
    levels = torch.arange(LEVELS, dtype=torch.float32) / (LEVELS - 1)
    probs = torch.stack([px.pixel_log_prob(level.expand(b, d)).exp() for level in levels])
    assert torch.allclose(probs.sum(0), torch.ones(b, d), atol=1e-5)
    assert torch.allclose(px.mean, (probs * levels[:, None, None]).sum(0), atol=1e-5)
