"""Missing values: the masked likelihood, MIWAE training and imputation, against exact
values of a linear-Gaussian model with missing entries."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.ppca import MaskedPPCA

import pyrovae
from pyrovae.data.masks import as_masked
from pyrovae.errors import PyrovaeError
from pyrovae.inference.imputation import impute
from pyrovae.parts.distributions import ObservedEntries


def _holed(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.full_like(x, float("nan")))


def test_the_masked_likelihood_gives_the_exact_log_p_of_the_observed_entries():
    ppca = MaskedPPCA()
    x, mask = ppca.sample(30)
    data = as_masked(_holed(x, mask))  # model(x=zero-filled, mask=...)
    est = pyrovae.log_marginal_likelihood(ppca.model, ppca.guide, data, num_samples=5)
    assert torch.allclose(est.per_datapoint, ppca.exact_log_px(x, mask), atol=1e-6)
    bound = pyrovae.iwae_bound(ppca.model, ppca.guide, data, num_particles=3)
    assert torch.allclose(bound.per_datapoint, ppca.exact_log_px(x, mask), atol=1e-6)


def test_the_masked_elbo_is_the_elbo_of_the_model_on_the_observed_columns():
    ppca = MaskedPPCA()
    x, _ = ppca.sample(20)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, :3] = True  # the same columns observed in every row

    def restricted(x):
        with pyro.plate("rows", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            loc = z @ ppca.W[:3].T + ppca.mu[:3]
            pyro.sample("x", dist.Normal(loc, ppca.sigma).to_event(1), obs=x)

    def guide(x):  # a poor guide, shared by both: the ELBOs must still agree draw by draw
        with pyro.plate("rows", x.shape[0]):
            pyro.sample("z", dist.Normal(x[:, :2] * 0.1, 0.8).to_event(1))

    pyro.set_rng_seed(3)
    masked = pyrovae.elbo_terms(
        lambda x, mask: ppca.model(x, mask), lambda x, mask: guide(x), as_masked(_holed(x, mask))
    )
    pyro.set_rng_seed(3)
    full = pyrovae.elbo_terms(restricted, guide, x[:, :3])
    assert torch.allclose(masked.elbo, full.elbo, atol=1e-9)


def test_imputation_matches_the_exact_conditional_mean_and_keeps_observed_entries():
    ppca = MaskedPPCA()
    x, mask = ppca.sample(40)
    holed = _holed(x, mask)
    k = 4000
    filled = impute(ppca.model, ppca.guide, holed, num_samples=k, seed=0)
    assert torch.equal(filled[mask], x[mask])
    exact = ppca.exact_conditional_mean(x, mask)
    _, prec = ppca.posterior(x, mask)
    sd = torch.einsum("dq,nqr,dr->nd", ppca.W, torch.linalg.inv(prec), ppca.W).sqrt()
    error = (filled - exact).abs()[~mask]
    assert (error < 5 * sd[~mask] / k**0.5 + 1e-9).all()


def test_multiple_imputation_draws_from_the_conditional():
    ppca = MaskedPPCA()
    x, mask = ppca.sample(10)
    draws = impute(ppca.model, ppca.guide, _holed(x, mask), num_samples=50, multiple=200, seed=1)
    assert draws.shape == (200, 10, 5)
    assert (draws[:, mask] == x[mask]).all()
    spread = draws.std(0)[~mask]
    assert (spread > 0.3).all()  # at least the noise sigma = 0.5, up to sampling error
    mean_error = (draws.mean(0) - ppca.exact_conditional_mean(x, mask)).abs()[~mask]
    assert float(mean_error.max()) < 0.6


def test_fit_trains_a_vae_on_incomplete_data_and_refuses_nans_by_default():
    torch.manual_seed(0)
    x = torch.randn(200, 6) @ torch.randn(6, 6)
    holed = torch.where(torch.rand_like(x) < 0.3, torch.full_like(x, float("nan")), x)
    vae = pyrovae.VAE(x_dim=6, z_dim=2, hidden=(16,), likelihood="student-t")
    with pytest.raises(PyrovaeError, match="missing='mask'"):
        pyrovae.fit(vae, holed, epochs=1, binarize="none", progress=False, device="cpu")
    history = pyrovae.fit(
        vae,
        holed,
        epochs=30,
        lr=1e-2,
        binarize="none",
        missing="mask",
        validation=holed[:50],
        progress=False,
        device="cpu",
    )
    assert history["val_elbo"][-1] > history["val_elbo"][0]
    filled = impute(vae.model, vae.guide, holed, num_samples=100, seed=0)
    assert torch.isfinite(filled).all()
    mean_fill = torch.nanmean(holed, 0).expand_as(x)
    missing = torch.isnan(holed)
    assert ((filled - x)[missing] ** 2).mean() < ((mean_fill - x)[missing] ** 2).mean()


def test_a_row_missing_everywhere_is_refused():
    x = torch.randn(4, 3)
    x[2] = float("nan")
    with pytest.raises(PyrovaeError, match="missing everywhere"):
        as_masked(x)


def test_observed_entries_broadcast_over_particles():
    px = dist.Normal(torch.zeros(7, 3, 4), 1.0).to_event(1)
    mask = torch.tensor([[True, False, True, True]] * 3)
    lp = ObservedEntries(px, mask).log_prob(torch.zeros(3, 4))
    assert lp.shape == (7, 3)
    assert torch.allclose(lp, dist.Normal(0.0, 1.0).log_prob(torch.zeros(())) * 3)
