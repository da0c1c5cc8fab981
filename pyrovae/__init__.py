"""pyrovae: variational autoencoders written as Pyro models and guides.

The public API, re-exported from the modules that define it.
"""

__version__ = "0.1.0"

from pyrovae.ais import annealed_importance_sampling
from pyrovae.checkpoint import load
from pyrovae.datasets import Dataset, load_dataset
from pyrovae.errors import PyrovaeError
from pyrovae.marginal import elbo_terms, iwae_bound, log_marginal_likelihood
from pyrovae.objectives import IWAE_ELBO
from pyrovae.training import fit
from pyrovae.vae import VAE

__all__ = [
    "IWAE_ELBO",
    "VAE",
    "Dataset",
    "PyrovaeError",
    "annealed_importance_sampling",
    "elbo_terms",
    "fit",
    "iwae_bound",
    "load",
    "load_dataset",
    "log_marginal_likelihood",
    "__version__",
]
