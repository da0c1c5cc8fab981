"""pyrovae in scikit-learn: a VAE imputer in a Pipeline, a grid search, an outlier detector.

scikit-learn's breast-cancer table (569 x 30) loses a fraction of its entries completely
at random; a ``Pipeline`` of ``VAEImputer`` and a logistic regression is scored by
cross-validation against the same pipeline with ``IterativeImputer``, a ``GridSearchCV``
picks the imputer's ``z_dim``, and ``VAEOutlierDetector`` flags rows beside
``IsolationForest``. Needs scikit-learn (``pip install 'pyrovae[sklearn]'``).

    python examples/sklearn_pipeline.py                     # defaults, a few minutes
    python examples/sklearn_pipeline.py --max-steps 50 --folds 2 --num-samples 10
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pyrovae.sklearn import VAEImputer, VAEOutlierDetector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=0.3, help="fraction of entries removed")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=None, help="VAEImputer's (its default)")
    p.add_argument("--num-samples", type=int, default=1000, help="VAEImputer's K")
    args = p.parse_args()
    warnings.filterwarnings("ignore", module="sklearn")
    data = load_breast_cancer()
    x, y = data.data, data.target
    holed = np.where(np.random.default_rng(0).random(x.shape) < args.rate, np.nan, x)
    budget = {} if args.max_steps is None else {"max_steps": args.max_steps}
    vae = VAEImputer(random_state=0, num_samples=args.num_samples, **budget)

    def pipeline(imputer) -> Pipeline:
        model = LogisticRegression(max_iter=2000)
        return Pipeline([("impute", imputer), ("scale", StandardScaler()), ("model", model)])

    for name, imputer in (("VAEImputer", vae), ("IterativeImputer", IterativeImputer())):
        scores = cross_val_score(pipeline(imputer), holed, y, cv=args.folds)
        print(
            f"{name:16s} + logistic regression: accuracy {scores.mean():.3f} +- {scores.std():.3f}"
        )

    search = GridSearchCV(pipeline(vae), {"impute__z_dim": [5, 10]}, cv=args.folds)
    search.fit(holed, y)
    print(
        f"GridSearchCV over z_dim: best {search.best_params_}, accuracy {search.best_score_:.3f}"
    )

    benign = x[y == 1]  # outliers: the malignant rows, 5 % of a table of benign ones
    malignant = x[y == 0][: len(benign) // 19]
    table = np.vstack([benign, malignant])
    truth = np.r_[np.zeros(len(benign)), np.ones(len(malignant))]
    table = (table - table.mean(0)) / table.std(0)
    for name, detector in (
        ("VAEOutlierDetector", VAEOutlierDetector(random_state=0, **budget)),
        ("IsolationForest", IsolationForest(random_state=0)),
    ):
        detector.fit(table)
        auc = roc_auc_score(truth, -detector.score_samples(table))
        print(f"{name:18s} ROC AUC for the malignant rows: {auc:.3f}")


if __name__ == "__main__":
    main()
