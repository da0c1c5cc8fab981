"""A user's own Pyro program, any shape: data forms, plate names, eval mode, strategies,
discrete latents, against exact values where the math gives them."""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.ppca import CovariatePPCA, Mixture
from pyro.infer import config_enumerate
from torch.utils.data import DataLoader, TensorDataset

import pyrovae
from pyrovae.errors import PyrovaeError

ESTIMATORS = {
    "is": lambda m, g, d, **kw: pyrovae.log_marginal_likelihood(m, g, d, num_samples=8, **kw),
    "iwae": lambda m, g, d, **kw: pyrovae.iwae_bound(m, g, d, num_particles=4, **kw),
    "ais": lambda m, g, d, **kw: pyrovae.annealed_importance_sampling(
        m, g, d, num_chains=2, num_steps=3, **kw
    ),
}


def _forms(x, c):
    """The same 40 datapoints in every accepted form (called as model(x, c))."""
    pairs = list(zip(x.split(16), c.split(16), strict=True))
    return {
        "tuple": (x, c),
        "dict": {"x": x, "c": c},
        "dataset": TensorDataset(x, c),
        "dataloader": DataLoader(TensorDataset(x, c), batch_size=16),
        "list of batches": pairs,
        "list of dict batches": [{"x": a, "c": b} for a, b in pairs],
    }


@pytest.mark.parametrize("form", list(_forms(torch.zeros(2, 1), torch.zeros(2, 1))))
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_data_form_gives_the_exact_value_per_datapoint(form, estimator):
    ppca = CovariatePPCA()
    x, c = ppca.sample(40)
    data = _forms(x, c)[form]
    est = ESTIMATORS[estimator](ppca.model, ppca.guide, data)
    assert est.per_datapoint.shape == (40,)
    exact = ppca.exact_log_px(x, c)
    assert torch.allclose(est.per_datapoint, exact, atol=1e-6)


def test_extra_positional_arguments_are_passed_on_every_call():
    ppca = CovariatePPCA()
    x, c = ppca.sample(10)
    seen = []

    def model(x, c, flag):
        seen.append(flag)
        ppca.model(x, c)

    def guide(x, c, flag):
        ppca.guide(x, c)

    est = pyrovae.log_marginal_likelihood(model, guide, (x, c), "on", num_samples=3)
    assert set(seen) == {"on"}
    assert torch.allclose(est.per_datapoint, ppca.exact_log_px(x, c), atol=1e-6)


@pytest.mark.parametrize("strategy", ["auto", "replicate"])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_a_program_that_does_not_broadcast_is_replicated(strategy, chunk_size):
    ppca = CovariatePPCA(broadcasts=False)
    ppca.train()
    x, c = ppca.sample(30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = pyrovae.log_marginal_likelihood(
            ppca.model, ppca.guide, (x, c), num_samples=7, strategy=strategy, chunk_size=chunk_size
        )
    assert torch.allclose(est.per_datapoint, ppca.exact_log_px(x, c), atol=1e-6)
    said = [w for w in caught if "does not broadcast" in str(w.message)]
    # Said once, when K > 1 particles first run at once (one at a time need no fallback).
    assert len(said) == (1 if strategy == "auto" and chunk_size != 1 else 0)
    assert ppca.training and ppca.norm.training  # the mode is restored


def test_forcing_vectorize_on_such_a_program_raises_its_own_error():
    ppca = CovariatePPCA(broadcasts=False)
    x, c = ppca.sample(10)
    with pytest.raises(RuntimeError):
        pyrovae.log_marginal_likelihood(
            ppca.model, ppca.guide, (x, c), num_samples=4, strategy="vectorize"
        )


def test_evaluation_runs_in_eval_mode():
    """In training mode the BatchNorm layer would standardise W z by batch statistics."""
    ppca = CovariatePPCA(broadcasts=False)
    x, c = ppca.sample(30)
    modes = []
    ppca.norm.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    ppca.train()
    terms = pyrovae.elbo_terms(ppca.model, ppca.guide, (x, c))
    assert modes and not any(modes)
    assert ppca.norm.training
    with torch.no_grad():  # and the ELBO is the exact posterior's: log p(x | c)
        assert torch.allclose(terms.elbo, ppca.exact_log_px(x, c), atol=1e-6)


def test_replicated_and_vectorised_estimates_agree_with_a_poor_guide():
    ppca = CovariatePPCA(shift=0.7)
    x, c = ppca.sample(200)
    pyro.set_rng_seed(0)
    vec = pyrovae.log_marginal_likelihood(ppca.model, ppca.guide, (x, c), num_samples=64)
    pyro.set_rng_seed(1)
    rep = pyrovae.log_marginal_likelihood(
        ppca.model, ppca.guide, (x, c), num_samples=64, strategy="replicate", chunk_size=5
    )
    diff = vec.per_datapoint - rep.per_datapoint
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / 200**0.5 + 1e-6
    exact = ppca.exact_log_px(x, c)
    assert float((exact - rep.per_datapoint).mean()) > -1e-6  # IS is biased low


def test_any_plate_name_is_found_and_can_be_named():
    ppca = CovariatePPCA()
    x, c = ppca.sample(12)
    named = pyrovae.log_marginal_likelihood(ppca.model, ppca.guide, (x, c), plate="cells")
    assert torch.allclose(named.per_datapoint, ppca.exact_log_px(x, c), atol=1e-6)
    with pytest.raises(PyrovaeError, match="no plate named 'data'"):
        pyrovae.log_marginal_likelihood(ppca.model, ppca.guide, (x, c), plate="data")


def _two_plates(x):
    """Two sites under two plates of the batch's size, side by side."""
    with pyro.plate("a", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
    with pyro.plate("b", x.shape[0]):
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=x)


def test_no_plate_or_several_of_the_batch_size_is_a_clear_error():
    x = torch.randn(5)

    def flat_model(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([5]).to_event(1), obs=x)

    with pytest.raises(PyrovaeError, match="no plate .* has the minibatch's size"):
        pyrovae.log_marginal_likelihood(flat_model, lambda x: None, x, num_samples=2)
    with pytest.raises(PyrovaeError, match="several plates"):
        pyrovae.log_marginal_likelihood(_two_plates, lambda x: None, x, num_samples=2)


def test_factor_counts_in_the_model_and_not_in_the_guide_and_scale_is_ignored():
    ppca = CovariatePPCA()
    x, c = ppca.sample(10)

    def model(x, c):
        with pyro.plate("cells", x.shape[0]), pyro.poutine.scale(scale=0.01):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            loc = z @ ppca.W.T + c @ ppca.V.T + ppca.mu
            pyro.sample("x", dist.Normal(loc, ppca.sigma).to_event(1), obs=x)
            pyro.factor("bonus", x.new_full((x.shape[0],), 2.5))

    def guide(x, c):
        with pyro.plate("cells", x.shape[0]), pyro.poutine.scale(scale=0.01):
            loc = (x - c @ ppca.V.T - ppca.mu) @ ppca.W @ ppca.Minv.T
            pyro.sample("z", dist.MultivariateNormal(loc, ppca.sigma**2 * ppca.Minv))
            pyro.factor("aux", x.new_full((x.shape[0],), -100.0), has_rsample=True)

    est = pyrovae.log_marginal_likelihood(model, guide, (x, c), num_samples=5)
    assert torch.allclose(est.per_datapoint, ppca.exact_log_px(x, c) + 2.5, atol=1e-6)


# --------------------------------------------------------------------- discrete latents
def test_enumerated_sites_give_the_sum_rule_exactly():
    """The guide draws c from a uniform guess; summing c exactly still gives log p(x)."""
    mix = Mixture(exact=False)
    x = mix.sample(50)
    guide = config_enumerate(mix.guide, "parallel", expand=True)
    est = pyrovae.log_marginal_likelihood(mix.model, guide, x, num_samples=3)
    assert est.enumerated == 3
    assert torch.allclose(est.per_datapoint, mix.exact_log_px(x), atol=1e-9)
    bound = pyrovae.iwae_bound(mix.model, guide, x, num_particles=2)
    assert torch.allclose(bound.per_datapoint, mix.exact_log_px(x), atol=1e-9)


def test_sampled_and_enumerated_discrete_sites_agree():
    mix = Mixture(exact=True)
    x = mix.sample(100)
    guide = config_enumerate(mix.guide, "parallel", expand=True)
    sampled = pyrovae.log_marginal_likelihood(
        mix.model, guide, x, num_samples=200, discrete="sample"
    )
    assert sampled.enumerated == 1
    assert torch.allclose(sampled.per_datapoint, mix.exact_log_px(x), atol=0.05)


def test_the_enumerated_elbo_is_the_elbo_of_q_y():
    """With exact q(u | x, c), ELBO = log p(x) - KL(q(c|x) || p(c|x)) exactly."""
    mix = Mixture(exact=False)  # q(c | x) uniform
    x = mix.sample(20)
    guide = config_enumerate(mix.guide, "parallel", expand=True)
    est = pyrovae.log_marginal_likelihood(mix.model, guide, x, num_samples=2)
    var = mix.a**2 + mix.s**2
    comp = dist.Normal(mix.m, var**0.5).log_prob(x[:, None]) + mix.pi.log()
    post = comp.log_softmax(-1)
    q = torch.full_like(post, 1 / 3)
    kl = (q * (q.log() - post)).sum(-1)
    assert torch.allclose(est.elbo, mix.exact_log_px(x) - kl, atol=1e-9)


def test_fit_trains_an_enumerating_guide_with_trace_enum_elbo():
    torch.manual_seed(0)
    loc = torch.nn.Parameter(torch.tensor([-1.0, 1.0]))
    x = torch.cat([torch.randn(100) - 3, torch.randn(100) + 3])

    def model(x):
        pyro.param("loc", loc)
        with pyro.plate("points", len(x)):
            c = pyro.sample("c", dist.Categorical(logits=torch.zeros(2)))
            pyro.sample("x", dist.Normal(pyro.param("loc")[c], 1.0), obs=x)

    def guide(x):
        w = pyro.param("w", torch.tensor([-1.0, 1.0]))
        b = pyro.param("b", torch.zeros(2))
        with pyro.plate("points", len(x)):
            pyro.sample("c", dist.Categorical(logits=w * x[:, None] + b))

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*TraceEnum_ELBO")
        pyrovae.fit(
            (model, config_enumerate(guide)),
            x,
            epochs=60,
            batch_size=200,
            lr=0.1,
            binarize="none",
            progress=False,
            device="cpu",
        )
    assert sorted(pyro.param("loc").detach().tolist()) == pytest.approx([-3, 3], abs=0.5)


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("form", ["tuple", "dict", "dataset", "dataloader", "list of batches"])
def test_fit_trains_on_every_data_form(form):
    ppca = CovariatePPCA(shift=1.0)
    shift = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def guide(x, c):
        ppca.shift = pyro.param("shift", shift)
        ppca.guide(x, c)

    x, c = ppca.sample(40)
    history = pyrovae.fit(
        (ppca.model, guide),
        _forms(x, c)[form],
        epochs=15,
        lr=0.1,
        binarize="none",
        validation=(x, c),
        progress=False,
        device="cpu",
        **({"batch_size": 16} if form in ("tuple", "dict", "dataset") else {}),
    )
    assert history["steps"][-1] == 3
    assert abs(float(pyro.param("shift").detach())) < 0.2  # it learned the exact posterior's mean
    assert history["val_elbo"][-1] > history["val_elbo"][0]


def test_fit_binarises_the_first_tensor_only():
    seen = []

    def model(x, y):
        seen.append((x.clone(), y.clone()))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Bernoulli(0.5).expand([4]).to_event(1), obs=x)

    x, y = torch.full((6, 4), 0.5), torch.full((6, 4), 0.5)
    pyrovae.fit((model, lambda x, y: None), (x, y), epochs=1, progress=False, device="cpu")
    xs, ys = seen[-1]
    assert set(xs.unique().tolist()) <= {0.0, 1.0} and (ys == 0.5).all()


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        ((torch.zeros(4, 2), torch.zeros(3, 2)), {}, "tensor 1 has shape"),
        ({"x": torch.full((4, 2), float("nan"))}, {"binarize": "none"}, "NaN"),
        (iter([torch.zeros(4, 2)]), {}, "one-shot iterator"),
        ([torch.zeros(4, 2)], {"batch_size": 2}, "batch_size does not apply"),
        ([torch.zeros(4, 2)], {"binarize": "static"}, "static binarisation"),
        ((torch.zeros(4, 2),), {"scheduler_step": "often"}, "unknown scheduler_step"),
    ],
)
def test_bad_data_forms_are_one_line_errors(data, kwargs, match):
    with pytest.raises(PyrovaeError, match=match):
        pyrovae.fit(
            (lambda *a, **k: None, lambda *a, **k: None),
            data,
            epochs=1,
            progress=False,
            device="cpu",
            **kwargs,
        )


def test_data_outside_the_support_are_a_data_error_not_a_nan():
    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Bernoulli(0.5).expand([4]).to_event(1), obs=x)

    with pytest.raises(PyrovaeError, match="outside its distribution's support"):
        pyrovae.fit(
            (model, lambda x: None),
            torch.full((8, 4), 0.5),
            epochs=1,
            binarize="none",
            progress=False,
            device="cpu",
        )
