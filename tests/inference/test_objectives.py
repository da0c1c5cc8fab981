import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.ppca import PPCA
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

import pyrovae
from pyrovae import PyrovaeError
from pyrovae.inference.iwae import IWAE_ELBO, FreeBits_ELBO
from pyrovae.inference.logweights import trace_log_weights
from pyrovae.inference.marginal import iwae_bound
from pyrovae.inference.objectives import LOSSES, LatentScale, get_loss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_trains_a_vae_one_step(name):
    vae = pyrovae.VAE(z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((16, 784), 0.3))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), get_loss(name, 3))
    before = [p.detach().clone() for p in vae.parameters()]
    loss = svi.step(x)
    assert math.isfinite(loss) and loss > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.parameters(), strict=True))


def test_iwae_training_loss_equals_the_bound_from_the_estimator():
    bad = PPCA(shift=0.5, inflate=2.0)
    x = PPCA().sample(30)
    pyro.set_rng_seed(5)
    loss = IWAE_ELBO(num_particles=8).loss(bad.model, bad.guide, x)
    pyro.set_rng_seed(5)
    bound = iwae_bound(bad.model, bad.guide, x, num_particles=8, num_estimates=1)
    assert loss == pytest.approx(-float(bound.per_datapoint.sum()), rel=1e-9)


def _renyi_and_ours(model, guide, x, k):
    pyro.set_rng_seed(11)
    renyi = RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    theirs = renyi.loss(model, guide, x)
    pyro.set_rng_seed(11)
    lw = trace_log_weights(model, guide, x, num_particles=k, plate_nesting=1)
    return theirs, lw


def test_renyi_alpha0_equals_the_iwae_bound_for_local_latents():
    bad = PPCA(shift=0.5, inflate=2.0)
    x = PPCA().sample(30)
    theirs, lw = _renyi_and_ours(bad.model, bad.guide, x, 8)
    per_datapoint = lw.log_weight.logsumexp(0) - math.log(8)
    assert theirs == pytest.approx(-float(per_datapoint.sum()), rel=1e-9)


def test_under_a_subsampled_plate_only_iwae_elbo_is_the_bound():
    """Pyro issue 3104: RenyiELBO takes the logsumexp of weights already scaled by N/B."""
    bad = PPCA(shift=0.5, inflate=2.0)
    full = PPCA().sample(120)
    idx = torch.arange(30)

    def model(x):
        with pyro.plate("data", 120, subsample=idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ bad.W.T + bad.mu, bad.sigma).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", 120, subsample=idx):
            loc = (x - bad.mu) @ bad.W @ bad.Minv.T + bad.shift
            pyro.sample("z", dist.MultivariateNormal(loc, bad.sigma**2 * bad.Minv * bad.inflate))

    x = full[:30]
    theirs, lw = _renyi_and_ours(model, guide, x, 8)
    bound = 4.0 * float((lw.log_weight.logsumexp(0) - math.log(8)).sum())
    pyro.set_rng_seed(11)
    ours = IWAE_ELBO(num_particles=8, max_plate_nesting=1).loss(model, guide, x)
    assert ours == pytest.approx(-bound, rel=1e-9)
    assert abs(theirs - ours) > 1.0


def test_iwae_refuses_discrete_guides():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.5))

    with pytest.raises(PyrovaeError, match="reparameterisable"):
        IWAE_ELBO(num_particles=2).loss(model, guide, torch.zeros(3))


def test_iwae_training_improves_the_bound(sample):
    vae = pyrovae.VAE(z_dim=8, hidden=(64,))
    history = pyrovae.fit(
        vae, sample.train[:1000], epochs=3, batch_size=100, lr=3e-3, loss="iwae", progress=False
    )
    assert history["train_elbo"][-1] > history["train_elbo"][0] + 10


def test_unknown_loss_and_bad_particle_count():
    with pytest.raises(PyrovaeError, match="choose one of: iwae, meanfield, trace"):
        get_loss("vimco")
    with pytest.raises(PyrovaeError, match="at least 1"):
        get_loss("iwae", 0)


def _vae_and_batch():
    vae = pyrovae.VAE(z_dim=3, hidden=(16,))
    return vae, torch.bernoulli(torch.full((12, 784), 0.3))


def _terms(vae, x, seed):
    pyro.set_rng_seed(seed)
    lw = trace_log_weights(vae.model, vae.guide, x)
    return float(lw.log_likelihood.sum().detach()), float(lw.kl.sum().detach())


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0])
def test_latent_scale_weights_exactly_the_kl_term(beta):
    vae, x = _vae_and_batch()
    recon, kl = _terms(vae, x, 3)
    weight = LatentScale(beta)
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(weight(vae.model), weight(vae.guide), x)
    assert loss == pytest.approx(-(recon - beta * kl), rel=1e-5)


def test_free_bits_clamp_each_site_kl():
    vae, x = _vae_and_batch()
    recon, kl = _terms(vae, x, 4)
    pyro.set_rng_seed(4)
    assert FreeBits_ELBO(0.0).loss(vae.model, vae.guide, x) == pytest.approx(
        -(recon - kl), rel=1e-5
    )
    pyro.set_rng_seed(4)
    big = 1e4  # far above the KL of any datapoint: the KL term becomes a constant
    assert FreeBits_ELBO(big).loss(vae.model, vae.guide, x) == pytest.approx(
        -(recon - 12 * big), rel=1e-5
    )

    # ... so the encoder gets no gradient from the KL term, only from reconstruction
    def encoder_grads(loss):
        vae.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in vae.encoder.parameters()]

    pyro.set_rng_seed(4)
    clamped = encoder_grads(FreeBits_ELBO(big).differentiable_loss(vae.model, vae.guide, x))
    pyro.set_rng_seed(4)
    recon_only = encoder_grads(-trace_log_weights(vae.model, vae.guide, x).log_likelihood.sum())
    for a, b in zip(clamped, recon_only, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_kl_warmup_rises_linearly_to_beta(sample):
    history = pyrovae.fit(
        pyrovae.VAE(z_dim=3, hidden=(16,)),
        sample.train[:200],
        epochs=4,
        batch_size=50,
        progress=False,
        beta=0.5,
        kl_warmup=2,
        validation=sample.test[:50],
    )
    assert history["kl_weight"] == pytest.approx([0.25, 0.5, 0.5, 0.5])


def _pyro_and_lean(model, guide, x, seed, **kwargs):
    from pyrovae.inference.trace_elbo import Trace_ELBO as LeanTrace

    out = []
    for elbo in (pyro.infer.Trace_ELBO(**kwargs), LeanTrace(**kwargs)):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(model, guide, x)
        params = [p for p in pyro.get_param_store().values()]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append((float(loss.detach()), grads))
    return out


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_lean_trace_elbo_equals_pyros_loss_and_gradients(beta):
    vae = pyrovae.VAE(z_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((12, 784), 0.3))
    weight = LatentScale(beta)
    vae.model(x), vae.guide(x)  # register the parameters
    (a, ga), (b, gb) = _pyro_and_lean(weight(vae.model), weight(vae.guide), x, 9)
    assert b == pytest.approx(a, rel=1e-5)
    for g1, g2 in zip(ga, gb, strict=True):
        assert (g1 is None and g2 is None) or torch.allclose(g1, g2, atol=1e-5, rtol=1e-4)


def test_lean_trace_elbo_with_vectorised_particles_and_a_subsampled_plate():
    bad = PPCA(shift=0.5, inflate=2.0)
    idx = torch.arange(10)

    def model(x):
        with pyro.plate("data", 40, subsample=idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ bad.W.T + bad.mu, bad.sigma).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(2, dtype=x.dtype))
        with pyro.plate("data", 40, subsample=idx):
            pyro.sample("z", dist.Normal(loc + 0 * x[:, :2], 1.0).to_event(1))

    x = PPCA().sample(10)
    particles = {"num_particles": 4, "vectorize_particles": True, "max_plate_nesting": 1}
    (a, _), (b, _) = _pyro_and_lean(model, guide, x, 2, **particles)
    assert b == pytest.approx(a, rel=1e-9)


def test_the_lean_trace_elbo_finds_the_plate_nesting_without_drawing_from_the_stream():
    # Pyro's own guess runs the programs on the caller's random stream; pyrovae's probe
    # (pyrovae.inference.traces.probe) forks it, so the loss draws what it would draw
    # with the nesting given.
    from pyrovae.inference.trace_elbo import Trace_ELBO as LeanTrace

    bad = PPCA(shift=0.5, inflate=2.0)
    x = PPCA().sample(10)
    losses = []
    for nesting in (float("inf"), 1):
        elbo = LeanTrace(num_particles=4, vectorize_particles=True, max_plate_nesting=nesting)
        pyro.set_rng_seed(3)
        losses.append(float(elbo.differentiable_loss(bad.model, bad.guide, x)))
        assert elbo.max_plate_nesting == 2  # Pyro's convention: one more for the particles
    assert losses[0] == losses[1]


def test_lean_trace_elbo_falls_back_for_global_and_discrete_sites():
    from pyrovae.inference.trace_elbo import Trace_ELBO as LeanTrace

    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(w + c, 1.0), obs=x)

    def guide(x):
        m = pyro.param("m", torch.tensor(0.0))
        pyro.sample("w", dist.Normal(m, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.5))

    from pyrovae.inference.traces import traces

    x = torch.randn(6)
    pyro.set_rng_seed(1)
    traces(model, guide, x)  # the lean path traces once before it defers to Pyro
    expected = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x)
    pyro.set_rng_seed(1)
    got = LeanTrace().differentiable_loss(model, guide, x)
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    # Pyro's surrogate for the discrete site carries a score-function gradient
    assert torch.autograd.grad(got, pyro.param("m").unconstrained())[0] != 0


def test_lean_trace_elbo_equals_pyro_for_globals_guide_factors_masks_and_any_plate():
    # Reparameterised guide: the lean path applies whatever the plates, and keeps what
    # Pyro's Trace_ELBO counts: a global latent, a masked site, a factor in the guide.
    from pyrovae.inference.trace_elbo import Trace_ELBO as LeanTrace

    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("cells", x.shape[0]):
            z = pyro.sample("z", dist.Normal(w, 1.0))
            keep = x > -1.0
            pyro.sample("x", dist.Normal(z, 0.5).mask(keep), obs=x)

    def guide(x):
        m = pyro.param("m", torch.tensor(0.3))
        pyro.sample("w", dist.Normal(m, 0.7))
        with pyro.plate("cells", x.shape[0]):
            pyro.sample("z", dist.Normal(m * x, 0.9))
            pyro.factor("aux", -((x - m) ** 2), has_rsample=True)

    x = torch.randn(7)
    pyro.param("m", torch.tensor(0.3))
    (a, ga), (b, gb) = _pyro_and_lean(model, guide, x, 4)
    assert b == pytest.approx(a, rel=1e-6)
    assert torch.allclose(ga[0], gb[0], rtol=1e-5)
    elbo = LeanTrace()
    elbo.differentiable_loss(model, guide, x)
    assert not elbo._pyro_only  # it took the lean path
