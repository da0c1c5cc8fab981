"""A sequence VAE written in plain PyTorch: the reference pyrovae's is measured against.

The same architecture as pyrovae's ``net="gru"`` with ``likelihood="autoregressive"``,
written out by hand with no pyrovae or Pyro code: a bidirectional GRU encoder read over
each sequence's length (packed) to the mean and softplus scale of q(z|x); a linear map
from z to a context c; a GRU decoder that starts from tanh(W c + b), reads c beside each
input token, and emits a softmax over the tokens with PAD, BOS and UNK never emitted and
only EOS at the last position. Token ids: PAD 0, BOS 1, EOS 2, UNK 3.

The loss is the negative ELBO with the KL term estimated at the sampled z, as Pyro's
``Trace_ELBO`` does, summed over the minibatch; with free bits, as pyrovae's
``FreeBits_ELBO`` does, the KL term is the larger of the threshold and its minibatch
mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def allowed_tokens(vocab: int, length: int) -> torch.Tensor:
    allowed = torch.ones(length, vocab, dtype=torch.bool)
    allowed[:, [PAD, BOS, UNK]] = False
    allowed[-1] = False
    allowed[-1, EOS] = True
    return allowed


def padding(x: torch.Tensor) -> torch.Tensor:
    """True after each sequence's first EOS."""
    eos = (x == EOS).long()
    return (eos.cumsum(-1) - eos) > 0


class PlainSequenceVAE(nn.Module):
    def __init__(
        self,
        vocab: int,
        length: int,
        z_dim: int = 64,
        hidden: int = 256,
        embedding: int = 64,
        layers: int = 1,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.z_dim, self.length, self.layers, self.hidden = z_dim, length, layers, hidden
        self.word_dropout = word_dropout
        self.enc_embed = nn.Embedding(vocab, 64, padding_idx=PAD)
        self.enc_gru = nn.GRU(64, hidden, batch_first=True, bidirectional=True)
        self.enc_head = nn.Linear(2 * hidden, 2 * z_dim)
        self.to_context = nn.Linear(z_dim, hidden)
        self.dec_embed = nn.Embedding(vocab, embedding, padding_idx=PAD)
        self.init_state = nn.Linear(hidden, layers * hidden)
        self.dec_gru = nn.GRU(embedding + hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        self.register_buffer("allowed", allowed_tokens(vocab, length))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = (x != PAD).sum(-1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.enc_embed(x), lengths, batch_first=True, enforce_sorted=False
        )
        _, h = self.enc_gru(packed)
        loc, raw = self.enc_head(torch.cat([h[0], h[1]], -1)).float().chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4

    def state(self, c: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.init_state(c))
        return h.reshape(-1, self.layers, self.hidden).transpose(0, 1).contiguous()

    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z), teacher-forced; x ``(N, L)``, z ``(N, z_dim)``."""
        c = self.to_context(z)
        inputs = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], 1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inputs.shape, device=x.device) < self.word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop & (inputs != PAD), UNK)
        steps = torch.cat([self.dec_embed(inputs), c[:, None].expand(-1, x.shape[1], -1)], -1)
        out, _ = self.dec_gru(steps, self.state(c))
        logits = self.out(out).float().masked_fill(~self.allowed, -math.inf)
        token = logits.log_softmax(-1).gather(-1, x[..., None]).squeeze(-1)
        return token.masked_fill(padding(x), 0.0).sum(-1)

    def loss(
        self,
        x: torch.Tensor,
        kl_weight: float = 1.0,
        free_bits: float = 0.0,
        per_unit: bool = False,
    ):
        """The negative ELBO summed over the minibatch (KL at the sampled z); with free
        bits, the KL term is max(free_bits, its minibatch mean) per datapoint, or with
        ``per_unit`` the sum over units d of max(free_bits / D, unit d's minibatch mean)."""
        loc, scale = self.encode(x)
        z = loc + scale * torch.randn_like(loc)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z)
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
        units = log_q - log_p
        kl = units.sum(-1)
        if free_bits and per_unit:
            clamped = units.mean(0).clamp(min=free_bits / units.shape[-1]).sum()
            kl = clamped.expand_as(kl)
        elif free_bits:
            kl = kl.mean().clamp(min=free_bits).expand_as(kl)
        return -(self.log_px(x, z) - kl_weight * kl).sum()

    @torch.no_grad()
    def log_marginal(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x) by importance sampling with K draws from q(z|x)."""
        loc, scale = self.encode(x)
        q = torch.distributions.Normal(loc, scale)
        z = q.sample((k,))
        n = x.shape[0]
        log_px = self.log_px(x.repeat(k, 1), z.reshape(k * n, -1)).reshape(k, n)
        log_w = log_px + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        return (log_w - q.log_prob(z).sum(-1)).logsumexp(0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        c = self.to_context(torch.randn(n, self.z_dim, device=self.allowed.device))
        h, token = self.state(c), torch.full((n, 1), BOS, device=c.device)
        out = torch.full((n, self.length), PAD, device=c.device)
        done = torch.zeros(n, dtype=torch.bool, device=c.device)
        for t in range(self.length):
            step = torch.cat([self.dec_embed(token), c[:, None]], -1)
            o, h = self.dec_gru(step, h)
            logits = self.out(o[:, 0]).float().masked_fill(~self.allowed[t], -math.inf)
            token = torch.multinomial((logits / temperature).softmax(-1), 1)
            out[:, t] = token[:, 0].masked_fill(done, PAD)
            done |= token[:, 0] == EOS
            if bool(done.all()):
                break
        return out
