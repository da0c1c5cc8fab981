"""The semi-supervised VAE M2: enumeration against the sum over y, its data, its contract."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

import pyrovae
from pyrovae.data.labels import SemiSupervisedBatches, balanced_labels
from pyrovae.errors import PyrovaeError
from pyrovae.models.semisupervised import SemiSupervisedVAE
from pyrovae.models.variants import build_vae
from pyrovae.parts.guides import GUIDES
from pyrovae.parts.likelihoods import LIKELIHOODS
from pyrovae.parts.nets import MLP, ConvClassifier
from pyrovae.parts.priors import PRIORS
from pyrovae.rundir.config import upgrade_model

K = 3


def _m2(**kwargs) -> SemiSupervisedVAE:
    return SemiSupervisedVAE(
        **{"x_dim": 6, "z_dim": 2, "hidden": (8,), "num_classes": K, **kwargs}
    )


def _x(n: int = 4) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 6), 0.5))


def test_enumerated_elbo_is_the_sum_over_y_of_q_times_the_labelled_elbo():
    """U(x) = sum_y q(y|x) [log p(x, y, z_y) - log q(z_y|x, y)] - sum_y q log q, exactly."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae, x = _m2(), _x()
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(1)
    loss = elbo.loss(vae.model, vae.guide, x)
    # The same draws of z, one per value of y, as TraceEnum_ELBO made them.
    pyro.set_rng_seed(1)
    guide = poutine.enum(vae.guide, first_available_dim=-2)
    trace = poutine.trace(guide).get_trace(x)
    z = trace.nodes["z"]["value"]  # (K, 1?, B, Z) broadcast
    z = z.reshape(K, len(x), -1)
    log_q_y = vae.classifier(x).log_softmax(-1).T  # (K, B)
    total = torch.zeros(len(x))
    for y in range(K):
        labels = torch.full((len(x),), y)
        qz = vae.encode(x, labels)
        joint = (
            torch.log(torch.tensor(1.0 / K))
            + vae.prior().log_prob(z[y])
            + vae.decode(z[y], labels).log_prob(x)
        )
        total = total + log_q_y[y].exp() * (joint - qz.log_prob(z[y]) - log_q_y[y])
    assert loss == pytest.approx(-float(total.detach().sum()), rel=1e-5)


def test_log_px_is_logsumexp_over_y_of_log_pxy():
    """The estimator sums y out: the same draws of z, one call per label, give its value."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae, x = _m2(), _x(3)
    vae.eval()
    pyro.set_rng_seed(0)
    log_px = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=50)
    pyro.set_rng_seed(0)  # the label calls in turn draw what the enumeration drew
    per_y = torch.stack(
        [
            pyrovae.log_marginal_likelihood(
                vae.model, vae.guide, (x, torch.full((3,), y)), num_samples=50
            ).per_datapoint
            for y in range(K)
        ]
    )
    expected = torch.logsumexp(per_y, 0)
    assert torch.allclose(expected, log_px.per_datapoint, atol=1e-4)


def test_the_classification_term_is_in_training_only_and_never_in_log_px():
    vae, x, y = _m2(aux_weight=10.0), _x(), torch.tensor([0, 1, 2, 0])
    names = lambda: set(poutine.trace(vae.guide).get_trace(x, y).nodes)  # noqa: E731
    assert "classification" in names()
    vae.eval()
    assert "classification" not in names()
    assert "y" not in names()  # observed labels are not sampled in the guide


def test_balanced_labels_are_seeded_and_balanced():
    labels = torch.arange(60) % 3
    picked = balanced_labels(labels, 12, seed=0)
    assert torch.equal(picked, balanced_labels(labels, 12, seed=0))
    assert not torch.equal(picked, balanced_labels(labels, 12, seed=1))
    assert torch.bincount(labels[picked]).tolist() == [4, 4, 4]
    with pytest.raises(PyrovaeError, match="multiple of the 3 classes"):
        balanced_labels(labels, 10, seed=0)


def test_batches_interleave_and_repeat_an_epoch_given_its_number():
    xu, xl, yl = torch.rand(10, 6), torch.rand(4, 6), torch.tensor([0, 1, 2, 0])
    batches = SemiSupervisedBatches(xu, xl, yl, batch_size=3, every=2, seed=0)
    items = list(batches)
    assert len(items) == len(batches) == 4 + 2
    assert [len(i) for i in items] == [1, 1, 2, 1, 1, 2]  # (x,), (x,), (x, y), ...
    assert sum(len(i[0]) for i in items if len(i) == 1) == 10
    batches.set_epoch(1)
    one = [i[0] for i in batches]
    batches.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(one, (i[0] for i in batches), strict=True))


def test_fit_trains_with_enumeration_and_refuses_an_elbo_that_would_sample_y():
    pyro.clear_param_store()
    vae = _m2()
    data = SemiSupervisedBatches(_x(8), _x(3), torch.tensor([0, 1, 2]), batch_size=4)
    history = pyrovae.fit(vae, data, epochs=1, device="cpu", progress=False, binarize="none")
    assert len(history["train_elbo"]) == 1
    with pytest.raises(PyrovaeError, match="TraceEnum_ELBO"):
        pyrovae.fit(vae, data, epochs=1, device="cpu", progress=False, loss="trace")


def test_a_config_rebuilds_the_same_variant():
    vae = _m2(aux_weight=3.0)
    again = build_vae(**dict(vae.config))
    assert type(again) is SemiSupervisedVAE and again.aux_weight == 3.0
    assert again.config == vae.config


@pytest.mark.parametrize(
    ("prior", "likelihood", "guide"),
    [(p, lk, g) for p in sorted(PRIORS) for lk in sorted(LIKELIHOODS) for g in sorted(GUIDES)],
)
@pytest.mark.filterwarnings("ignore:median effective sample size")
def test_every_part_runs_in_m2_or_says_why_not(prior, likelihood, guide):
    parts = {"prior": prior, "likelihood": likelihood, "posterior": guide}
    if GUIDES[guide].brings_prior and prior != "standard":
        with pytest.raises(PyrovaeError, match="brings its own prior"):
            _m2(**parts)
        return
    if LIKELIHOODS[likelihood].models_sequences:  # its classifier reads vectors
        with pytest.raises(PyrovaeError, match="networks do not take"):
            _m2(**parts, net="gru", vocab_size=7)
        return
    if PRIORS[prior].reads_encoder:
        with pytest.raises(PyrovaeError, match="VampPrior"):
            _m2(**parts)
        return
    vae = _m2(**parts)
    x = vae.model(None, torch.tensor([0, 1, 2, 0]), num_samples=4)
    vae.likelihood.check_support(x)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    assert torch.isfinite(torch.tensor(elbo.loss(vae.model, vae.guide, x)))
    vae.eval()
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x, num_samples=3)
    assert torch.isfinite(est.per_datapoint).all() and est.enumerated == K
    assert vae.classify(x).shape == (4,) and vae.reconstruct(x).shape == (4, 6)


def test_q_y_learns_from_labels_on_separable_data():
    """Two classes that differ in every pixel: a few epochs of M2 classify them."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    y = torch.arange(200) % 2
    probs = torch.where(y[:, None] == 1, 0.9, 0.1).expand(200, 6)
    x = dist.Bernoulli(probs).sample()
    vae = SemiSupervisedVAE(x_dim=6, z_dim=2, hidden=(16,), num_classes=2, aux_weight=50.0)
    data = SemiSupervisedBatches(x[4:], x[:4], y[:4], batch_size=32, seed=0)
    pyrovae.fit(vae, data, epochs=15, device="cpu", progress=False, binarize="none", lr=1e-2)
    assert (vae.classify(x) == y).float().mean() > 0.9


def test_the_classifier_is_a_cnn_for_images_and_an_mlp_for_tables_by_default():
    images = SemiSupervisedVAE(z_dim=2, hidden=(8,), image_shape=(1, 28, 28))
    assert isinstance(images.classifier, ConvClassifier)
    assert images.config["classifier"] == "conv"
    assert _m2().config["classifier"] == "mlp" and isinstance(_m2().classifier, MLP)
    chosen = SemiSupervisedVAE(z_dim=2, hidden=(8,), image_shape=(1, 28, 28), classifier="mlp")
    assert isinstance(chosen.classifier, MLP)
    with pytest.raises(PyrovaeError, match="conv classifier needs image_shape"):
        _m2(classifier="conv")
    with pytest.raises(PyrovaeError, match="unknown classifier"):
        _m2(classifier="resnet")


def test_the_conv_classifier_drops_out_in_training_only():
    torch.manual_seed(0)
    vae = SemiSupervisedVAE(z_dim=2, hidden=(8,), image_shape=(1, 8, 8), x_dim=64, num_classes=K)
    x = torch.rand(5, 64)
    assert not torch.equal(vae.classifier(x), vae.classifier(x))  # dropout in train()
    vae.eval()
    assert torch.equal(vae.classify(x), vae.classify(x)) and vae.class_probs(x).shape == (5, K)
    assert torch.allclose(vae.class_probs(x).sum(-1), torch.ones(5))


def test_a_config_written_before_the_classifier_option_rebuilds_its_mlp():
    old = SemiSupervisedVAE(z_dim=2, hidden=(8,), image_shape=(1, 28, 28), classifier="mlp")
    config = upgrade_model({k: v for k, v in old.config.items() if k != "classifier"}, 1)
    again = build_vae(**{k: v for k, v in config.items() if k != "kind"})
    assert isinstance(again.classifier, MLP)
    again.load_state_dict(old.state_dict())
