"""Embeddings, interpolation, anomaly scores and imputation."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.ppca import PPCA

import pyrovae
from pyrovae import PyrovaeError
from pyrovae.data.masks import MASKS
from pyrovae.parts.distributions import ObservedEntries
from pyrovae.use.applications import anomaly_scores, impute, interpolate, latent_means, traversals


class ExactPPCA:
    """A linear-Gaussian 'VAE' with the exact posterior as its encoder.

    For it, the conditional mean of missing coordinates given observed ones is known in
    closed form, so imputation has an exact answer to be checked against.
    """

    def __init__(self) -> None:
        self.m = PPCA()
        self.z_dim = 2

    def encode(self, x):
        m = self.m
        loc = (x - m.mu) @ m.W @ m.Minv.T
        return dist.MultivariateNormal(loc, m.sigma**2 * m.Minv)

    def decode(self, z):
        return dist.Normal(z @ self.m.W.T + self.m.mu, self.m.sigma).to_event(1)

    def prior(self):
        return dist.MultivariateNormal(
            torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        )

    def model(self, x, mask):
        """p(z) p(x_obs | z), as the masking convention says (pyrovae.data.masks)."""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", ObservedEntries(self.decode(z), mask), obs=x)

    def guide(self, x, mask):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.encode(x))

    def exact_conditional_mean(self, x, missing):
        m = self.m
        cov = m.W @ m.W.T + m.sigma**2 * torch.eye(5, dtype=torch.float64)
        out = x.clone()
        for i in range(x.shape[0]):
            mis, obs = missing[i], ~missing[i]
            gain = cov[mis][:, obs] @ torch.linalg.inv(cov[obs][:, obs])
            out[i, mis] = m.mu[mis] + gain @ (x[i, obs] - m.mu[obs])
        return out


def test_imputation_matches_the_exact_conditional_mean():
    model = ExactPPCA()
    x = model.m.sample(30)
    missing = torch.zeros_like(x, dtype=torch.bool)
    missing[:, 3:] = True
    torch.manual_seed(0)
    filled = impute(model, x, missing, num_samples=4000, gibbs_steps=3, fill=0.0)
    plain = impute(model, x, missing, num_samples=4000, fill=model.m.mu)  # the data mean
    exact = model.exact_conditional_mean(x, missing)
    assert torch.equal(filled[~missing], x[~missing])  # observed pixels are kept
    err = (filled - exact)[missing].abs()
    assert float(err.max()) < 0.05
    # without them the proposal sits further off and the estimate converges more slowly
    assert float((plain - exact)[missing].abs().mean()) < 0.04
    # ... and the observed half matters: filling with the prior mean is far worse
    prior_fill = (model.m.mu.expand_as(x) - exact)[missing].abs()
    assert float(prior_fill.mean()) > 5 * float(err.mean())


def test_a_hierarchical_vae_imputes_with_the_decoders_mean_when_it_ignores_z():
    # p(x | z_1) the same for every z_1: E[x_miss | x_obs] is the decoder's mean, exactly
    torch.manual_seed(0)
    vae = pyrovae.VAE(x_dim=6, z_dim=[3, 2], hidden=(8,))
    logits = torch.linspace(-2.0, 2.0, 6)
    with torch.no_grad():
        vae.decoder.net[2].weight.zero_()
        vae.decoder.net[2].bias.copy_(logits)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    missing = torch.zeros_like(x, dtype=torch.bool)
    missing[:, 3:] = True
    filled = impute(vae, x, missing, num_samples=50)
    assert torch.equal(filled[~missing], x[~missing])
    expected = torch.sigmoid(logits).expand_as(x)[missing]
    assert torch.allclose(filled[missing], expected, atol=1e-6)


def test_imputation_checks_its_mask():
    model = ExactPPCA()
    x = model.m.sample(3)
    with pytest.raises(PyrovaeError, match="boolean mask"):
        impute(model, x, torch.zeros(3, 2, dtype=torch.bool))


def test_latent_means_and_paths():
    vae = pyrovae.VAE(z_dim=3, hidden=(16,), image_shape=(1, 28, 28))
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    z = latent_means(vae, x, batch_size=2)
    assert torch.allclose(z, vae.encode(x).mean)
    path = interpolate(vae, x[0], x[1], steps=6)
    assert path.shape == (6, 784)
    assert torch.allclose(path[0], vae.decode(z[0]).mean, atol=1e-6)
    assert torch.allclose(path[-1], vae.decode(z[1]).mean, atol=1e-6)
    assert traversals(vae, x[0], [0, 2], steps=5).shape == (2, 5, 784)


def test_latent_means_of_a_flow_guide_are_averaged_draws():
    vae = pyrovae.VAE(z_dim=3, hidden=(16,), posterior="iaf")
    z = latent_means(vae, torch.bernoulli(torch.full((4, 784), 0.3)), draws=8)
    assert z.shape == (4, 3) and torch.isfinite(z).all()


def test_anomaly_scores_are_minus_log_px():
    model = PPCA()
    x = model.sample(10)
    scores = anomaly_scores(model.model, model.guide, x, num_samples=10)
    assert torch.allclose(scores, -model.exact_log_px(x), atol=1e-6)


@pytest.mark.parametrize("name", sorted(MASKS))
def test_masks(name):
    mask = MASKS[name]((3, 784), (1, 28, 28))
    assert mask.shape == (3, 784) and mask.dtype == torch.bool
    assert 0.3 < float(mask.float().mean()) < 0.7
