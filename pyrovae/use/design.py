"""Molecular design in the latent space of a SMILES VAE (Gómez-Bombarelli et al., 2018).

The search:

1. encode training molecules to the means of q(z|x) and compute their property y with
   RDKit (:mod:`pyrovae.use.molecules`);
2. fit a property predictor f(z) ~ y, a small network on z, by least squares;
3. from the latent means of the best training molecules, climb
   f(z) - lam * ||z||^2 / 2 by gradient ascent (the penalty keeps z where the standard
   normal prior has mass, where the decoder has learnt to write molecules), decoding
   z greedily at every step;
4. keep what is a valid molecule, not in the training set and not seen before, scored
   by its true property, not by f.

The baseline the search must beat is an equal number of plain samples from the prior,
scored and filtered the same way: :func:`design` returns both.
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


def climb(
    predictor: nn.Module, starts: torch.Tensor, steps: int, lr: float, penalty: float
) -> torch.Tensor:
    """The points of gradient ascent on f(z) - penalty * ||z||^2 / 2 from each start:
    ``(steps + 1, S, z_dim)``, the starts first."""
    z = starts.clone().requires_grad_(True)
    optim = torch.optim.Adam([z], lr=lr)
    path = [starts.detach().clone()]
    for _ in range(steps):
        optim.zero_grad()
        objective = predictor(z) - penalty * z.pow(2).sum(-1) / 2
        (-objective.sum()).backward()
        optim.step()
        path.append(z.detach().clone())
    return torch.stack(path)


def _decode(vae, z: torch.Tensor, vocabulary: Vocabulary) -> list[str]:
    with torch.no_grad():
        return vocabulary.decode(vae.decode(z).decode("greedy"))


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


def design(
    vae,
    vocabulary: Vocabulary,
    training: Sequence[str],
    property: str = "qed",
    n: int = 100,
    fit_on: int = 2000,
    starts: int = 32,
    steps: int = 40,
    lr: float = 0.05,
    penalty: float = 0.1,
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
    steps, lr, penalty
        Gradient steps from each start, their Adam step size, and lam of the penalty.
    seed
        Seeds the subset, the predictor and the baseline's prior samples.
    """
    if property not in molecules.DESIGNABLE:
        raise PyrovaeError(
            f"the design search maximises, and {property!r} is not better higher; choose "
            f"one of: {', '.join(molecules.DESIGNABLE)}"
        )
    if n < 1 or starts < 1 or steps < 1 or fit_on < 2:
        raise PyrovaeError(
            Param("n"), ", ", Param("starts"), " and ", Param("steps"), " must be positive"
        )
    rng = np.random.default_rng(seed)
    subset = [training[i] for i in rng.permutation(len(training))[:fit_on]]
    values = molecules.property_values(subset, property)
    ok = np.isfinite(values)
    subset, values = [s for s, k in zip(subset, ok, strict=True) if k], values[ok]
    x = vocabulary.encode(subset, vae.x_dim).to(_device(vae))
    z = latent_means(vae, x).float()
    predictor = fit_predictor(
        z, torch.as_tensor(values, dtype=z.dtype, device=z.device), seed=seed
    )
    best = torch.as_tensor(np.argsort(-values)[:starts].copy(), device=z.device)
    path = climb(predictor, z[best], steps, lr, penalty)
    decoded = _decode(vae, path.reshape(-1, path.shape[-1]), vocabulary)
    known = molecules.canonical_set(training)
    found, found_values = _best(decoded, property, known, n)
    torch.manual_seed(seed)
    prior = sample_sequences(vae, len(decoded), vocabulary)
    prior_found, prior_values = _best(prior, property, known, n)
    return Designed(found, found_values, len(decoded), prior_found, prior_values, values)


def _device(vae) -> torch.device:
    return next(vae.parameters()).device
