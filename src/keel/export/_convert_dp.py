"""keel's differentially private estimators (:mod:`keel.models._dp`) as the scikit-learn
estimators skl2onnx already converts.

The noise is in the fitted numbers, not in how the model predicts: a fitted
:class:`~keel.models._dp.DPGaussianNB` predicts exactly like a ``GaussianNB`` with the same
means, variances and priors, and a fitted :class:`~keel.models._dp.DPLogisticRegression`
like a one-vs-rest ``LogisticRegression`` with the same coefficients (a sigmoid per class,
normalised to sum to 1; two classes: one sigmoid). :func:`sklearn_twin` builds that twin
from the fitted arrays, and ``onnx_ready`` hands it to skl2onnx's own converters in place of
the DP estimator, so no converter of keel's is registered for these classes and the twin
is never fitted (nothing is learned again, so no privacy is spent).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from keel.models._dp import DPGaussianNB, DPLogisticRegression

__all__ = ["sklearn_twin"]

_NB_STATE = ("theta_", "var_", "class_prior_", "class_count_", "classes_", "epsilon_")


def sklearn_twin(est: Any) -> Any:
    """The fitted scikit-learn estimator that predicts like ``est`` (a keel DP estimator),
    or None when ``est`` is not one."""
    if isinstance(est, DPLogisticRegression):
        twin = LogisticRegression(C=est.C, max_iter=est.max_iter, tol=est.tol)
        twin.coef_ = np.asarray(est.coef_, dtype=np.float64)
        twin.intercept_ = np.asarray(est.intercept_, dtype=np.float64)
        twin.classes_ = np.asarray(est.classes_)
        twin.n_features_in_ = est.n_features_in_
        # skl2onnx reads this attribute (gone from scikit-learn's parameters since 1.8):
        # "ovr" gives a sigmoid per class, L1-normalised, as DPLogisticRegression does
        twin.multi_class = "ovr"
        return twin
    if isinstance(est, DPGaussianNB):
        twin = GaussianNB(priors=est.priors, var_smoothing=est.var_smoothing)
        for name in _NB_STATE:
            setattr(twin, name, np.asarray(getattr(est, name)))
        twin.n_features_in_ = est.n_features_in_
        return twin
    return None
