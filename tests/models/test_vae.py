import math

import pyro
import pytest
import torch
from pyro import poutine

import pyrovae
from pyrovae import VAE, PyrovaeError
from pyrovae.inference.logweights import trace_log_weights
from pyrovae.parts.distributions import UniformCodes
from pyrovae.parts.guides import GUIDES
from pyrovae.parts.likelihoods import LIKELIHOODS
from pyrovae.parts.priors import PRIORS


def _sites(trace):
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name != "data"
    }


def _binary(n, d=784):
    return torch.bernoulli(torch.full((n, d), 0.3))


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_model_and_guide_have_the_same_latent_sites_under_the_data_plate(net):
    vae = VAE(z_dim=7, hidden=(32,), net=net, image_shape=(1, 28, 28))
    x = _binary(5)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    latent_g, latent_m = _sites(guide_trace), _sites(model_trace)
    assert set(latent_g) == set(latent_m) == {"z"}
    for name in latent_g:
        assert latent_g[name]["value"].shape == latent_m[name]["value"].shape == (5, 7)
        for trace in (guide_trace, model_trace):
            frames = [f.name for f in trace.nodes[name]["cond_indep_stack"]]
            assert frames == ["data"]
    obs = model_trace.nodes["x"]
    assert obs["is_observed"] and [f.name for f in obs["cond_indep_stack"]] == ["data"]
    assert torch.equal(obs["value"], x)


def test_every_parameter_is_registered_with_pyro():
    vae = VAE(z_dim=4, hidden=(16,))
    x = _binary(3)
    with poutine.trace(param_only=True) as tr:
        vae.guide(x)
        vae.model(x)
    registered = {site["value"] for site in tr.trace.nodes.values()}
    for name, p in vae.named_parameters():
        assert any(p is r for r in registered), name


def test_two_vaes_do_not_share_parameters():
    a, b = VAE(z_dim=4, hidden=(16,)), VAE(z_dim=4, hidden=(16,))
    x = _binary(2)
    a.model(x)
    b.model(x)
    assert a.name != b.name
    pa = dict(a.named_parameters())["decoder.net.0.weight"]
    pb = dict(b.named_parameters())["decoder.net.0.weight"]
    assert pa is not pb and not torch.equal(pa, pb)


def test_model_generates_without_data():
    vae = VAE(z_dim=4, hidden=(16,))
    x = vae.model(None, num_samples=6)
    assert x.shape == (6, 784) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert vae.sample(3).shape == (3, 784)
    assert vae.reconstruct(_binary(2)).shape == (2, 784)


@pytest.mark.parametrize(
    ("prior", "likelihood", "guide"),
    [(p, lk, g) for p in sorted(PRIORS) for lk in sorted(LIKELIHOODS) for g in sorted(GUIDES)],
)
def test_every_combination_builds_by_name_and_runs(prior, likelihood, guide):
    parts = {"prior": prior, "likelihood": likelihood, "posterior": guide}
    if LIKELIHOODS[likelihood].models_sequences:
        parts.update(net="gru", vocab_size=7)
    refusal = (
        "brings its own prior" if GUIDES[guide].brings_prior and prior != "standard" else None
    )
    if parts.get("net") == "gru":
        refusal = refusal or _sequence_refusal(prior, None)
    if refusal:
        with pytest.raises(PyrovaeError, match=refusal):
            VAE(x_dim=16, z_dim=3, hidden=(8,), **parts)
        return
    vae = VAE(x_dim=16, z_dim=3, hidden=(8,), **parts)
    own = vae.prior.name if GUIDES[guide].brings_prior else prior
    assert vae.config["prior"] == own and vae.config["likelihood"] == likelihood
    assert vae.config["posterior"] == guide
    x = vae.model(None, num_samples=4)
    vae.likelihood.check_support(x)
    lw = trace_log_weights(vae.model, vae.guide, x, num_particles=3)
    assert lw.log_weight.shape == (3, 4) and torch.isfinite(lw.log_weight).all()


def _refusal(prior: str, guide: str, structure: str | None = None) -> str | None:
    """What the VAE says when these parts do not combine (None: they do)."""
    if GUIDES[guide].brings_prior:  # vq: its codebook prior, over the encoder's latent
        if prior != "standard":
            return "brings its own prior"
        return "hierarchical" if structure == "hierarchical" else None
    if PRIORS[prior].reads_encoder:  # pseudo-inputs: no label, and in z_1's space
        return "VampPrior"
    return None


STRUCTURES = {
    "conditional": {"num_classes": 3},
    "hierarchical": {"z_dim": (3, 2)},
}


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
@pytest.mark.parametrize(
    ("prior", "likelihood", "guide"),
    [(p, lk, g) for p in sorted(PRIORS) for lk in sorted(LIKELIHOODS) for g in sorted(GUIDES)],
)
def test_every_combination_runs_conditional_and_hierarchical_or_says_why_not(
    prior, likelihood, guide, structure
):
    settings = {"x_dim": 16, "z_dim": 3, "hidden": (8,), **STRUCTURES[structure]}
    parts = {"prior": prior, "likelihood": likelihood, "posterior": guide}
    refusal = _refusal(prior, guide, structure)
    if LIKELIHOODS[likelihood].models_sequences:
        settings.update(net="gru", vocab_size=7)
        vq_refusal = refusal if GUIDES[guide].brings_prior else None  # the prior, first
        refusal = vq_refusal or _sequence_refusal(prior, structure) or refusal
    if refusal:
        with pytest.raises(PyrovaeError, match=refusal):
            VAE(**settings, **parts)
        return
    vae = VAE(**settings, **parts)
    y = torch.tensor([0, 1, 2, 0]) if structure == "conditional" else None
    x = vae.model(None, y, num_samples=4)
    vae.likelihood.check_support(x)
    data = (x, y) if y is not None else (x,)
    lw = trace_log_weights(vae.model, vae.guide, *data, num_particles=3)
    assert lw.log_weight.shape == (3, 4) and torch.isfinite(lw.log_weight).all()
    assert vae.sample(4).shape == (4, 16)


def _sequence_refusal(prior: str, structure: str | None) -> str | None:
    """What a VAE of token sequences says of parts that read vectors (None: fine)."""
    if structure == "conditional":  # the label is appended to the encoder's input
        return "networks do not take"
    return "pseudo-inputs" if PRIORS[prior].reads_encoder else None


def test_parts_can_be_passed_as_modules():
    vae = VAE(x_dim=16, z_dim=3, hidden=(8,), prior=PRIORS["standard"](3))
    assert vae.config["prior"] == "standard"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior": "nope"}, "unknown prior 'nope'; choose one of: diagonal, flow, mog"),
        ({"likelihood": "nope"}, "unknown likelihood"),
        ({"posterior": "nope"}, "unknown guide"),
        ({"net": "nope"}, "unknown net"),
        ({"z_dim": 0}, "must be positive"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(PyrovaeError, match=match):
        VAE(**kwargs)


def test_check_data_names_the_expected_shape():
    with pytest.raises(PyrovaeError, match=r"shape \(N, 784\)"):
        VAE().check_data(torch.zeros(3, 28, 28))


def test_model_needs_data_or_a_count():
    with pytest.raises(PyrovaeError, match="num_samples"):
        VAE(z_dim=2, hidden=(4,)).model(None)
    pyro.clear_param_store()


def test_orthogonal_initial_weights():
    vae = VAE(x_dim=16, z_dim=3, hidden=(16,), init="orthogonal")
    weight = next(m for m in vae.encoder.modules() if isinstance(m, torch.nn.Linear)).weight
    assert torch.allclose(weight @ weight.T, torch.eye(16), atol=1e-5)
    assert vae.config["init"] == "orthogonal" and VAE(x_dim=16).config["init"] == "default"


# ------------------------------------------------------------------ conditional VAE
def test_a_conditional_vae_gives_the_label_to_both_networks():
    vae = VAE(z_dim=3, hidden=(8,), num_classes=4)
    assert vae.config["num_classes"] == 4
    x, y = torch.bernoulli(torch.full((5, 784), 0.3)), torch.tensor([0, 1, 2, 3, 0])
    trace = poutine.trace(vae.guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=trace)).get_trace(x, y)
    assert model_trace.nodes["x"]["fn"].batch_shape == (5,)
    z = torch.zeros(5, 3)
    logits = [vae.decode(z, torch.full((5,), k)).base_dist.logits for k in range(2)]
    assert not torch.allclose(logits[0], logits[1])  # the label changes p(x | z, y)
    q = [vae.encode(x, torch.full((5,), k)).base_dist.loc for k in range(2)]
    assert not torch.allclose(q[0], q[1])  # and q(z | x, y)
    # with particles in front, the labels broadcast
    assert vae.decode(torch.zeros(7, 5, 3), y).batch_shape == (7, 5)


def test_conditional_and_unconditional_vaes_refuse_the_wrong_labels():
    with pytest.raises(PyrovaeError, match="not conditional, so it takes no labels y"):
        VAE(z_dim=2, hidden=(4,)).model(torch.zeros(2, 784), torch.zeros(2))
    with pytest.raises(PyrovaeError, match="conditional on 3 classes: pass the labels y"):
        VAE(z_dim=2, hidden=(4,), num_classes=3).guide(torch.zeros(2, 784))
    with pytest.raises(PyrovaeError, match="networks do not take; use net='mlp'"):
        VAE(z_dim=2, hidden=(4,), num_classes=3, net="conv", image_shape=(1, 28, 28))
    with pytest.raises(PyrovaeError, match="VampPrior.s pseudo-inputs carry no label"):
        VAE(z_dim=2, hidden=(4,), num_classes=3, prior="vamp")
    with pytest.raises(PyrovaeError, match="at least 2 classes"):
        VAE(z_dim=2, hidden=(4,), num_classes=1)
    with pytest.raises(PyrovaeError, match=r"labels y must lie in 0..2"):
        VAE(z_dim=2, hidden=(4,), num_classes=3).sample(2, y=3)


def test_conditional_samples_take_the_classes_in_turn_or_the_one_asked_for():
    vae = VAE(z_dim=2, hidden=(4,), num_classes=3)
    torch.manual_seed(0)
    cycled = vae.sample(6)
    torch.manual_seed(0)
    asked = vae.sample(6, y=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.equal(cycled, asked)
    torch.manual_seed(0)
    ones = vae.sample(6, y=1)
    assert torch.equal(ones[1], cycled[1]) and not torch.equal(ones[0], cycled[0])


def test_a_conditional_vae_trains_on_tuples_and_dicts_and_scores_log_p_x_given_y(sample):
    x, y = sample.train[:256], sample.train_labels[:256]
    for data in ((x, y), {"x": x, "y": y}):
        pyro.clear_param_store()
        vae = VAE(z_dim=4, hidden=(32,), num_classes=10)
        history = pyrovae.fit(vae, data, epochs=2, batch_size=64, progress=False)
        assert history["train_elbo"][-1] > history["train_elbo"][0]
    est = pyrovae.log_marginal_likelihood(
        vae.model, vae.guide, {"x": x[:20], "y": y[:20]}, num_samples=10
    )
    assert est.per_datapoint.shape == (20,) and bool(torch.isfinite(est.per_datapoint).all())


# ------------------------------------------------- hierarchical VAE (Burda et al. 2016)
def _diag_normal(loc, raw_scale):
    return torch.distributions.Normal(loc, torch.nn.functional.softplus(raw_scale) + 1e-4)


def test_a_two_layer_vae_scores_the_sum_of_its_layers_densities_written_by_hand():
    vae = VAE(z_dim=(6, 3), hidden=(16,), prior="diagonal")
    x = _binary(5)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z1, z2 = guide_trace.nodes["z1"]["value"], guide_trace.nodes["z2"]["value"]
    with torch.no_grad():
        # p(z2) p(z1 | z2) p(x | z1)
        log_p = _diag_normal(vae.prior.loc, vae.prior.raw_scale).log_prob(z2).sum(-1)
        log_p += _diag_normal(*vae.down[0].net(z2).split(6, -1)).log_prob(z1).sum(-1)
        log_p += torch.distributions.Bernoulli(logits=vae.decoder(z1)).log_prob(x).sum(-1)
        # q(z1 | x) q(z2 | z1)
        log_q = _diag_normal(*vae.encoder(x).split(6, -1)).log_prob(z1).sum(-1)
        log_q += _diag_normal(*vae.up[0].net(z1).split(3, -1)).log_prob(z2).sum(-1)
    for trace, by_hand in ((model_trace, log_p), (guide_trace, log_q)):
        trace.compute_log_prob()
        per_datapoint = sum(
            site["log_prob"] for site in trace.nodes.values() if site["type"] == "sample"
        )
        assert torch.allclose(per_datapoint, by_hand, rtol=1e-6, atol=1e-5)
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=4)
    assert est.per_datapoint.shape == (5,) and bool(torch.isfinite(est.per_datapoint).all())


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_a_two_layer_vae_has_sites_z1_z2_under_the_data_plate(net):
    vae = VAE(z_dim=[7, 3], hidden=(32, 16), net=net, image_shape=(1, 28, 28))
    assert vae.z_dim == 7 and vae.z_dims == (7, 3) and vae.config["z_dim"] == [7, 3]
    assert vae.down[0].net.net[0].out_features == 16  # one hidden layer of hidden[-1]
    x = _binary(5)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    latent_g, latent_m = _sites(guide_trace), _sites(model_trace)
    assert list(latent_g) == ["z1", "z2"] and list(latent_m) == ["z2", "z1"]
    for name, size in (("z1", 7), ("z2", 3)):
        assert latent_m[name]["value"].shape == (5, size)
        for trace in (guide_trace, model_trace):
            assert [f.name for f in trace.nodes[name]["cond_indep_stack"]] == ["data"]
    assert vae.encode(x).event_shape == (7,) and vae.decode(torch.zeros(2, 7)).batch_shape == (2,)
    assert vae.sample(4).shape == (4, 784)
    with poutine.trace() as tr:
        vae.model(num_samples=2)
    assert tr.trace.nodes["z2"]["value"].shape == (2, 3)


def test_one_size_in_a_list_is_the_one_layer_vae_and_its_config():
    one, listed = VAE(z_dim=5, hidden=(8,)), VAE(z_dim=[5], hidden=(8,))
    assert one.config["z_dim"] == listed.config["z_dim"] == 5 and listed.sites == ("z",)
    assert [n for n, _ in one.named_parameters()] == [n for n, _ in listed.named_parameters()]
    assert not any(n.startswith(("up.", "down.")) for n in one.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"z_dim": (4, 2), "prior": "vamp"}, "VampPrior .* hierarchical VAE"),
        ({"z_dim": (4, 0)}, "must be positive"),
        ({"z_dim": ()}, "must be positive"),
        ({"z_dim": "4,2"}, "must be positive"),
    ],
)
def test_a_hierarchical_vae_refuses_in_one_line(kwargs, match):
    with pytest.raises(PyrovaeError, match=match) as err:
        VAE(hidden=(8,), **kwargs)
    assert "\n" not in str(err.value)


def test_a_conditional_two_layer_vae_gives_the_label_to_z1s_networks():
    vae = VAE(z_dim=(4, 2), hidden=(8,), num_classes=3)
    x, y = _binary(4), torch.tensor([0, 1, 2, 0])
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, (x, y), num_samples=3)
    assert bool(torch.isfinite(est.per_datapoint).all()) and vae.sample(3).shape == (3, 784)


def test_latent_units_reports_every_layer():
    from pyrovae.use.diagnostics import latent_units

    vae = VAE(z_dim=(6, 3), hidden=(16,))
    units = latent_units(vae.model, vae.guide, _binary(20), num_samples=4)
    assert set(units) == {"z1", "z2"}
    assert units["z1"].variance.shape == (6,) and units["z2"].kl.shape == (3,)
    assert units["z1"].analytic and units["z2"].analytic


# ------------------------------------------------------- the vector-quantised guide
def _vq_vae(**kwargs):
    torch.manual_seed(0)
    settings = {"posterior_kwargs": {"codes": 3, "code_dim": 2}, **kwargs}
    return VAE(x_dim=6, z_dim=4, hidden=(8,), posterior="vq", **settings)


def test_vq_log_weight_is_the_likelihood_at_the_nearest_codes_minus_m_log_k():
    vae = _vq_vae().eval()
    x = _binary(5, 6)
    lw = trace_log_weights(vae.model, vae.guide, x, num_particles=2)
    z_e = vae.encoder(x).reshape(5, 2, 2)
    rows = vae.posterior.codebook
    z_q = rows[(z_e.unsqueeze(-2) - rows).norm(dim=-1).argmin(-1)].reshape(5, 4)
    expected = vae.decode(z_q).log_prob(x) - 2 * math.log(3)
    assert torch.allclose(lw.log_weight, expected.expand(2, 5), atol=1e-5)
    assert torch.allclose(lw.log_guide, torch.zeros(2, 5))
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=4)
    assert torch.allclose(est.per_datapoint, expected, atol=1e-5)  # a point mass: exact


def test_vq_codebook_and_commitment_terms_are_guide_factors_in_training_only():
    vae = _vq_vae(posterior_kwargs={"codes": 3, "code_dim": 2, "commitment": 0.5})
    x = _binary(5, 6)
    trace = poutine.trace(vae.guide).get_trace(x)
    z_e = vae.encoder(x).reshape(5, 2, 2)
    z_q = trace.nodes["z"]["value"].reshape(5, 2, 2)
    gap = (z_e - z_q).pow(2).sum((1, 2))
    for name, weight in (("codebook", 1.0), ("commitment", 0.5)):
        site = trace.nodes[name]
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
        assert torch.allclose(site["fn"].log_factor, weight * gap, atol=1e-6)
    assert {"codebook", "commitment"}.isdisjoint(poutine.trace(vae.eval().guide).get_trace(x))


def test_vq_rebuilds_from_its_config_with_the_codebook_prior():
    vae = _vq_vae()
    assert vae.config["prior"] == "codebook" and vae.config["posterior"] == "vq"
    again = VAE.from_config({**vae.config, "image_shape": None})
    assert again.config == vae.config
    assert isinstance(again.prior(), UniformCodes)


def test_fit_trains_a_vq_vae_and_moves_its_codebook():
    vae = _vq_vae()
    before = vae.posterior.codebook.detach().clone()
    x = _binary(64, 6)
    history = pyrovae.fit(vae, x, epochs=3, batch_size=16, progress=False, seed=0)
    assert all(math.isfinite(v) for v in history["train_elbo"])
    assert not torch.equal(vae.posterior.codebook.detach(), before)
    assert vae.prior().support.check(vae.prior().sample((5,))).all()
    assert vae.sample(5).shape == (5, 6)


def test_ais_refuses_a_vq_vae_in_one_line():
    vae = _vq_vae().eval()
    with pytest.raises(PyrovaeError, match="site 'z' is discrete; estimate log p"):
        pyrovae.annealed_importance_sampling(vae.model, vae.guide, _binary(3, 6), num_chains=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior": "mog"}, "brings its own prior"),
        ({"prior_kwargs": {"num_components": 3}}, "codebook prior takes no prior_kwargs"),
        ({"z_dim": (4, 2)}, "hierarchical"),
    ],
)
def test_vq_refuses_what_does_not_apply(kwargs, match):
    settings = {"x_dim": 6, "z_dim": 4, "hidden": (8,), "posterior": "vq", **kwargs}
    with pytest.raises(PyrovaeError, match=match):
        VAE(**settings)


def test_the_code_priors_need_the_vq_guide():
    with pytest.raises(PyrovaeError, match="codes of a vector-quantised latent: use it with"):
        VAE(x_dim=6, z_dim=4, hidden=(8,), prior="autoregressive")


def test_a_vq_vae_with_the_learned_code_prior_trains_and_samples_codes():
    torch.manual_seed(0)
    x = _binary(64, 12)
    vae = VAE(
        x_dim=12,
        z_dim=4,
        hidden=(8,),
        posterior="vq",
        prior="autoregressive",
        posterior_kwargs={"codes": 5, "code_dim": 2},
    )
    assert vae.config["prior"] == "autoregressive"
    before = [p.detach().clone() for p in vae.prior.parameters()]
    pyrovae.fit(vae, x, epochs=2, batch_size=16, progress=False, binarize="none")
    moved = [not torch.equal(a, b) for a, b in zip(before, vae.prior.parameters(), strict=True)]
    assert any(moved)  # the code prior is trained with the rest, through log p(z)
    again = VAE(**{k: v for k, v in vae.config.items() if k != "variant"})
    again.load_state_dict(vae.state_dict())
    z = vae.prior().sample((3,))
    assert torch.allclose(again.prior().log_prob(z), vae.prior().log_prob(z))
