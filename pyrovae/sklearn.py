"""pyrovae's scikit-learn estimators: ``from pyrovae.sklearn import VAEImputer``.

A short import path for :mod:`pyrovae.use.estimators`, where they are defined and
documented. Needs scikit-learn (``pip install 'pyrovae[sklearn]'``); ``import pyrovae``
does not.
"""

from pyrovae.use.estimators import VAEImputer, VAEOutlierDetector, VAETransformer

__all__ = ["VAEImputer", "VAEOutlierDetector", "VAETransformer"]
