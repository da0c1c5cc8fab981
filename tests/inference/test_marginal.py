"""The estimators against exact log p(x): linear-Gaussian and discrete-mixture models."""

import pytest
import torch
from helpers.ppca import PPCA, Mixture

import pyrovae
from pyrovae import PyrovaeError
from pyrovae.inference.logweights import trace_log_weights
from pyrovae.inference.marginal import elbo_terms, iwae_bound


@pytest.fixture
def ppca():
    model = PPCA()
    return model, model.sample(40)


def test_exact_posterior_makes_every_weight_equal_log_px(ppca):
    model, x = ppca
    lw = trace_log_weights(model.model, model.guide, x, num_particles=25).log_weight
    assert lw.shape == (25, 40)
    assert (lw - model.exact_log_px(x)).abs().max() < 1e-3
    est = pyrovae.log_marginal_likelihood(model.model, model.guide, x, num_samples=50)
    assert (est.per_datapoint - model.exact_log_px(x)).abs().max() < 1e-3
    assert torch.allclose(est.ess, torch.full_like(est.ess, 50.0))


@pytest.mark.filterwarnings("ignore:median effective sample size")
def test_imperfect_guide_k5000_is_within_noise_and_above_the_elbo(ppca):
    exact_model, x = ppca
    bad = PPCA(shift=0.5, inflate=2.0)
    exact = exact_model.exact_log_px(x)
    est = pyrovae.log_marginal_likelihood(bad.model, bad.guide, x, num_samples=5000)
    err = est.per_datapoint - exact
    assert abs(float(err.mean())) < 3 * float(err.std()) / 40**0.5 + 0.02
    assert (est.per_datapoint > est.elbo).all()
    assert float((exact - est.elbo).mean()) > 1.0  # the guide really is imperfect
    one = pyrovae.log_marginal_likelihood(bad.model, bad.guide, x, num_samples=1)
    assert est.mean > one.mean + 1.0
    assert est.stderr == pytest.approx(float(est.per_datapoint.std()) / 40**0.5)


def test_iwae_bounds_are_ordered(ppca):
    exact_model, x = ppca
    bad = PPCA(shift=0.5, inflate=2.0)
    exact = exact_model.exact_log_px(x).mean()
    bounds = [
        iwae_bound(bad.model, bad.guide, x, num_particles=k, num_estimates=20).mean
        for k in (1, 10, 100)
    ]
    assert bounds[0] < bounds[1] < bounds[2] < exact
    elbo = elbo_terms(bad.model, bad.guide, x).elbo
    assert abs(bounds[0] - float(elbo.mean())) < 4 * float(elbo.std()) / 40**0.5


def test_iwae_bound_does_not_depend_on_chunking(ppca):
    model, x = ppca
    for chunk in (None, 7, 30):
        b = iwae_bound(
            model.model, model.guide, x, num_particles=10, num_estimates=3, chunk_size=chunk
        )
        assert (b.per_datapoint - model.exact_log_px(x)).abs().max() < 1e-3


def test_estimate_does_not_depend_on_chunk_or_batch_size(ppca):
    _, x = ppca
    bad = PPCA(shift=0.5, inflate=2.0)
    runs = [
        pyrovae.log_marginal_likelihood(
            bad.model, bad.guide, x, num_samples=3000, chunk_size=c, batch_size=b
        )
        for c, b in ((None, 100), (7, 100), (3000, 13), (512, 1))
    ]
    ref = runs[0].per_datapoint
    for r in runs[1:]:
        diff = r.per_datapoint - ref
        assert abs(float(diff.mean())) < 4 * float(diff.std()) / 40**0.5 + 1e-6
        assert r.per_datapoint.shape == (40,)


def test_discrete_latent_with_exact_guide_is_exact():
    mix = Mixture(exact=True)
    x = mix.sample(30)
    est = pyrovae.log_marginal_likelihood(mix.model, mix.guide, x, num_samples=20)
    assert (est.per_datapoint - mix.exact_log_px(x)).abs().max() < 1e-3


def test_discrete_latent_is_sampled_not_enumerated():
    mix = Mixture(exact=False)
    x = mix.sample(30)
    est = pyrovae.log_marginal_likelihood(mix.model, mix.guide, x, num_samples=5000)
    err = est.per_datapoint - mix.exact_log_px(x)
    assert abs(float(err.mean())) < 0.02 and float(err.abs().max()) < 0.15


def test_poor_proposal_warns():
    bad = PPCA(shift=3.0, inflate=0.2)
    x = PPCA().sample(10)
    with pytest.warns(UserWarning, match="effective sample size"):
        pyrovae.log_marginal_likelihood(bad.model, bad.guide, x, num_samples=200)


def test_sites_outside_the_data_plate_are_refused():
    import pyro
    import pyro.distributions as dist

    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(w, 1.0), obs=x)

    def guide(x):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(PyrovaeError, match="'w' is not inside pyro.plate"):
        pyrovae.log_marginal_likelihood(model, guide, torch.zeros(3), num_samples=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_size": -2}, "chunk_size"),
    ],
)
def test_bad_counts(ppca, kwargs, match):
    model, x = ppca
    with pytest.raises(PyrovaeError, match=match):
        pyrovae.log_marginal_likelihood(model.model, model.guide, x, **kwargs)
    with pytest.raises(PyrovaeError, match="empty"):
        pyrovae.log_marginal_likelihood(model.model, model.guide, x[:0])


def test_vae_estimates_are_finite_and_ordered():
    vae = pyrovae.VAE(z_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((20, 784), 0.2))
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=64)
    assert torch.isfinite(est.per_datapoint).all() and (est.per_datapoint >= est.elbo).all()
    assert ((est.ess >= 1 - 1e-4) & (est.ess <= 64 + 1e-4)).all()


@pytest.mark.parametrize("text", ["512MB", "2GiB", "1.5kb", 4096])
def test_parse_bytes(text):
    from pyrovae.inference.passes import parse_bytes

    assert (
        parse_bytes(text)
        == {"512MB": 512 * 10**6, "2GiB": 2 * 2**30, "1.5kb": 1500, 4096: 4096}[text]
    )


@pytest.mark.parametrize("text", ["lots", "-3MB", "12 parsecs"])
def test_parse_bytes_refuses_nonsense(text):
    from pyrovae.inference.passes import parse_bytes

    with pytest.raises(PyrovaeError, match="memory size"):
        parse_bytes(text)


def test_memory_budget_caps_every_pass(monkeypatch):
    from pyrovae.inference import particles, passes

    vae = pyrovae.VAE(z_dim=4, hidden=(16,))
    x = torch.bernoulli(torch.full((300, 784), 0.2))
    per_row = passes.bytes_per_row(vae.model, vae.guide, x, (), {})
    assert per_row > 784 * 4  # at least the logits of one image
    seen = []
    original = particles.trace_log_weights

    def spy(model, guide, xb, *args, num_particles=1, **kwargs):
        seen.append(xb.shape[0] * num_particles)
        return original(model, guide, xb, *args, num_particles=num_particles, **kwargs)

    monkeypatch.setattr(particles, "trace_log_weights", spy)
    budget = 50 * per_row
    torch.manual_seed(0)
    capped = pyrovae.log_marginal_likelihood(
        vae.model, vae.guide, x, num_samples=200, memory_budget=budget
    )
    assert max(seen) <= 50 and len(seen) >= 300 * 200 / 50
    seen.clear()
    torch.manual_seed(0)
    free = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=200)
    assert max(seen) > 50
    diff = capped.per_datapoint - free.per_datapoint
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / 300**0.5 + 1e-3
