"""An autoregressive distribution over whole token sequences, and the network behind it.

A sequence x = (x_1, ..., x_n, EOS) of tokens from a vocabulary of V, padded to a fixed
length L with PAD, has

    log p(x | c) = sum_{t=1}^{n+1} log p(x_t | x_<t, c),

each factor a softmax over the vocabulary from a recurrent network (a GRU) that reads
the previous token (BOS before the first) and the context c, and starts from a state
computed from c. In a VAE c is the decoder's output at z (:class:`SequenceContext` is the
likelihood's view of it); with no context (``context_dim=0``) it is an unconditioned
language model, the learned prior over VQ codes.

The support is exact: PAD, BOS and UNK are never emitted, and at the last position only
EOS is, so the probabilities of every sequence of at most L - 1 tokens followed by EOS
sum to one (tested by enumeration). ``log_prob`` is teacher-forced, one pass of the GRU
over the whole batch; ``sample`` draws token by token; :meth:`Autoregressive.decode`
also does greedy and beam-search decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from pyrovae._util import lookup
from pyrovae.data.sequences import BOS, EOS, PAD, UNK
from pyrovae.errors import Param, PyrovaeError

_NEVER = (PAD, BOS, UNK)


class RecurrentCore(nn.Module):
    """The GRU of an autoregressive distribution: tokens and a context to logits.

    Parameters
    ----------
    vocab_size
        Tokens in the vocabulary, the four special ones included.
    length
        L, the length sequences are padded to (EOS included).
    context_dim
        Size of the context c read at every step and used for the initial state (0:
        an unconditioned model).
    hidden_size, num_layers, embedding_dim
        Sizes of the GRU and of the token embedding.
    exact_length
        Every sequence has exactly L - 1 tokens before its EOS (EOS is emitted at the
        last position only): a fixed number of codes, as the VQ code prior has.
    """

    def __init__(
        self,
        vocab_size: int,
        length: int,
        context_dim: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        embedding_dim: int = 64,
        exact_length: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size <= len(_NEVER) + 1 or length < 1:
            raise PyrovaeError(
                f"an autoregressive distribution needs tokens besides the special ones and "
                f"a length of at least 1; got vocab_size={vocab_size}, length={length}"
            )
        self.vocab_size, self.length, self.context_dim = int(vocab_size), int(length), context_dim
        self.num_layers, self.hidden_size = int(num_layers), int(hidden_size)
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.gru = nn.GRU(embedding_dim + context_dim, hidden_size, num_layers, batch_first=True)
        self.init_state = nn.Linear(max(context_dim, 1), num_layers * hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)
        allowed = _allowed(vocab_size, length, exact_length)
        self.register_buffer("allowed", allowed, persistent=False)

    def initial_state(self, context: torch.Tensor) -> torch.Tensor:
        """h_0 = tanh(W c + b), shape ``(num_layers, N, hidden)``, from contexts ``(N, C)``."""
        if self.context_dim == 0:
            context = context.new_zeros(context.shape[0], 1)
        h = torch.tanh(self.init_state(context))
        return h.reshape(-1, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()

    def step_inputs(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The GRU's inputs: each token's embedding beside the context, ``(N, T, E + C)``."""
        emb = self.embed(tokens)
        if self.context_dim == 0:
            return emb
        return torch.cat([emb, context[:, None, :].expand(-1, tokens.shape[1], -1)], -1)

    def logits(
        self, inputs: torch.Tensor, context: torch.Tensor, state: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, T, V)`` (float32, impossible tokens at -inf) of positions
        ``start .. start + T - 1`` given their input tokens, and the GRU's last state."""
        out, state = self.gru(self.step_inputs(inputs, context), state)
        logits = self.out(out).float()
        allowed = self.allowed[start : start + inputs.shape[1]]
        return logits.masked_fill(~allowed, -math.inf), state


def _allowed(vocab_size: int, length: int, exact_length: bool = False) -> torch.Tensor:
    """Which tokens may be emitted at each position ``(L, V)``: never PAD, BOS or UNK;
    only EOS at the last, so that every sequence ends within the length (and EOS
    nowhere else with ``exact_length``)."""
    allowed = torch.ones(length, vocab_size, dtype=torch.bool)
    allowed[:, list(_NEVER)] = False
    if exact_length:
        allowed[:, EOS] = False
    allowed[-1, :] = False
    allowed[-1, EOS] = True
    return allowed


def after_end(x: torch.Tensor) -> torch.Tensor:
    """True at the positions after each sequence's first EOS (padding), ``x.shape``."""
    ended = (x == EOS).long().cumsum(-1)
    return (ended - (x == EOS).long()) > 0


class Autoregressive(dist.TorchDistribution):
    """p(x | c) = prod_t p(x_t | x_<t, c) over token sequences padded to length L.

    Parameters
    ----------
    core
        The :class:`RecurrentCore` that gives the step probabilities.
    context
        Contexts of shape ``batch_shape + (C,)`` (``C = 0``: unconditioned).
    temperature
        Divides the logits when sampling (below 1: safer, less diverse draws);
        ``log_prob`` is always that of temperature 1, the model's own.
    word_dropout
        Probability that a teacher-forced input token is replaced by UNK in
        ``log_prob`` (Bowman et al., 2016): the decoder must lean on the context.
        Set only while training.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(
        self,
        core: RecurrentCore,
        context: torch.Tensor,
        temperature: float = 1.0,
        word_dropout: float = 0.0,
    ) -> None:
        self.core, self.context = core, context
        self.temperature, self.word_dropout = float(temperature), float(word_dropout)
        super().__init__(context.shape[:-1], (core.length,), validate_args=False)

    def tempered(self, temperature: float) -> Autoregressive:
        """The same distribution, sampled at ``temperature`` (below 1: safer draws)."""
        if not temperature > 0:
            raise PyrovaeError(Param("temperature"), f" must be positive, got {temperature}")
        return Autoregressive(self.core, self.context, temperature, self.word_dropout)

    def expand(self, batch_shape: torch.Size, _instance=None) -> Autoregressive:
        context = self.context.expand(*batch_shape, self.context.shape[-1])
        return Autoregressive(self.core, context, self.temperature, self.word_dropout)

    def _flat_context(self, batch_shape: torch.Size) -> torch.Tensor:
        context = self.context.expand(*batch_shape, self.context.shape[-1])
        return context.reshape(math.prod(batch_shape), context.shape[-1])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher-forced sum of the token log-probabilities up to and including EOS."""
        return self._token_log_prob(x, self.word_dropout).sum(-1)

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_t | x_<t, c) per position, 0 after EOS: for per-token figures."""
        return self._token_log_prob(x, 0.0)

    def _token_log_prob(self, x: torch.Tensor, word_dropout: float) -> torch.Tensor:
        x = x.long()
        batch = torch.broadcast_shapes(x.shape[:-1], self.batch_shape)
        flat = x.expand(*batch, x.shape[-1]).reshape(-1, x.shape[-1])
        context = self._flat_context(batch)
        inputs = torch.cat([flat.new_full((flat.shape[0], 1), BOS), flat[:, :-1]], 1)
        if word_dropout > 0:
            inputs = _drop_words(inputs, word_dropout)
        logits, _ = self.core.logits(inputs, context, self.core.initial_state(context), 0)
        token = logits.log_softmax(-1).gather(-1, flat[..., None]).squeeze(-1)
        return token.masked_fill(after_end(flat), 0.0).reshape(*batch, -1)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Draw token by token at ``temperature``; PAD after each sequence's EOS."""
        return self.decode("sample", sample_shape=sample_shape)

    @torch.no_grad()
    def decode(
        self,
        method: str = "sample",
        beam_width: int = 5,
        sample_shape: torch.Size | tuple = (),
    ) -> torch.Tensor:
        """Sequences of shape ``sample_shape + batch_shape + (L,)``.

        ``"sample"`` draws from p(x | c) (at ``temperature``), ``"greedy"`` takes the most
        probable token at each step, ``"beam"`` keeps the ``beam_width`` most probable
        prefixes and returns the most probable finished sequence.
        """
        decoding = lookup(DECODINGS, method, "decoding")
        shape = torch.Size(sample_shape) + self.batch_shape
        context = self._flat_context(shape)
        tokens = decoding(self.core, context, self.temperature, int(beam_width))
        return tokens.reshape(*shape, self.core.length)

    @property
    def mean(self) -> torch.Tensor:
        """The greedy decode, which stands in for the mean (token ids have none) wherever
        a point summary of p(x | c) is asked for: reconstructions, ``sample(mean=True)``."""
        return self.decode("greedy")


def _drop_words(inputs: torch.Tensor, p: float) -> torch.Tensor:
    """Teacher-forced inputs with each token after BOS replaced by UNK with probability p."""
    drop = torch.rand(inputs.shape, device=inputs.device) < p
    drop[:, 0] = False
    return inputs.masked_fill(drop & (inputs != PAD), UNK)


def _step_decode(
    core: RecurrentCore, context: torch.Tensor, greedy: bool, temperature: float
) -> torch.Tensor:
    """Token-by-token decoding of ``(N, C)`` contexts: ``(N, L)`` tokens."""
    n, length = context.shape[0], core.length
    out = context.new_full((n, length), PAD, dtype=torch.long)
    token = context.new_full((n, 1), BOS, dtype=torch.long)
    state = core.initial_state(context)
    done = torch.zeros(n, dtype=torch.bool, device=context.device)
    for t in range(length):
        logits, state = core.logits(token, context, state, t)
        logits = logits[:, 0]
        if greedy:
            token = logits.argmax(-1, keepdim=True)
        else:
            token = torch.multinomial((logits / temperature).softmax(-1), 1)
        out[:, t] = token[:, 0].masked_fill(done, PAD)
        done |= token[:, 0] == EOS
        if bool(done.all()):
            break
    return out


def _beam_search(core: RecurrentCore, context: torch.Tensor, width: int) -> torch.Tensor:
    """Beam search of width ``width`` for each of ``(N, C)`` contexts: ``(N, L)``."""
    if width < 1:
        raise PyrovaeError(Param("beam_width"), f" must be at least 1, got {width}")
    n, length = context.shape[0], core.length
    ctx = context.repeat_interleave(width, 0)
    state = core.initial_state(ctx)
    tokens = ctx.new_full((n * width, length), PAD, dtype=torch.long)
    score = ctx.new_full((n, width), -math.inf, dtype=torch.float32)
    score[:, 0] = 0.0  # the beams start as copies of one: count it once
    done = torch.zeros(n * width, dtype=torch.bool, device=ctx.device)
    token = ctx.new_full((n * width, 1), BOS, dtype=torch.long)
    for t in range(length):
        logits, state = core.logits(token, ctx, state, t)
        logp = logits[:, 0].log_softmax(-1)
        # A finished beam continues with PAD at no cost, and only with PAD.
        logp = torch.where(done[:, None], _only_pad(logp), logp)
        total = (score.reshape(-1, 1) + logp).reshape(n, -1)
        score, flat = total.topk(width, -1)
        beam, token = flat // core.vocab_size, flat % core.vocab_size
        rows = (beam + torch.arange(n, device=ctx.device)[:, None] * width).reshape(-1)
        tokens, state, done = tokens[rows], state[:, rows], done[rows]
        token = token.reshape(-1, 1)
        tokens[:, t] = token[:, 0]
        done = done | (token[:, 0] == EOS)
        if bool(done.all()):
            break
    best = score.argmax(-1) + torch.arange(n, device=ctx.device) * width
    return tokens[best]


def _sampled(core: RecurrentCore, context: torch.Tensor, temperature: float, width: int):
    return _step_decode(core, context, False, temperature)


def _greedy(core: RecurrentCore, context: torch.Tensor, temperature: float, width: int):
    return _step_decode(core, context, True, temperature)


def _beam(core: RecurrentCore, context: torch.Tensor, temperature: float, width: int):
    return _beam_search(core, context, width)


#: The decodings of :meth:`Autoregressive.decode` by name: each is
#: ``decoding(core, contexts, temperature, beam_width)`` to token ids ``(N, L)``.
DECODINGS: dict[str, Callable[[RecurrentCore, torch.Tensor, float, int], torch.Tensor]] = {
    "sample": _sampled,
    "greedy": _greedy,
    "beam": _beam,
}


def _only_pad(logp: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(logp, -math.inf)
    out[:, PAD] = 0.0
    return out
