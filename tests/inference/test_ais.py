import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.ppca import PPCA, Mixture

from pyrovae import PyrovaeError
from pyrovae.inference.ais import annealed_importance_sampling, linear_schedule, sigmoid_schedule


def test_schedules_run_from_zero_to_one():
    for betas in (sigmoid_schedule(10), linear_schedule(10)):
        assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()


def test_ais_approaches_the_exact_value_as_steps_grow():
    poor = PPCA(shift=1.5, inflate=4.0)
    x = PPCA().sample(30)
    exact = PPCA().exact_log_px(x)
    errors = {}
    for steps in (5, 200):
        est = annealed_importance_sampling(
            poor.model, poor.guide, x, num_chains=8, num_steps=steps
        )
        assert est.estimator == "ais" and est.per_datapoint.shape == (30,)
        errors[steps] = float((est.per_datapoint - exact).mean())
    assert errors[5] < -5  # few steps: far below log p(x), as IS with this guide
    assert abs(errors[200]) < 0.3
    assert abs(errors[200]) < abs(errors[5]) / 20


def test_ais_with_the_exact_posterior_is_exact():
    model = PPCA()
    x = model.sample(10)
    est = annealed_importance_sampling(model.model, model.guide, x, num_chains=4, num_steps=5)
    assert (est.per_datapoint - model.exact_log_px(x)).abs().max() < 1e-3


def test_constrained_latents_move_in_unconstrained_space():
    # z ~ Gamma(2, 1), x | z ~ Poisson(z): p(x) is negative binomial, known exactly.
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Gamma(x.new_tensor(2.0), 1.0))
            pyro.sample("x", dist.Poisson(z), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Gamma(x.new_tensor(1.0) + 0 * x, 1.0))

    x = torch.tensor([0.0, 1.0, 3.0, 7.0], dtype=torch.float64)
    exact = dist.NegativeBinomial(total_count=2.0, probs=torch.tensor(0.5, dtype=torch.float64))
    est = annealed_importance_sampling(model, guide, x, num_chains=64, num_steps=100)
    assert (est.per_datapoint - exact.log_prob(x)).abs().max() < 0.15


def test_discrete_latents_are_refused():
    mix = Mixture()
    with pytest.raises(PyrovaeError, match="continuous latents"):
        annealed_importance_sampling(mix.model, mix.guide, mix.sample(3), num_steps=2)


def test_bad_arguments():
    m = PPCA()
    x = m.sample(3)
    with pytest.raises(PyrovaeError, match="num_steps"):
        annealed_importance_sampling(m.model, m.guide, x, num_steps=0)
    with pytest.raises(PyrovaeError, match="unknown schedule"):
        annealed_importance_sampling(m.model, m.guide, x, schedule="cosine")
