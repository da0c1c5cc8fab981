"""scikit-learn estimators around a pyrovae VAE: an imputer, an outlier detector, a transformer.

``fit(X)`` standardises the columns, builds a :class:`~pyrovae.models.vae.VAE` and trains
it (:func:`~pyrovae.training.loop.fit`) for a budget of steps, with early stopping on a
seeded tenth of the rows. A setting left at None takes the default of the kind of data in
:data:`~pyrovae.rundir.defaults.DATA_DEFAULTS`: ``"incomplete-table"`` for the imputer
(whose signature spells it out), and for the others when ``X`` has NaNs, else ``"table"``
(with a Gaussian likelihood). Everything is seeded by ``random_state`` and runs in a Pyro
parameter store of its own; the caller's random state and store are left as they were.
``from pyrovae.sklearn import VAEImputer`` is the short import; needs scikit-learn.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    ClassNamePrefixFeaturesOutMixin,
    OneToOneFeatureMixin,
    OutlierMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_array, check_is_fitted

from pyrovae.data.batches import as_data
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.imputation import impute
from pyrovae.models.vae import VAE
from pyrovae.use.anomaly import SCORES, anomaly_score
from pyrovae.use.applications import decode_mean, latent_means
from pyrovae.use.estimator_base import (
    _FLOATS,
    _check_count,
    _shared_docs,
    _store,
    _tensor,
    _VAEEstimator,
)

#: The quantile of the training scores that ``contamination="auto"`` flags (PyOD's 0.1).
AUTO_CONTAMINATION = 0.1


def _flagged(contamination: Any) -> float:
    """The fraction of the training rows that ``contamination`` flags."""
    if isinstance(contamination, str) and contamination == "auto":
        return AUTO_CONTAMINATION
    if isinstance(contamination, numbers.Real) and 0 < contamination <= 0.5:
        return float(contamination)
    raise PyrovaeError(
        Param("contamination"), f" must be 'auto' or in (0, 0.5], got {contamination!r}"
    )


@_shared_docs
class VAEImputer(OneToOneFeatureMixin, TransformerMixin, _VAEEstimator):
    """Fill missing entries (NaN) from a VAE trained on the observed ones (MIWAE).

    A drop-in for ``sklearn.impute.IterativeImputer``: ``transform`` fills each NaN with
    E[x_mis | x_obs] by self-normalised importance sampling with K draws from the encoder
    (:func:`~pyrovae.inference.imputation.impute`; a row with nothing observed gets the
    model's mean) and returns every observed entry bit for bit. The defaults are
    ``DATA_DEFAULTS["incomplete-table"]``, measured in ``docs/howto/sklearn.md``, but
    for ``validation_fraction=0.0``: the imputer trains on every row for its budget of
    steps, as imputing from the held-out rows' best epoch was worse there (early stopping
    is one parameter away).

    Parameters
    ----------
    {shared}
    sample_posterior : bool
        False: the conditional mean. True: one draw from p(x_mis | x_obs) (multiple
        imputation, as ``IterativeImputer``'s), the same draw at every call; for M
        different draws, :meth:`impute_multiple`.

    Attributes
    ----------
    {fitted}
    """

    def __init__(
        self,
        *,
        z_dim: Any = 10,
        hidden: Any = (128, 128),
        activation: str | None = "tanh",
        init: str | None = "orthogonal",
        likelihood: Any = "gaussian",
        likelihood_kwargs: dict[str, Any] | None = None,
        standardize: bool | str = "auto",
        loss: str | None = "iwae",
        num_particles: int | None = 20,
        batch_size: int | None = 64,
        lr: float | None = 1e-3,
        max_steps: int | None = 4_500,
        patience_steps: int | None = 1_000,
        validation_fraction: float = 0.0,
        num_samples: int = 1000,
        sample_posterior: bool = False,
        random_state: Any = None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        _store(self, locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _kind(self, has_missing: bool) -> str:
        return "incomplete-table"

    def fit(self, X: Any, y: Any = None) -> VAEImputer:
        """Train the VAE on the observed entries of ``X`` (NaN: missing); ``y`` is ignored."""
        self._fit_vae(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``X`` with every NaN filled; shape and dtype of ``X``, observed entries as given."""
        X, xs = self._inputs(X)
        return self._filled(X, xs, 1 if self.sample_posterior else None)[0]

    def impute_multiple(self, X: Any, m: int) -> np.ndarray:
        """``m`` completions of ``X``, each NaN drawn from p(x_mis | x_obs): shape ``(m, N, D)``.

        Multiple imputation (Rubin): fit the downstream model to each and pool.
        """
        _check_count("m", m)
        X, xs = self._inputs(X)
        return self._filled(X, xs, int(m))

    def _filled(self, X: np.ndarray, xs: np.ndarray, multiple: int | None) -> np.ndarray:
        """``(M, N, D)`` completions (M = 1 for the mean); only rows with a NaN are drawn."""
        missing = np.isnan(X)
        out = np.repeat(X[None], multiple or 1, axis=0)
        rows = np.flatnonzero(missing.any(axis=1))
        if rows.size == 0:
            return out
        holes = missing[rows]

        def draw(vae: VAE, device: torch.device) -> torch.Tensor:
            x = _tensor(np.where(holes, 0.0, xs[rows]), device)
            mask = torch.as_tensor(~holes, device=device)
            data = as_data({"x": x, "mask": mask}, "X")  # a row with nothing observed too
            return impute(vae.model, vae.guide, data, self.num_samples, multiple)

        fill = self._run(draw).reshape(-1, rows.size, X.shape[1])
        fill = (fill * self.scale_ + self.mean_).astype(X.dtype)
        out[:, rows] = np.where(missing[rows], fill, X[rows])
        return out


@_shared_docs
class VAEOutlierDetector(OutlierMixin, _VAEEstimator):
    """Flag rows unlike the training rows by an anomaly score of a VAE.

    As ``sklearn.ensemble.IsolationForest``: ``score_samples`` is higher for more normal
    rows (minus an anomaly score, in nats on the standardised columns),
    ``decision_function`` is ``score_samples - offset_``, ``predict`` gives -1 for
    outliers and +1 for inliers. Rows with NaN are trained on and scored by their
    observed entries.

    Parameters
    ----------
    method : str
        A key of :data:`~pyrovae.use.anomaly.SCORES`: ``"nll"`` (-log p(x)), ``"elbo"``,
        ``"reconstruction"``, ``"llr"`` (hierarchical ``z_dim``); not ``"complexity"``
        (images) nor ``"likelihood-ratio"`` (a background model).
    contamination : "auto" or float
        The fraction of the training rows flagged (``offset_`` is this quantile of their
        scores), in (0, 0.5]; ``"auto"``: 0.1 (:data:`AUTO_CONTAMINATION`, PyOD's).
    {shared}

    Attributes
    ----------
    offset\\_ : float
        The ``contamination`` quantile of the training rows' ``score_samples``.
    {fitted}
    """

    def __init__(
        self,
        *,
        method: str = "nll",
        contamination: float | str = "auto",
        z_dim: Any = None,
        hidden: Any = None,
        activation: str | None = None,
        init: str | None = None,
        likelihood: Any = None,
        likelihood_kwargs: dict[str, Any] | None = None,
        standardize: bool | str = "auto",
        loss: str | None = None,
        num_particles: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        max_steps: int | None = None,
        patience_steps: int | None = None,
        validation_fraction: float = 0.1,
        num_samples: int = 1000,
        random_state: Any = None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        _store(self, locals())

    def fit(self, X: Any, y: Any = None) -> VAEOutlierDetector:
        """Train the VAE on ``X`` and set ``offset_`` from its scores; ``y`` is ignored."""
        if self.method not in SCORES:
            choices = ", ".join(SCORES)
            raise PyrovaeError(
                "unknown ", Param("method", self.method), f"; choose one of: {choices}"
            )
        flagged = _flagged(self.contamination)
        xs = self._fit_vae(X)
        self.offset_ = float(np.percentile(self._scores(xs), 100 * flagged))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus the anomaly score of each row, shape ``(N,)``: higher is more normal."""
        return self._scores(self._inputs(X)[1])

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """-1 for outliers, +1 for inliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def _scores(self, xs: np.ndarray) -> np.ndarray:
        def score(vae: VAE, device: torch.device) -> torch.Tensor:
            x = _tensor(xs, device)
            return -anomaly_score(vae, x, self.method, num_samples=self.num_samples)

        return self._run(score)


@_shared_docs
class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _VAEEstimator):
    """Embed rows as the means of q(z|x); map embeddings back through the decoder.

    ``transform`` gives the latent means (:func:`~pyrovae.use.applications.latent_means`),
    ``inverse_transform`` the decoder's means in the input's units. A NaN reaches the
    encoder as the column's mean (zero in standard units, as the VAE was trained).

    Parameters
    ----------
    n_components : int, tuple of int or None
        Latent units (the VAE's ``z_dim``); a hierarchical VAE embeds in its bottom layer.
    {shared}

    Attributes
    ----------
    {fitted}
    """

    _aliases = {"z_dim": "n_components"}

    def __init__(
        self,
        n_components: Any = None,
        *,
        hidden: Any = None,
        activation: str | None = None,
        init: str | None = None,
        likelihood: Any = None,
        likelihood_kwargs: dict[str, Any] | None = None,
        standardize: bool | str = "auto",
        loss: str | None = None,
        num_particles: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        max_steps: int | None = None,
        patience_steps: int | None = None,
        validation_fraction: float = 0.1,
        num_samples: int = 1000,
        random_state: Any = None,
        device: str = "cpu",
        verbose: bool = False,
    ) -> None:
        _store(self, locals())

    @property
    def _n_features_out(self) -> int:
        return self.vae_.z_dim

    def fit(self, X: Any, y: Any = None) -> VAETransformer:
        """Train the VAE on ``X``; ``y`` is ignored."""
        self._fit_vae(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The mean of q(z|x) of each row, shape ``(N, n_components)``."""
        xs = np.nan_to_num(self._inputs(X)[1], nan=0.0)
        return self._run(lambda vae, device: latent_means(vae, _tensor(xs, device)))

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The mean of p(x|z) of each embedding ``X``, in the input's units."""
        check_is_fitted(self)
        Z = check_array(X, dtype=_FLOATS)
        if Z.shape[1] != self.vae_.z_dim:
            raise PyrovaeError(
                f"X has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.vae_.z_dim} features (its latent units) as input"
            )
        x = self._run(lambda vae, device: decode_mean(vae, _tensor(Z, device)))
        return x * self.scale_ + self.mean_
