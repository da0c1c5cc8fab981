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
