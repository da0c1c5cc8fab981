"""The cluster VAE: c enumerated against the mixture's closed form, matching, contract."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrovae
from pyrovae.clusters import ClusterVAE, _max_assignment, best_match_accuracy
from pyrovae.errors import PyrovaeError
from pyrovae.guides import GUIDES
from pyrovae.likelihoods import LIKELIHOODS
from pyrovae.variants import build_vae


def _vae(**kwargs) -> ClusterVAE:
    return ClusterVAE(**{"x_dim": 6, "z_dim": 2, "hidden": (8,), "clusters": 3, **kwargs})


@pytest.mark.parametrize("z_dim", [2, (3, 2)])
def test_enumerating_c_gives_the_elbo_of_the_mixture_prior_exactly(z_dim):
    """TraceEnum_ELBO sums c out of the model: the same value as log sum_c pi_c N(z)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae, x = _vae(z_dim=z_dim), torch.bernoulli(torch.full((5, 6), 0.5))
    vae.train()
    pyro.set_rng_seed(3)
    enumerated = TraceEnum_ELBO(max_plate_nesting=1).loss(vae.model, vae.guide, x)
    vae.eval()  # the same program with the mixture's density in closed form, no c site
    pyro.set_rng_seed(3)
    closed = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert enumerated == pytest.approx(closed, rel=1e-5)


def test_the_cluster_is_the_nearest_well_separated_component(monkeypatch):
    """With components far apart, each posterior mean falls in its own one's cluster."""
    vae = _vae()
    with torch.no_grad():
        vae.cluster_locs.copy_(torch.tensor([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]]))
    means = torch.tensor([[9.0, 1.0], [-9.5, 0.5], [0.5, 9.0], [-10.0, -1.0]])
    monkeypatch.setattr(vae, "_posterior_mean", lambda x: means)
    x = torch.zeros(4, 6)
    assert vae.cluster(x).tolist() == [2, 0, 1, 0]
    assert torch.allclose(vae.cluster_probs(x).sum(-1), torch.ones(4))
    with torch.no_grad():  # a cluster with (almost) no weight is never the answer
        vae.cluster_logits.copy_(torch.tensor([0.0, 0.0, -1e4]))
    assert vae.cluster(x)[0] != 2


def test_the_posterior_mean_feeds_each_layers_mean_to_the_next():
    vae = _vae(z_dim=(3, 2))
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    assert torch.allclose(vae._posterior_mean(x), vae.up[0](vae.encode(x).mean).mean)


def test_best_match_accuracy_is_the_best_permutation():
    assert best_match_accuracy(torch.tensor([2, 2, 0, 0, 1]), torch.tensor([0, 0, 1, 1, 1])) == 0.8
    table = [[1, 9, 3], [8, 2, 7], [4, 6, 5]]
    assert _max_assignment(table) == 9 + 8 + 5


def test_fit_enumerates_c_and_samples_each_cluster():
    pyro.clear_param_store()
    vae = _vae()
    x = torch.bernoulli(torch.full((16, 6), 0.5))
    pyrovae.fit(vae, x, epochs=1, batch_size=8, device="cpu", progress=False, binarize="none")
    with pytest.raises(PyrovaeError, match="TraceEnum_ELBO"):
        pyrovae.fit(vae, x, epochs=1, device="cpu", progress=False, loss="trace")
    assert vae.sample(4, y=2).shape == (4, 6)
    with pytest.raises(PyrovaeError, match="0..2"):
        vae.sample(1, y=3)


def test_refusals_and_rebuilding():
    with pytest.raises(PyrovaeError, match="--prior does not apply"):
        _vae(prior="mog")
    with pytest.raises(PyrovaeError, match="at least 2"):
        _vae(clusters=1)
    vae = _vae()
    again = build_vae(**dict(vae.config))
    assert type(again) is ClusterVAE and again.config == vae.config


@pytest.mark.filterwarnings("ignore:median effective sample size")
@pytest.mark.parametrize(
    ("likelihood", "guide"), [(lk, g) for lk in sorted(LIKELIHOODS) for g in sorted(GUIDES)]
)
def test_every_likelihood_and_guide_runs_with_clusters(likelihood, guide):
    vae = _vae(likelihood=likelihood, guide=guide)
    x = vae.sample(4, mean=False)
    vae.likelihood.check_support(x)
    vae.train()
    assert torch.isfinite(
        torch.tensor(TraceEnum_ELBO(max_plate_nesting=1).loss(vae.model, vae.guide, x))
    )
    vae.eval()
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=3)
    assert torch.isfinite(est.per_datapoint).all()
    assert vae.cluster(x).shape == (4,)
