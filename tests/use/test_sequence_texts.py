"""Sequences as text: per-token figures, samples and reconstructions through the vocabulary."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae import VAE
from pyrovae.data.sequences import Vocabulary
from pyrovae.use import sequences

TEXTS = ["a b", "b a c", "c", "a a b c"]


def _setup():
    vocabulary = Vocabulary.build(TEXTS, "words")
    x = vocabulary.encode(TEXTS, 6)
    torch.manual_seed(0)
    vae = VAE(
        x_dim=6,
        z_dim=2,
        hidden=(8,),
        net="gru",
        likelihood="autoregressive",
        vocab_size=vocabulary.size,
    )
    return vocabulary, x, vae.eval()


def test_token_count_includes_each_eos():
    _, x, _ = _setup()
    assert sequences.token_count(x) == sum(len(t.split()) + 1 for t in TEXTS)


def test_per_token_nll_and_perplexity():
    _, x, _ = _setup()
    figures = sequences.per_token(30.0, x)
    assert figures["test_nll_per_token"] == pytest.approx(30.0 * 4 / 14)
    assert figures["test_perplexity"] == pytest.approx(math.exp(30.0 * 4 / 14))


def test_samples_are_texts_of_the_vocabulary():
    vocabulary, _, vae = _setup()
    texts = sequences.sample_sequences(vae, 25, vocabulary, batch_size=10)
    assert len(texts) == 25
    assert all(set(t.split()) <= {"a", "b", "c"} for t in texts)
    cold = sequences.sample_sequences(vae, 5, vocabulary, temperature=1e-4)
    greedy = vocabulary.decode(vae.decode(vae.prior().sample((1,))).decode("greedy"))
    assert len(cold) == 5 and all(isinstance(t, str) for t in cold + greedy)


def test_reconstruction_accuracy_counts_exact_round_trips():
    vocabulary, x, vae = _setup()
    rebuilt = vocabulary.decode(sequences.reconstructions(vae, x))
    expected = sum(a == b for a, b in zip(TEXTS, rebuilt, strict=True)) / len(TEXTS)
    assert sequences.reconstruction_accuracy(vae, x, vocabulary) == expected
    # A canonical form that maps everything to one string makes every round trip exact.
    assert sequences.reconstruction_accuracy(vae, x, vocabulary, lambda t: "same") == 1.0
    assert sequences.reconstruction_accuracy(vae, x, vocabulary, lambda t: None) == 0.0
