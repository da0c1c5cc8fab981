"""Latent-space design: the predictor, the climb, and the filter of what counts as found."""

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


def test_climbing_raises_the_predicted_property_within_the_penalty():
    f = design._Rescaled(torch.nn.Linear(2, 1), torch.tensor(0.0), torch.tensor(1.0))
    with torch.no_grad():
        f.net.weight.copy_(torch.tensor([[1.0, 0.0]]))
        f.net.bias.zero_()
    path = design.climb(f, torch.zeros(4, 2), steps=300, lr=0.05, penalty=0.5)
    assert path.shape == (301, 4, 2)
    # The optimum of z1 - 0.5 * 0.5 * |z|^2 is z = (2, 0).
    assert torch.allclose(path[-1], torch.tensor([2.0, 0.0]).expand(4, 2), atol=0.05)
    with torch.no_grad():
        assert bool((f(path[-1]) > f(path[0])).all())


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
    found = design.design(vae, vocabulary, training, "qed", n=5, starts=2, steps=30, lr=0.2)
    assert set(found.smiles) <= {"c1ccccc1", "CC(=O)Nc1ccccc1"} and found.smiles
    assert np.allclose(found.values, property_values(found.smiles, "qed"))
    assert found.candidates == 2 * 31 and len(found.training_values) == 40
    assert set(found.prior_smiles) <= {"c1ccccc1", "CC(=O)Nc1ccccc1"}
    with pytest.raises(Exception, match="not better higher"):
        design.design(vae, vocabulary, training, "sa")
