"""The autoregressive distribution over sequences: exact normalisation, teacher forcing
against the step-by-step sampler, the sampler's frequencies, greedy and beam search,
and log p(x) by importance sampling against the exact sum over a discrete latent."""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.data.sequences import BOS, EOS, PAD, UNK
from pyrovae.inference.marginal import log_marginal_likelihood
from pyrovae.parts.autoregressive import Autoregressive, RecurrentCore, after_end
from pyrovae.parts.likelihoods import AutoregressiveLikelihood, check_sequences

V, L = 6, 4  # tokens 4 and 5 besides the specials; at most 3 tokens and EOS


def every_sequence(vocab: int = V, length: int = L) -> torch.Tensor:
    """All sequences of at most length - 1 ordinary tokens followed by EOS, padded."""
    rows = []
    for n in range(length):
        for body in itertools.product(range(4, vocab), repeat=n):
            rows.append(list(body) + [EOS] + [PAD] * (length - n - 1))
    return torch.tensor(rows)


def core(context_dim: int = 3, layers: int = 1) -> RecurrentCore:
    torch.manual_seed(1)
    return RecurrentCore(V, L, context_dim, hidden_size=8, num_layers=layers, embedding_dim=5)


@pytest.mark.parametrize("context_dim,layers", [(3, 1), (0, 1), (3, 2)])
def test_probabilities_of_every_sequence_sum_to_one(context_dim, layers):
    c = core(context_dim, layers)
    x = every_sequence()
    assert len(x) == 1 + 2 + 4 + 8
    contexts = torch.randn(2, context_dim)
    for context in contexts:
        px = Autoregressive(c, context.expand(len(x), -1))
        total = px.log_prob(x).exp().sum()
        assert abs(float(total.detach()) - 1.0) < 1e-5


def test_impossible_sequences_have_probability_zero():
    px = Autoregressive(core(), torch.randn(3))
    for bad in ([4, 5, 4, 4], [PAD, EOS, PAD, PAD], [UNK, EOS, PAD, PAD], [BOS, EOS, PAD, PAD]):
        assert px.log_prob(torch.tensor(bad)) == -math.inf


def test_teacher_forcing_equals_the_sampler_step_by_step():
    c = core()
    context = torch.randn(50, 3)
    px = Autoregressive(c, context)
    x = px.sample()
    assert x.shape == (50, L) and bool((x[:, 0] != PAD).all())
    check_sequences(x, V)
    # The sampler's own probabilities: one GRU step at a time.
    state, token, total = c.initial_state(context), torch.full((50, 1), BOS), torch.zeros(50)
    for t in range(L):
        logits, state = c.logits(token, context, state, t)
        step = logits[:, 0].log_softmax(-1).gather(-1, x[:, t : t + 1])[:, 0]
        total += torch.where(after_end(x)[:, t], torch.zeros(()), step)
        token = x[:, t : t + 1]
    assert torch.allclose(px.log_prob(x), total, atol=1e-5)
    assert torch.allclose(px.token_log_prob(x).sum(-1), total, atol=1e-5)


def test_samples_follow_the_probabilities():
    torch.manual_seed(0)
    x = every_sequence()
    px = Autoregressive(core(), torch.randn(3))
    p = px.log_prob(x).exp()
    draws = px.sample((20000,))
    index = {tuple(row.tolist()): i for i, row in enumerate(x)}
    counts = torch.zeros(len(x))
    for row in draws:
        counts[index[tuple(row.tolist())]] += 1
    sd = (p * (1 - p) / 20000).sqrt()
    assert bool(((counts / 20000 - p).abs() < 5 * sd + 1e-3).all())


def test_temperature_sharpens_samples_but_not_log_prob():
    c, context = core(), torch.randn(3)
    cold = Autoregressive(c, context, temperature=1e-4)
    x = every_sequence()
    assert torch.equal(cold.log_prob(x), Autoregressive(c, context).log_prob(x))
    draws = cold.sample((200,))
    assert torch.equal(draws, cold.decode("greedy").expand(200, -1))


def test_greedy_takes_the_most_probable_token_at_each_step():
    c = core()
    context = torch.randn(5, 3)
    out = Autoregressive(c, context).decode("greedy")
    state, token = c.initial_state(context), torch.full((5, 1), BOS)
    for t in range(L):
        logits, state = c.logits(token, context, state, t)
        token = logits[:, 0].argmax(-1, keepdim=True)
        expected = torch.where(after_end(out)[:, t], PAD, token[:, 0])
        assert torch.equal(out[:, t], expected)


def test_a_wide_beam_finds_the_most_probable_sequence():
    c, x = core(), every_sequence()
    for context in torch.randn(4, 3):
        px = Autoregressive(c, context)
        best = x[px.log_prob(x).argmax()]
        assert torch.equal(px.decode("beam", beam_width=16), best)
        narrow = px.decode("beam", beam_width=1)
        assert torch.equal(narrow, px.decode("greedy"))


def test_batch_shapes_broadcast_like_other_distributions():
    c = core()
    px = Autoregressive(c, torch.randn(7, 5, 3))
    assert px.batch_shape == (7, 5) and px.event_shape == (L,)
    x = every_sequence()[:5]
    assert px.log_prob(x).shape == (7, 5)
    assert px.sample((2,)).shape == (2, 7, 5, L)
    assert px.expand((3, 7, 5)).log_prob(x).shape == (3, 7, 5)


def test_word_dropout_changes_the_teacher_forced_inputs_only_when_training():
    lik = AutoregressiveLikelihood(L, vocab_size=V, hidden_size=8, word_dropout=0.99)
    x = every_sequence()[-8:]
    params = torch.randn(8, lik.param_dim)
    lik.eval()
    exact = lik(params).log_prob(x)
    lik.train()
    torch.manual_seed(0)
    dropped = lik(params).log_prob(x)
    assert not torch.allclose(exact, dropped)
    first = lik(params).token_log_prob(x)[:, 0]  # BOS is never dropped
    lik.eval()
    assert torch.allclose(first, lik(params).token_log_prob(x)[:, 0])


def test_check_sequences_names_the_problem():
    with pytest.raises(Exception, match="0..5"):
        check_sequences(torch.tensor([[9, EOS, PAD, PAD]]), V)
    with pytest.raises(Exception, match="sequence 1"):
        check_sequences(torch.tensor([[4, EOS, PAD, PAD], [4, 4, 4, 4]]), V)
    for special in (PAD, BOS, UNK):  # never emitted, so never in data
        with pytest.raises(Exception, match="sequence 0"):
            check_sequences(torch.tensor([[4, special, EOS, PAD]]), V)


# --------------------------------------------------- log p(x) with a discrete latent
class DiscreteLatent(torch.nn.Module):
    """z ~ Categorical(3); x ~ Autoregressive(context = embedding of z)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.core = RecurrentCore(V, L, 3, hidden_size=8, embedding_dim=5)
        self.codes = torch.nn.Parameter(torch.randn(3, 3) * 2)
        self.logits = torch.tensor([0.2, -0.3, 0.5])

    def joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, z) for every z: ``(3, N)``."""
        px = Autoregressive(self.core, self.codes[:, None, :].expand(3, len(x), 3))
        return self.logits.log_softmax(-1)[:, None] + px.log_prob(x)

    def model(self, x, posterior=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Categorical(logits=self.logits))
            pyro.sample("x", Autoregressive(self.core, self.codes[z]), obs=x)

    def guide(self, x, posterior=None):
        with pyro.plate("data", x.shape[0]):
            logits = posterior if posterior is not None else torch.zeros(x.shape[0], 3)
            pyro.sample("z", dist.Categorical(logits=logits))


def test_log_marginal_likelihood_equals_the_exact_sum():
    m, x = DiscreteLatent(), every_sequence()
    with torch.no_grad():
        exact = m.joint(x).logsumexp(0)
        posterior = m.joint(x).T - exact[:, None]
    # With the exact posterior as proposal every weight is p(x): exact for any K.
    est = log_marginal_likelihood(m.model, m.guide, (x, posterior), num_samples=7)
    assert torch.allclose(est.per_datapoint.cpu(), exact, atol=1e-5)
    # With a uniform proposal it converges.
    est = log_marginal_likelihood(m.model, m.guide, x, num_samples=4000, discrete="sample")
    assert torch.allclose(est.per_datapoint.cpu(), exact, atol=0.02)
    assert abs(float(exact.exp().sum()) - 1.0) < 1e-5  # the sum rule over x
