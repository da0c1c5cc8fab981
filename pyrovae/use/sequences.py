"""Using a VAE of token sequences: samples and reconstructions as text, per-token figures.

A sequence VAE's data are token ids (:mod:`pyrovae.data.sequences`); these functions
turn what it generates back into strings with the run's vocabulary, and compute what
``pyrovae evaluate`` reports for sequences besides log p(x): the number of tokens
scored (EOS included, the convention of language-model perplexity), the NLL per token
and its perplexity, and how often the greedy decode of the posterior mean gives back
the input exactly (a reconstruction accuracy, optionally up to a canonical form such as
RDKit's canonical SMILES).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyrovae.data.sequences import PAD, Vocabulary
from pyrovae.inference.passes import chunks
from pyrovae.parts.distributions import mean_of


def token_count(x: torch.Tensor) -> int:
    """Tokens that log p(x) scores: every position up to and including each EOS."""
    return int((x != PAD).sum())


def per_token(nll_per_sequence: float, x: torch.Tensor) -> dict[str, float]:
    """NLL per token and perplexity exp(NLL per token), from the mean NLL per sequence."""
    nats = nll_per_sequence * x.shape[0] / token_count(x)
    return {"test_nll_per_token": nats, "test_perplexity": math.exp(nats)}


@torch.no_grad()
def sample_sequences(
    vae,
    num_samples: int,
    vocabulary: Vocabulary,
    temperature: float | None = None,
    batch_size: int = 1000,
) -> list[str]:
    """Texts drawn from the model: z from the prior, then tokens one by one from p(x|z).

    ``temperature`` (default: the likelihood's own) divides the logits of each step.
    """
    out: list[str] = []
    for sl in chunks(num_samples, batch_size):
        z = vae.prior().sample((sl.stop - sl.start,))
        px = vae.decode(z)
        if temperature is not None:
            px = px.tempered(temperature)
        out += vocabulary.decode(px.sample())
    return out


@torch.no_grad()
def reconstructions(vae, x: torch.Tensor, method: str = "greedy", batch_size: int = 500):
    """The decode (greedy by default) of p(x | z) at the mean of q(z|x), as token ids."""
    rows = []
    for sl in chunks(x.shape[0], batch_size):
        px = vae.decode(mean_of(vae.encode(x[sl])))
        rows.append(px.decode(method))
    return torch.cat(rows)


def reconstruction_accuracy(
    vae,
    x: torch.Tensor,
    vocabulary: Vocabulary,
    canonical: Callable[[str], str | None] | None = None,
) -> float:
    """The fraction of inputs whose greedy reconstruction is the input itself, compared
    as texts, or as ``canonical(text)`` when given (a reconstruction that is not valid,
    ``canonical`` None, counts as wrong)."""
    given = vocabulary.decode(x)
    rebuilt = vocabulary.decode(reconstructions(vae, x))
    if canonical is not None:
        given = [canonical(t) for t in given]
        rebuilt = [canonical(t) for t in rebuilt]
    hits = sum(a is not None and a == b for a, b in zip(given, rebuilt, strict=True))
    return hits / max(1, len(given))
