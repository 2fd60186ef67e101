"""Differentially private estimators (diffprivlib's mechanisms), storable with skops.

diffprivlib 0.6 imports two constants scikit-learn ≥ 1.9 no longer defines
(``sklearn.tree._tree.DOUBLE``, ``DTYPE``) and passes ``multi_class`` to
``LogisticRegression``, which scikit-learn removed. :func:`diffprivlib` adds the two
constants (with the values scikit-learn had) before importing it, and
:class:`DPLogisticRegression` runs diffprivlib's objective-perturbation fit without that
argument. The fitted estimators keep plain arrays only (no accountant, no diffprivlib object),
so a saved model loads with nothing but keel, scikit-learn and NumPy types.

ε covers the estimator's fit on the encoded rows. Rows are clipped to fixed, data-independent
bounds (``data_norm`` for logistic regression, ``[-bound, bound]`` per feature for naive
Bayes), so no privacy leaks through the bounds; the feature pipeline before the estimator
(imputation medians, scaling, category lists) is fit without noise.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.naive_bayes import GaussianNB

__all__ = ["DP_TYPES", "DPGaussianNB", "DPLogisticRegression", "diffprivlib", "dp_info"]


def diffprivlib() -> Any:
    """The ``diffprivlib`` package, importable on scikit-learn ≥ 1.9."""
    import sklearn.tree._tree as sk_tree

    for name, value in (("DOUBLE", np.float64), ("DTYPE", np.float32)):
        if not hasattr(sk_tree, name):
            setattr(sk_tree, name, value)
    import diffprivlib as dpl

    return dpl


def _accountant() -> Any:
    """A fresh accountant per fit, so fits never draw on diffprivlib's global budget."""
    return diffprivlib().accountant.BudgetAccountant()


def _check_epsilon(epsilon: Any) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon > 0:
        raise ValueError(f"epsilon: expected a number > 0, got {epsilon!r}")
    return float(epsilon)


def _refuse_weights(est: Any, sample_weight: Any) -> None:
    """Weighted rows would change each row's influence, so the noise calibrated for ε."""
    if sample_weight is not None:
        from keel.errors import InvalidInput

        raise InvalidInput(
            f"{type(est).__name__}: sample weights are not supported (a weighted row moves the "
            "fit more than the noise for epsilon allows); mitigate a DP model by thresholds "
            "instead of reweighing, or train without weights"
        )


class DPLogisticRegression(LinearClassifierMixin, ClassifierMixin, BaseEstimator):
    """ε-differentially private logistic regression (objective perturbation, Chaudhuri et al.
    2011, as diffprivlib implements it). Rows are clipped to L2 norm ``data_norm``."""

    def __init__(
        self,
        epsilon: float = 1.0,
        data_norm: float = 5.0,
        C: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-4,
        random_state: int | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.data_norm = data_norm
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DPLogisticRegression:
        from sklearn.linear_model import LogisticRegression

        _refuse_weights(self, sample_weight)
        dpl = diffprivlib()
        eps = _check_epsilon(self.epsilon)
        if not self.data_norm > 0:
            raise ValueError(f"data_norm: expected a number > 0, got {self.data_norm!r}")
        est = object.__new__(dpl.models.LogisticRegression)  # its __init__ passes multi_class
        LogisticRegression.__init__(est, C=self.C, tol=self.tol, max_iter=self.max_iter)
        est.random_state = self.random_state
        est.epsilon, est.data_norm, est.accountant = eps, float(self.data_norm), _accountant()
        est.n_jobs, est.verbose, est.warm_start = None, 0, False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            warnings.filterwarnings("ignore", message=r".*iprint.*", category=DeprecationWarning)
            est.fit(np.asarray(X, dtype=np.float64), np.asarray(y))
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.coef_, self.intercept_ = np.asarray(est.coef_), np.asarray(est.intercept_)
        self.classes_, self.n_iter_ = np.asarray(est.classes_), np.asarray(est.n_iter_)
        self.n_features_in_ = self.coef_.shape[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        from scipy.special import expit

        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        p = expit(scores)
        return p / p.sum(axis=1, keepdims=True)


class DPGaussianNB(GaussianNB):
    """ε-differentially private Gaussian naive Bayes (diffprivlib); features are clipped to
    ``[-bound, bound]`` (scaled features: a few standard deviations)."""

    def __init__(
        self,
        epsilon: float = 1.0,
        bound: float = 3.0,
        priors: Any = None,
        var_smoothing: float = 1e-9,
        random_state: int | None = None,
    ) -> None:
        super().__init__(priors=priors, var_smoothing=var_smoothing)
        self.epsilon = epsilon
        self.bound = bound
        self.random_state = random_state

    _parameter_constraints: dict[str, Any] = {
        **GaussianNB._parameter_constraints,
        "epsilon": [float, int],
        "bound": [float, int],
        "random_state": ["random_state"],
    }

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DPGaussianNB:
        _refuse_weights(self, sample_weight)
        dpl = diffprivlib()
        eps = _check_epsilon(self.epsilon)
        if not self.bound > 0:
            raise ValueError(f"bound: expected a number > 0, got {self.bound!r}")
        X = np.asarray(X, dtype=np.float64)
        lo, hi = np.full(X.shape[1], -float(self.bound)), np.full(X.shape[1], float(self.bound))
        est = dpl.models.GaussianNB(
            epsilon=eps,
            bounds=(lo, hi),
            priors=self.priors,
            var_smoothing=self.var_smoothing,
            random_state=self.random_state,
            accountant=_accountant(),
        )
        est.fit(np.clip(X, lo, hi), np.asarray(y))
        for name in ("theta_", "var_", "class_prior_", "class_count_", "classes_", "epsilon_"):
            setattr(self, name, np.asarray(getattr(est, name)))
        self.n_features_in_ = X.shape[1]
        return self


DP_TYPES = (DPLogisticRegression, DPGaussianNB)

_MECHANISMS = {
    "DPLogisticRegression": "objective perturbation (diffprivlib Vector mechanism), rows "
    "clipped to L2 norm data_norm",
    "DPGaussianNB": "Laplace / geometric noise on class means, variances and counts "
    "(diffprivlib), features clipped to [-bound, bound]",
}


def dp_info(model: Any) -> dict[str, Any]:
    """What a keel model's estimator says about differential privacy (for the evidence)."""
    pipeline = getattr(model, "pipeline", None)
    est = pipeline[-1] if pipeline is not None else None
    if not isinstance(est, DP_TYPES):
        return {"differentially_private": False, "epsilon": None}
    name = type(est).__name__
    out: dict[str, Any] = {
        "differentially_private": True,
        "epsilon": float(est.epsilon),
        "delta": 0.0,
        "estimator": name,
        "mechanism": _MECHANISMS[name],
        "scope": "the estimator's fit on the encoded rows; the feature pipeline (imputation, "
        "scaling, category lists) is fit without noise",
    }
    if name == "DPLogisticRegression":
        out["data_norm"] = float(est.data_norm)
        out["converged"] = bool(getattr(est, "converged_", True))
    else:
        out["bound"] = float(est.bound)
    return out
