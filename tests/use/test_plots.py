import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pyrovae import VAE, PyrovaeError
from pyrovae.use import plots


def test_image_grid_places_every_image():
    images = torch.arange(6, dtype=torch.float32).repeat_interleave(4).reshape(6, 4) / 5
    grid = plots.image_grid(images, (1, 2, 2), ncol=3)
    assert grid.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert grid[0, 0] == 0 and grid[3, 6] == pytest.approx(1.0)
    assert np.all(grid[2, :] == 1)  # separator row


def test_figures_are_returned_not_shown():
    vae = VAE(z_dim=3, hidden=(8,), image_shape=(1, 28, 28))
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    assert isinstance(plots.reconstructions(vae, x), Figure)
    state = torch.random.get_rng_state()
    assert isinstance(plots.prior_samples(vae, 9), Figure)
    assert torch.equal(state, torch.random.get_rng_state())


def test_image_figures_need_an_image_shape():
    with pytest.raises(PyrovaeError, match="image_shape"):
        plots.prior_samples(VAE(x_dim=10, z_dim=2, hidden=(4,)), 4)
