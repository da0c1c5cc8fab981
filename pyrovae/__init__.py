"""pyrovae: variational autoencoders written as Pyro models and guides.

The public API, re-exported from the modules that define it.
"""

__version__ = "0.1.0"

from pyrovae.checkpoint import load
from pyrovae.datasets import Dataset, load_dataset
from pyrovae.errors import PyrovaeError
from pyrovae.marginal import elbo_terms, log_marginal_likelihood
from pyrovae.training import fit
from pyrovae.vae import VAE

__all__ = [
    "VAE",
    "Dataset",
    "PyrovaeError",
    "elbo_terms",
    "fit",
    "load",
    "load_dataset",
    "log_marginal_likelihood",
    "__version__",
]
