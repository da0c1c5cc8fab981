"""Molecular design in the latent space of a SMILES VAE (Gómez-Bombarelli et al., 2018).

The search, a property predictor on z guiding an evolutionary search:

1. encode training molecules to the means of q(z|x) and compute their property y with
   RDKit (:mod:`pyrovae.use.molecules`);
2. fit a property predictor f(z) ~ y, a small network on z, by least squares;
3. keep the latent points of the ``starts`` best molecules as the elites, and for each
   of ``rounds`` rounds: perturb elites with Gaussian noise of a shrinking scale, keep
   the proposals that score best under f(z) - lam * ||z||^2 / 2 (f screens many
   proposals for free; the penalty keeps z where the standard normal prior has mass,
   where the decoder has learnt to write molecules), decode them by sampling p(x|z) at
   the likelihood's temperature, score what is a valid molecule, not in the training
   set and not seen before, by its true property (RDKit, not f), and make the best
   points found so far the next round's elites;
4. return the best molecules found.

The baseline the search must beat is as many plain samples from the prior as the search
decoded, scored and filtered the same way: :func:`design` returns both. Gradient ascent
on f alone, decoded greedily, did worse than that baseline on ``moses-sample``
(``docs/howto/molecules.md``): f is fitted on training molecules and is least right
where it promises most, so its proposals are checked by the true property every round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pyrovae.data.sequences import Vocabulary
from pyrovae.errors import Param, PyrovaeError
from pyrovae.parts.nets import MLP
from pyrovae.use import molecules
from pyrovae.use.applications import latent_means
from pyrovae.use.sequences import sample_sequences


@dataclass
class Designed:
    """What a latent-space search found, against plain prior samples.

    Attributes
    ----------
    smiles, values
        The best valid, novel, distinct molecules found, best first, and their property.
    candidates
        How many decodes the search made (valid or not).
    prior_smiles, prior_values
        The valid, novel, distinct molecules among ``candidates`` prior samples, best
        first, and their property: the baseline.
    training_values
        The property of the training molecules the predictor was fitted on.
    """

    smiles: list[str]
    values: np.ndarray
    candidates: int
    prior_smiles: list[str]
    prior_values: np.ndarray
    training_values: np.ndarray

    def top(self, k: int = 10) -> tuple[float, float]:
        """The mean property of the k best designed molecules and of the k best prior ones."""
        return _mean(self.values[:k]), _mean(self.prior_values[:k])


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def fit_predictor(z: torch.Tensor, y: torch.Tensor, steps: int = 500, seed: int = 0) -> nn.Module:
    """f(z) ~ y: a network of one hidden layer of 64 units fitted by full-batch Adam on
    standardised targets (the output is in the units of y)."""
    torch.manual_seed(seed)
    mean, std = y.mean(), y.std().clamp(min=1e-6)
    net = MLP(z.shape[-1], 1, (64,), "elu")
    optim = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    target = (y - mean) / std
    for _ in range(steps):
        optim.zero_grad()
        nn.functional.mse_loss(net(z)[:, 0], target).backward()
        optim.step()
    return _Rescaled(net, mean, std)


class _Rescaled(nn.Module):
    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)[..., 0] * self.std + self.mean


def propose(
    predictor: nn.Module,
    elites: torch.Tensor,
    count: int,
    scale: float,
    screen: int,
    penalty: float,
) -> torch.Tensor:
    """``count`` latent points near the elites: ``screen * count`` Gaussian perturbations
    of randomly chosen elites, of which the ``count`` with the highest
    f(z) - penalty * ||z||^2 / 2."""
    pick = torch.randint(0, len(elites), (count * screen,), device=elites.device)
    z = elites[pick] + scale * torch.randn(count * screen, elites.shape[-1], device=elites.device)
    with torch.no_grad():
        merit = predictor(z) - penalty * z.pow(2).sum(-1) / 2
    return z[merit.argsort(descending=True)[:count]]


def _decode(vae, z: torch.Tensor, vocabulary: Vocabulary) -> list[str]:
    """Molecules sampled from p(x|z) at the likelihood's temperature, one per z."""
    with torch.no_grad():
        return vocabulary.decode(vae.decode(z).sample())


def _best(
    smiles: Sequence[str], name: str, training: set[str], keep: int
) -> tuple[list[str], np.ndarray]:
    """The distinct valid molecules not in ``training``, best first, and their property."""
    seen: dict[str, None] = {}
    for s in smiles:
        c = molecules.canonical(s)
        if c is not None and c not in training:
            seen.setdefault(c)
    found = list(seen)
    values = molecules.property_values(found, name)
    order = np.argsort(-values, kind="stable")[:keep]
    return [found[i] for i in order], values[order]


@dataclass
class _Archive:
    """The latent points of the best molecules so far, and what the search has found."""

    z: torch.Tensor
    values: torch.Tensor
    found: dict[str, float]

    def add(self, z: torch.Tensor, smiles: list[str], name: str, known: set[str]) -> None:
        """Score the new valid molecules decoded from ``z``; remember where they came from."""
        new = {}
        for i, s in enumerate(smiles):
            c = molecules.canonical(s)
            if c is not None and c not in known and c not in self.found and c not in new:
                new[c] = i
        values = molecules.property_values(list(new), name)
        keep = [(c, i, v) for (c, i), v in zip(new.items(), values, strict=True) if np.isfinite(v)]
        self.found.update((c, float(v)) for c, _, v in keep)
        if keep:
            rows = torch.as_tensor([i for _, i, _ in keep], device=z.device)
            self.z = torch.cat([self.z, z[rows]])
            self.values = torch.cat([self.values, self.values.new_tensor([v for *_, v in keep])])

    def elites(self, k: int) -> torch.Tensor:
        return self.z[self.values.argsort(descending=True)[:k]]


def design(
    vae,
    vocabulary: Vocabulary,
    training: Sequence[str],
    property: str = "qed",
    n: int = 100,
    fit_on: int = 2000,
    starts: int = 32,
    rounds: int = 8,
    budget: int = 1280,
    scale: float = 0.5,
    screen: int = 10,
    penalty: float = 0.05,
    seed: int = 0,
) -> Designed:
    """Search z for molecules with a high ``property``; see the module docstring.

    Parameters
    ----------
    vae
        A VAE trained on SMILES (``likelihood="autoregressive"``).
    vocabulary
        Its vocabulary (the run's ``data.vocabulary``).
    training
        The training SMILES: the predictor is fitted on ``fit_on`` of them, the search
        starts from the ``starts`` best of those, and none of them counts as found.
    property
        One of :data:`pyrovae.use.molecules.DESIGNABLE` (``"qed"``, ``"logp"``,
        ``"penalized-logp"``), maximised.
    n
        How many molecules to return at most.
    starts, rounds, budget
        The elites kept, the rounds of the search, and the decodes it makes in all
        (spread evenly over the rounds); the prior baseline gets as many samples.
    scale, screen, penalty
        The perturbations' scale in the first round (it shrinks to 0.4 of it by the last),
        the proposals f screens per decode, and lam of the penalty.
    seed
        Seeds the subset, the predictor, the search and the baseline's prior samples.
    """
    if property not in molecules.DESIGNABLE:
        raise PyrovaeError(
            f"the design search maximises, and {property!r} is not better higher; choose "
            f"one of: {', '.join(molecules.DESIGNABLE)}"
        )
    if min(n, starts, rounds, screen) < 1 or budget < rounds or fit_on < 2:
        raise PyrovaeError(
            Param("n"),
            ", ",
            Param("starts"),
            ", ",
            Param("rounds"),
            " and ",
            Param("budget"),
            " must be positive, with at least one decode per round",
        )
    z, values, predictor = _fitted(vae, vocabulary, training, property, fit_on, seed)
    top = torch.as_tensor(np.argsort(-values)[:starts].copy(), device=z.device)
    archive = _Archive(z[top], torch.as_tensor(values[top.cpu().numpy()], device=z.device), {})
    known = molecules.canonical_set(training)
    torch.manual_seed(seed)
    per_round = budget // rounds
    for r in range(rounds):
        shrink = 1 - 0.6 * r / max(1, rounds - 1)
        points = propose(
            predictor,
            archive.elites(max(1, starts // 2)),
            per_round,
            scale * shrink,
            screen,
            penalty,
        )
        archive.add(points, _decode(vae, points, vocabulary), property, known)
    ranked = sorted(archive.found.items(), key=lambda kv: -kv[1])[:n]
    torch.manual_seed(seed)
    prior = sample_sequences(vae, per_round * rounds, vocabulary)
    prior_found, prior_values = _best(prior, property, known, n)
    return Designed(
        [s for s, _ in ranked],
        np.array([v for _, v in ranked]),
        per_round * rounds,
        prior_found,
        prior_values,
        values,
    )


def _fitted(
    vae, vocabulary: Vocabulary, training: Sequence[str], name: str, fit_on: int, seed: int
) -> tuple[torch.Tensor, np.ndarray, nn.Module]:
    """Latent means and property of ``fit_on`` training molecules, and f fitted on them."""
    rng = np.random.default_rng(seed)
    subset = [training[i] for i in rng.permutation(len(training))[:fit_on]]
    values = molecules.property_values(subset, name)
    ok = np.isfinite(values)
    subset, values = [s for s, k in zip(subset, ok, strict=True) if k], values[ok]
    x = vocabulary.encode(subset, vae.x_dim).to(_device(vae))
    z = latent_means(vae, x).float()
    target = torch.as_tensor(values, dtype=z.dtype, device=z.device)
    return z, values, fit_predictor(z, target, seed=seed)


def _device(vae) -> torch.device:
    return next(vae.parameters()).device
