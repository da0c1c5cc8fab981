"""The cluster VAE: c enumerated against the mixture's closed form, matching, contract."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pyro
import pytest
import torch
import torch.multiprocessing as mp
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.models.clustering import _max_assignment, best_match_accuracy, fit_mixture
from pyrovae.models.clusters import ClusterVAE
from pyrovae.models.variants import build_vae
from pyrovae.parts.guides import GUIDES
from pyrovae.parts.likelihoods import LIKELIHOODS
from pyrovae.rundir.config import upgrade_model


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
    with pytest.raises(PyrovaeError, match="prior does not apply"):
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
    parts = {"likelihood": likelihood, "posterior": guide}
    if LIKELIHOODS[likelihood].models_sequences:
        parts.update(net="gru", vocab_size=7)
    if GUIDES[guide].brings_prior:  # vq: its own codebook prior, not the mixture
        with pytest.raises(PyrovaeError, match="do not combine"):
            _vae(**parts)
        return
    vae = _vae(**parts)
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


# ------------------------------------------------------------ VaDE's initialisation
def test_fit_mixture_recovers_a_known_mixture():
    torch.manual_seed(0)
    weights = torch.tensor([0.2, 0.3, 0.5])
    locs = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, -3.0]])
    scales = torch.tensor([[0.5, 1.0], [1.0, 0.3], [0.8, 0.8]])
    c = torch.multinomial(weights, 6000, replacement=True)
    z = locs[c] + scales[c] * torch.randn(6000, 2)
    log_w, got_locs, got_scales = fit_mixture(z, 3, seed=1)
    order = got_locs[:, 0].argsort()  # components come in any order
    assert torch.allclose(log_w[order].exp().float(), weights, atol=0.02)
    assert torch.allclose(got_locs[order].float(), locs, atol=0.06)
    assert torch.allclose(got_scales[order].float(), scales, atol=0.05)
    with pytest.raises(PyrovaeError, match="at least 3 datapoints"):
        fit_mixture(z[:2], 3)


@pytest.mark.parametrize("learn_weights", [False, True])
def test_fit_clusters_sets_the_mixture_fitted_to_the_posterior_means(learn_weights):
    torch.manual_seed(0)
    vae, x = _vae(learn_weights=learn_weights), torch.bernoulli(torch.full((60, 6), 0.5))
    assert isinstance(vae.cluster_logits, torch.nn.Parameter) == learn_weights
    vae.fit_clusters(x, batch_size=7)
    assert vae.training  # its mode is restored
    vae.eval()
    log_w, locs, scales = fit_mixture(vae._posterior_mean(x), 3)
    weights = log_w.float() if learn_weights else torch.full((3,), -math.log(3))
    assert torch.allclose(vae.cluster_logits.log_softmax(-1), weights, atol=1e-5)
    assert torch.allclose(vae.cluster_locs, locs.float(), atol=1e-5)
    assert torch.allclose(vae._components().base_dist.scale, scales.float(), atol=1e-5)


def test_fit_mixture_gives_the_k_means_clusters_moments():
    torch.manual_seed(0)
    z = torch.cat([torch.randn(50, 2) - 5, torch.randn(150, 2) + 5])
    log_w, locs, scales = fit_mixture(z, 2)
    first = int(locs[:, 0].argmin())
    part = z[:50]  # k-means separates the two exactly: their shares, means and spreads
    assert torch.allclose(log_w[first].exp(), torch.tensor(0.25, dtype=torch.float64))
    assert torch.allclose(locs[first].float(), part.mean(0), atol=1e-6)
    assert torch.allclose(scales[first].float(), part.std(0, correction=0), atol=1e-6)


def _mixture_log_likelihood(z, log_w, locs, scales):
    components = torch.distributions.Normal(locs, scales).log_prob(z.double().unsqueeze(1))
    return float((components.sum(-1) + log_w).logsumexp(-1).sum())


def test_em_steps_raise_the_likelihood_of_overlapping_clusters():
    """Where k-means' hard split is not the mixture's best fit, EM moves it up."""
    torch.manual_seed(0)
    z = torch.cat([torch.randn(300, 2) * torch.tensor([3.0, 0.3]), torch.randn(300, 2) + 1])
    fits = [fit_mixture(z, 2, em_steps=steps) for steps in (0, 1, 20)]
    values = [_mixture_log_likelihood(z, *fit) for fit in fits]
    assert values[0] < values[1] - 1.0 and values[1] <= values[2] + 1e-6  # EM is monotone


def test_fit_sets_the_mixture_once_after_init_after_epochs_before_the_callback(monkeypatch):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae, x = _vae(init_after=2), torch.bernoulli(torch.full((16, 6), 0.5))
    fitted, seen = [], {}
    original = ClusterVAE.fit_clusters

    def spy(self, data, **kwargs):
        original(self, data, **kwargs)
        fitted.append((data, self.cluster_locs.detach().clone()))

    monkeypatch.setattr(ClusterVAE, "fit_clusters", spy)

    def callback(state):
        seen[state.epoch] = vae.cluster_locs.detach().clone()

    pyrovae.fit(vae, x, epochs=3, batch_size=8, progress=False, binarize="none", callback=callback)
    assert len(fitted) == 1 and fitted[0][0] is x
    assert torch.equal(seen[2], fitted[0][1])  # the callback (the checkpoint) sees it
    assert not torch.equal(seen[3], seen[2])  # and training goes on from there


def test_a_config_written_before_init_after_never_refits_and_learns_pi():
    vae = _vae()
    assert vae.init_after == 20 and vae.config["init_after"] == 20
    assert vae.config["learn_weights"] is False
    old = {k: v for k, v in vae.config.items() if k not in ("init_after", "learn_weights")}
    upgraded = upgrade_model(old, 1)  # a format-1 config: the run's old meaning
    again = build_vae(**{k: v for k, v in upgraded.items() if k != "kind"})
    assert again.init_after == 0 and again.learn_weights
    with pytest.raises(PyrovaeError, match="init_after"):
        _vae(init_after=-1)


def _fit_on_rank_data(rank: int) -> ClusterVAE:
    """The same VAE on every process, each fitting its own (different) data."""
    torch.manual_seed(0)
    vae = _vae()
    torch.manual_seed(100 + rank)
    vae.fit_clusters(torch.bernoulli(torch.full((40, 6), 0.5)))
    return vae


def cluster_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        torch.save(_fit_on_rank_data(rank).state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        gc.collect()  # cycles go while the process group is alive (see ddp_worker)
        torch.distributed.destroy_process_group()


def test_every_process_gets_the_mixture_process_0_fitted(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]), prepend=":")
    mp.spawn(cluster_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    alone = [_fit_on_rank_data(rank).state_dict() for rank in (0, 1)]
    assert not torch.equal(alone[0]["cluster_locs"], alone[1]["cluster_locs"])
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in ("cluster_locs", "cluster_raw_scales", "cluster_logits"):
            assert torch.equal(got[name], alone[0][name]), (rank, name)
