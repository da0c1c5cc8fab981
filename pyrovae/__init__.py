"""pyrovae: variational autoencoders written as Pyro models and guides.

The public API, re-exported from the packages that define it; the layout of the
package is described in ``docs/concepts.md`` (data, parts, inference, models, rundir,
training, use, cli: each imports only the ones before it).
"""

from pyrovae import _compat
from pyrovae._version import __version__
from pyrovae.data.datasets import DataSplit, load_dataset
from pyrovae.errors import NonFiniteError, Param, Preempted, PyrovaeError
from pyrovae.inference.ais import annealed_importance_sampling
from pyrovae.inference.imputation import impute
from pyrovae.inference.iwae import IWAE_ELBO, FreeBits_ELBO
from pyrovae.inference.marginal import (
    Bound,
    ELBOTerms,
    MarginalLikelihood,
    elbo_terms,
    iwae_bound,
    log_marginal_likelihood,
)
from pyrovae.inference.trace_elbo import Trace_ELBO
from pyrovae.models.clusters import ClusterVAE
from pyrovae.models.protocol import Model
from pyrovae.models.semisupervised import SemiSupervisedVAE
from pyrovae.models.vae import VAE
from pyrovae.rundir.folder import RunFolder, load, load_run
from pyrovae.training.loop import fit
from pyrovae.training.state import TrainState
from pyrovae.training.stopping import EarlyStopping

__all__ = [
    "IWAE_ELBO",
    "VAE",
    "Bound",
    "ClusterVAE",
    "DataSplit",
    "EarlyStopping",
    "ELBOTerms",
    "FreeBits_ELBO",
    "MarginalLikelihood",
    "Model",
    "NonFiniteError",
    "Param",
    "Preempted",
    "PyrovaeError",
    "RunFolder",
    "SemiSupervisedVAE",
    "TrainState",
    "Trace_ELBO",
    "__version__",
    "annealed_importance_sampling",
    "elbo_terms",
    "fit",
    "impute",
    "iwae_bound",
    "load",
    "load_dataset",
    "load_run",
    "log_marginal_likelihood",
]

_compat.install()
__getattr__ = _compat.renamed_attribute
