"""The anomaly scores: exact where the math gives them, and every entry's contract."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.ppca import PPCA, MaskedPPCA
from PIL import Image

import pyrovae
from pyrovae import PyrovaeError
from pyrovae.use.anomaly import SCORES, anomaly_score, perturb, png_length
from pyrovae.use.applications import anomaly_scores

# Few importance samples on purpose: the scores' values, not their precision, are tested.
pytestmark = pytest.mark.filterwarnings("ignore:median effective sample size")


def _binary(x: torch.Tensor) -> torch.Tensor:
    """Images as the Bernoulli likelihood takes them."""
    return (x > 0.5).to(x.dtype)


def _seeded(seed: int, *args, **kwargs) -> torch.Tensor:
    pyro.set_rng_seed(seed)
    return anomaly_score(*args, **kwargs)


# ---------------------------------------------------------------- exact values


def test_nll_and_elbo_are_exact_with_the_exact_posterior():
    # With q(z|x) = p(z|x) every log weight is log p(x): both scores are -log p(x).
    m = PPCA()
    x = m.sample(20)
    exact = -m.exact_log_px(x)
    for method in ("nll", "elbo"):
        got = anomaly_score((m.model, m.guide), x, method, num_samples=7)
        assert got.shape == (20,)
        assert torch.allclose(got, exact, atol=1e-8), method
    assert torch.allclose(anomaly_scores(m.model, m.guide, x, num_samples=7), exact, atol=1e-8)


def test_reconstruction_is_minus_the_expected_log_likelihood():
    # -E_q log N(x; W z + mu, s^2 I) = D/2 log(2 pi s^2) + (|x - W m - mu|^2 + tr(W S W^T))/2s^2
    m = PPCA()
    x = m.sample(10)
    loc = (x - m.mu) @ m.W @ m.Minv.T
    cov = m.sigma**2 * m.Minv
    resid = ((x - loc @ m.W.T - m.mu) ** 2).sum(-1) + torch.trace(m.W @ cov @ m.W.T)
    d = x.shape[1]
    exact = 0.5 * d * math.log(2 * math.pi * m.sigma**2) + resid / (2 * m.sigma**2)
    got = _seeded(0, (m.model, m.guide), x, "reconstruction", num_samples=4000)
    assert float((got - exact).abs().max()) < 0.1
    # ... and, by the ELBO's two terms, -ELBO = reconstruction + KL(q || p(z))
    kl = torch.distributions.kl_divergence(
        dist.MultivariateNormal(loc, cov),
        dist.MultivariateNormal(torch.zeros(2).double(), torch.eye(2).double()),
    )
    assert float((exact + kl + m.exact_log_px(x)).abs().max()) < 1e-8


def _png_payload(image: np.ndarray) -> int:
    """Bytes in the IDAT chunks of Pillow's PNG, read with struct: file minus container."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=9)
    png = buffer.getvalue()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, types = 8, []
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        types.append(png[at + 4 : at + 8])
        at += length + 12
    assert types[0] == b"IHDR" and types[-1] == b"IEND" and set(types[1:-1]) == {b"IDAT"}
    return len(png) - 8 - 25 - 12 - 12 * (len(types) - 2)


def test_complexity_is_nll_minus_the_png_length(sample):
    vae = pyrovae.VAE(z_dim=4, hidden=(16,), image_shape=sample.image_shape)
    x = _binary(sample.test[:6])
    x[0] = 0.0  # a blank image: the shortest PNG of all
    nll = _seeded(1, vae, x, "nll", num_samples=5)
    got = _seeded(1, vae, x, "complexity", num_samples=5)
    images = (x * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
    lengths = torch.tensor([_png_payload(im) for im in images], dtype=x.dtype)
    assert torch.equal(lengths, torch.tensor([png_length(im) for im in images], dtype=x.dtype))
    assert torch.allclose(got, nll - lengths * 8 * math.log(2), atol=1e-4)
    assert int(lengths.argmin()) == 0


class TwoLayers:
    """A linear-Gaussian model with two latent layers: z2 -> z1 -> x, and a bottom-up guide."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.C = torch.randn(3, 2, generator=g, dtype=torch.float64)  # p(z1 | z2)
        self.W = torch.randn(5, 3, generator=g, dtype=torch.float64)  # p(x | z1)
        self.A = 0.3 * torch.randn(3, 5, generator=g, dtype=torch.float64)  # q(z1 | x)
        self.B = torch.randn(2, 3, generator=g, dtype=torch.float64)  # q(z2 | z1)

    def p2(self, like):
        return dist.Normal(like.new_zeros(2), 1.0).to_event(1)

    def p1(self, z2):
        return dist.Normal(z2 @ self.C.T, 0.7).to_event(1)

    def px(self, z1):
        return dist.Normal(z1 @ self.W.T, 0.5).to_event(1)

    def q1(self, x):
        return dist.Normal(x @ self.A.T, 0.6).to_event(1)

    def q2(self, z1):
        return dist.Normal(z1 @ self.B.T, 0.8).to_event(1)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", self.p2(x))
            z1 = pyro.sample("z1", self.p1(z2))
            pyro.sample("x", self.px(z1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", self.q1(x))
            pyro.sample("z2", self.q2(z1))


def test_llr_is_the_difference_of_the_two_bounds_computed_by_hand():
    m, k = TwoLayers(), 7
    x = torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = _seeded(3, (m.model, m.guide), x, "llr", num_samples=k)
    # The same draws by hand: L's z1, z2 ~ q; then L>1's z1' ~ q (discarded), z2 ~ q(z2|z1'),
    # z1 ~ p(z1|z2).
    pyro.set_rng_seed(3)
    z1 = m.q1(x).expand((k, 5)).rsample()
    z2 = m.q2(z1).rsample()
    log_w = (
        m.px(z1).log_prob(x)
        + m.p1(z2).log_prob(z1)
        + m.p2(x).log_prob(z2)
        - m.q1(x).log_prob(z1)
        - m.q2(z1).log_prob(z2)
    )
    full = log_w.logsumexp(0) - math.log(k)
    discarded = m.q1(x).expand((k, 5)).rsample()
    z2 = m.q2(discarded).rsample()
    z1 = m.p1(z2).rsample()
    log_w = m.px(z1).log_prob(x) + m.p2(x).log_prob(z2) - m.q2(discarded).log_prob(z2)
    partial = log_w.logsumexp(0) - math.log(k)
    assert torch.allclose(got, full - partial, atol=1e-10)
    # L alone is the importance-sampling estimate of log p(x): the same for K large
    nll = _seeded(3, (m.model, m.guide), x, "nll", num_samples=k)
    assert torch.allclose(nll, -full, atol=1e-10)


def test_llr_refuses_k_outside_the_layers():
    m = TwoLayers()
    x = torch.randn(4, 5, dtype=torch.float64)
    for k in (0, 2):
        with pytest.raises(PyrovaeError, match="k must be 1 to 1"):
            anomaly_score((m.model, m.guide), x, "llr", num_samples=2, k=k)


def test_likelihood_ratio_against_the_model_itself_is_exactly_zero():
    m = PPCA(shift=0.3)  # an inexact guide: the estimates are noisy, the difference is not
    x = m.sample(10)
    got = anomaly_score(m, x, "likelihood-ratio", num_samples=5, background=m)
    assert torch.equal(got, torch.zeros(10, dtype=got.dtype))


def test_likelihood_ratio_is_the_difference_of_the_two_nlls():
    m, m0 = PPCA(shift=0.3), PPCA(seed=4)
    x = m.sample(10)
    got = _seeded(2, m, x, "likelihood-ratio", num_samples=5, background=m0)
    own = _seeded(2, m, x, "nll", num_samples=5)
    background = _seeded(2, m0, x, "nll", num_samples=5)
    assert torch.allclose(got, own - background, atol=1e-12)


def test_perturb_replaces_entries_at_the_rate_by_uniform_values():
    x = torch.full((200, 50), 2.0)
    assert torch.equal(perturb(x, 0.0), x)
    everything = perturb(x, 1.0, torch.Generator().manual_seed(0))
    assert float(everything.min()) >= 0 and float(everything.max()) <= 1
    some = perturb(x, 0.3, torch.Generator().manual_seed(0))
    assert abs(float((some != 2.0).float().mean()) - 0.3) < 0.02
    assert torch.equal(some, perturb(x, 0.3, torch.Generator().manual_seed(0)))
    wide = perturb(x, 1.0, torch.Generator().manual_seed(0), low=-3.0, high=3.0)
    assert float(wide.min()) < -2 and float(wide.max()) > 2
    with pytest.raises(PyrovaeError, match="rate is a probability"):
        perturb(x, 1.5)


# ------------------------------------------------------------ missing entries


@pytest.mark.parametrize("method", ["nll", "elbo", "reconstruction"])
def test_observed_only_scores_ignore_the_values_at_missing_entries(method):
    m = MaskedPPCA()
    x, mask = m.sample(30)
    with_nan = x.masked_fill(~mask, math.nan)
    scores = [_seeded(0, m, with_nan, method, num_samples=5)]
    for fill in (0.0, 100.0):
        given = {"x": x.masked_fill(~mask, fill), "mask": mask}
        scores.append(_seeded(0, m, given, method, num_samples=5))
    assert all(torch.equal(s, scores[0]) for s in scores)
    if method != "reconstruction":  # the guide is exact given the observed entries
        assert torch.allclose(scores[0], -m.exact_log_px(x, mask), atol=1e-8)


def test_complexity_refuses_missing_entries(sample):
    vae = pyrovae.VAE(z_dim=4, hidden=(16,), image_shape=sample.image_shape)
    x = _binary(sample.test[:4])
    x[0, :10] = math.nan
    with pytest.raises(PyrovaeError, match="needs complete inputs; x has 10 missing") as err:
        anomaly_score(vae, x, "complexity", num_samples=2)
    assert "\n" not in str(err.value)
    masked = {"x": torch.nan_to_num(x), "mask": ~torch.isnan(x)}
    with pytest.raises(PyrovaeError, match="10 missing entries"):
        anomaly_score(vae, masked, "complexity", num_samples=2)


# ------------------------------------------------------------- the contract


@pytest.fixture(scope="module")
def trained(sample):
    """A tiny hierarchical VAE and a background VAE on perturbed images, one epoch each."""
    pyro.set_rng_seed(0)
    train = sample.train[:256]
    vae = pyrovae.VAE(z_dim=(4, 2), hidden=(16,), image_shape=sample.image_shape)
    pyrovae.fit(vae, train, epochs=1, batch_size=64, progress=False)
    background = pyrovae.VAE(z_dim=(4, 2), hidden=(16,), image_shape=sample.image_shape)
    noisy = perturb(train, 0.2, torch.Generator().manual_seed(0))
    pyrovae.fit(background, noisy, epochs=1, batch_size=64, progress=False)
    return vae, background


def _masked_images(x: torch.Tensor) -> torch.Tensor:
    holes = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    return x.masked_fill(holes, math.nan)


@pytest.mark.parametrize("method", sorted(SCORES))
def test_every_score_gives_one_finite_number_per_datapoint(method, trained, sample):
    vae, background = trained
    x = _binary(sample.test[:12])
    extra = {"background": background} if SCORES[method].needs_background else {}
    scores = anomaly_score(vae, x, method, num_samples=3, batch_size=5, **extra)
    assert scores.shape == (12,) and bool(torch.isfinite(scores).all())
    assert not scores.requires_grad
    if SCORES[method].observed_only:  # missing entries: scored on the observed ones
        holes = anomaly_score(vae, _masked_images(x), method, num_samples=3, **extra)
        assert holes.shape == (12,) and bool(torch.isfinite(holes).all())


def _inapplicable(method: str, trained, sample):
    """What each score's needs rule out: ``(model, x, keyword arguments)`` cases."""
    vae, background = trained
    score, x = SCORES[method], _binary(sample.test[:4])
    extra = {"background": background} if score.needs_background else {}
    cases = [(vae, x, {**extra, "bogus": 1})]  # an option no score takes
    if score.needs_image:
        cases.append((pyrovae.VAE(z_dim=(4, 2), hidden=(16,)), x, extra))
    if score.needs_layers:
        cases.append((pyrovae.VAE(z_dim=4, hidden=(16,)), x, extra))
    if score.needs_background:
        cases.append((vae, x, {}))
    else:
        cases.append((vae, x, {"background": background}))
    if not score.observed_only:
        cases.append((vae, _masked_images(x), extra))
    return cases


@pytest.mark.parametrize("method", sorted(SCORES))
def test_a_score_that_does_not_apply_is_refused_in_one_line(method, trained, sample):
    for model, x, kwargs in _inapplicable(method, trained, sample):
        with pytest.raises(PyrovaeError) as err:
            anomaly_score(model, x, method, num_samples=2, **kwargs)
        assert "\n" not in str(err.value) and str(err.value)


def test_an_unknown_score_lists_the_known_ones(trained, sample):
    with pytest.raises(PyrovaeError, match="unknown anomaly score 'nope'; choose one of: "):
        anomaly_score(trained[0], _binary(sample.test[:2]), "nope")


def test_complexity_refuses_values_outside_the_unit_interval(sample):
    vae = pyrovae.VAE(z_dim=4, hidden=(16,), likelihood="gaussian", image_shape=sample.image_shape)
    with pytest.raises(PyrovaeError, match=r"inputs in \[0, 1\]"):
        anomaly_score(vae, sample.test[:3] * 2 - 0.5, "complexity", num_samples=2)
