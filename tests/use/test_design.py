"""Latent-space design: the predictor, the screened proposals, and the filter of what
counts as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.use import design

pytest.importorskip("rdkit")


def test_the_predictor_learns_a_smooth_property_of_z():
    torch.manual_seed(0)
    z = torch.randn(400, 3)
    y = 2.0 * z[:, 0] - z[:, 1] + 5.0
    f = design.fit_predictor(z, y, steps=400)
    with torch.no_grad():
        assert float((f(z) - y).abs().mean()) < 0.2


def test_proposals_are_the_screened_best_near_the_elites():
    f = design._Rescaled(torch.nn.Linear(2, 1), torch.tensor(0.0), torch.tensor(1.0))
    with torch.no_grad():
        f.net.weight.copy_(torch.tensor([[1.0, 0.0]]))
        f.net.bias.zero_()
    torch.manual_seed(0)
    elites = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    z = design.propose(f, elites, count=50, scale=0.3, screen=10, penalty=0.0)
    assert z.shape == (50, 2)
    # the 50 of 500 perturbations with the largest z_0: all on the far side of the elites
    assert float(z[:, 0].min()) > 0.9
    torch.manual_seed(0)
    unscreened = design.propose(f, elites, count=50, scale=0.3, screen=1, penalty=0.0)
    assert float(unscreened[:, 0].mean()) < float(z[:, 0].mean())


def test_only_new_valid_distinct_molecules_count_best_first():
    from pyrovae.use.molecules import canonical, property_values

    found, values = design._best(
        ["CCO", "OCC", "C1CC", "c1ccccc1", "CCN", "CC"], "weight", {canonical("CC")}, 10
    )
    assert found == [canonical(s) for s in ("c1ccccc1", "CCO", "CCN")]
    assert np.allclose(values, property_values(found, "weight"))
    assert np.all(np.diff(values) <= 0)


class _Decoded:
    """What a stub decoder gives for latent points: molecule k for z[..., 0] in bin k."""

    def __init__(self, rows: torch.Tensor, z: torch.Tensor) -> None:
        self.rows, self.z = rows, z

    def _pick(self) -> torch.Tensor:
        k = (self.z[..., 0].clamp(-1.99, 1.99) + 2).long()  # bins of width 1 over [-2, 2)
        return self.rows[k]

    def decode(self, method: str = "greedy") -> torch.Tensor:
        return self._pick()

    def sample(self) -> torch.Tensor:
        return self._pick()


class _StubVAE(torch.nn.Module):
    """z_0 picks one of four molecules of rising QED; the encoder puts training molecule
    i at z_0 = its bin, so f(z) can learn that a larger z_0 is better."""

    def __init__(self, vocabulary, smiles):
        super().__init__()
        self.rows = vocabulary.encode(smiles, 20)
        self.x_dim = 20
        self.w = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        k = torch.stack([(self.rows == row).all(-1).float().argmax() for row in x])
        return torch.distributions.Normal(torch.stack([k - 1.5, torch.zeros_like(k)], -1), 1.0)

    def decode(self, z):
        return _Decoded(self.rows, z)

    def prior(self):
        return torch.distributions.Normal(torch.zeros(2), torch.ones(2))


def test_design_returns_new_valid_molecules_and_the_prior_baseline():
    from pyrovae.data.sequences import Vocabulary
    from pyrovae.use.molecules import property_values

    smiles = ["CC", "CCO", "c1ccccc1", "CC(=O)Nc1ccccc1"]
    vocabulary = Vocabulary.build(smiles, "smiles")
    vae = _StubVAE(vocabulary, smiles)
    training = smiles[:2] * 20  # the two lower bins only: the better molecules are new
    search = {"starts": 2, "rounds": 4, "budget": 40, "scale": 1.0, "penalty": 0.0}
    found = design.design(vae, vocabulary, training, "qed", n=5, **search)
    assert set(found.smiles) == {"c1ccccc1", "CC(=O)Nc1ccccc1"}
    assert np.allclose(found.values, property_values(found.smiles, "qed"))
    assert list(found.values) == sorted(found.values, reverse=True)
    assert found.candidates == 40 and len(found.training_values) == 40
    assert set(found.prior_smiles) <= {"c1ccccc1", "CC(=O)Nc1ccccc1"}
    with pytest.raises(Exception, match="not better higher"):
        design.design(vae, vocabulary, training, "sa")
