"""Why a model decides: SHAP attributions per raw feature, for any rows, from any keel model.

Build one :class:`Explainer` per model version and keep it (the server holds it warm)::

    explainer = Explainer(model).fit(background)     # background: raw rows, e.g. training data
    explainer.explain_one({"age": 39, "workclass": "State-gov", ...})
    # {"output": -2.91, "expected_value": -2.44, "contributions": {"age": 0.31, ...},
    #  "space": "log_odds", "method": "tree", "class": ">50K"}

How, by model:

* LightGBM (``LightGBMModel``, or a scikit-learn pipeline ending in an LGBM estimator):
  exact path-dependent TreeSHAP from the booster's own ``pred_contrib`` on the encoded
  columns, in its raw output space (log-odds for a binary model). No background needed.
  After :meth:`Explainer.warm`, single rows take a compiled walk of the flattened trees
  instead (``keel.audit._explain_paths``, where numba is installed): the same values.
* linear scikit-learn models (logistic, ridge, ...): exact interventional linear SHAP on
  the encoded columns, ``coef * (z - mean_background(z))``, in decision-function space.
* anything else, keel's ``Model`` protocol alone: Shapley values of the raw features in the
  interventional game over a background sample, exact for few features, else permutation
  sampling with antithetic pairs (seeded); decision-function space where the estimator has
  one, else the probability of the explained class, or the predicted value.

Attributions of encoded columns (one-hot, date parts) are summed back to the raw column
they come from (``keel.features.feature_origins``); an interaction column ``a*b`` is split
equally between ``a`` and ``b``. In every case ``sum(contributions) + expected_value ==
output`` (to rounding). Everything returned is plain JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._explain_global import (
    explanation_evidence,
    partial_dependence,
    permutation_importance,
    plot_partial_dependence,
    shap_importance,
    surrogate_tree,
)
from keel.audit._explain_paths import PathShap
from keel.audit._explain_rows import NUMERIC, RowEncoder, check_row, to_frame
from keel.audit._explain_sampling import exact_shap, permutation_shap
from keel.audit._explain_scored import scored_parts
from keel.audit._explain_tree import TreeShap
from keel.errors import InvalidInput

__all__ = [
    "METHODS",
    "Attributions",
    "Explainer",
    "explanation_evidence",
    "partial_dependence",
    "permutation_importance",
    "plot_partial_dependence",
    "shap_importance",
    "surrogate_tree",
]

METHODS = ("auto", "tree", "linear", "exact", "permutation")
# "auto" enumerates all coalitions when that costs no more model rows than sampling
_EXACT_MAX_FEATURES = 10


@dataclass
class Attributions:
    """SHAP values of many rows: ``values[i, j]`` for row i and raw feature ``features[j]``;
    ``values.sum(1) + expected_value == output``. ``expanded`` holds the values per encoded
    column (``columns``) where the method works on them (tree, linear)."""

    values: np.ndarray
    expected_value: float
    output: np.ndarray
    features: list[str]
    space: str
    method: str
    target: Any = None
    expanded: np.ndarray | None = None
    columns: list[str] | None = None
    explains: str | None = None

    def row(self, i: int) -> dict[str, Any]:
        return _row_dict(
            self.features, self.values[i], self.expected_value, self.output[i], self._about()
        )

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(i) for i in range(len(self.values))]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._about(),
            "features": list(self.features),
            "expected_value": float(self.expected_value),
            "output": [float(v) for v in self.output],
            "values": self.values.tolist(),
        }

    def _about(self) -> dict[str, Any]:
        return _about(self.space, self.method, self.target, self.explains)


def _about(space: str, method: str, target: Any, explains: str | None) -> dict[str, Any]:
    """What a value is in: its space, method and class, and for a mitigated model which
    score is explained (``explains``; see ``keel.audit._explain_scored``)."""
    about = {"space": space, "method": method, "class": target}
    if explains is not None:
        about["explains"] = explains
    return about


def _row_dict(
    features: list[str], values: Any, expected: float, output: float, about: dict[str, Any]
) -> dict[str, Any]:
    return {
        "output": float(output),
        "expected_value": float(expected),
        "contributions": dict(zip(features, map(float, values), strict=True)),
        **about,
    }


class Explainer:
    """Local SHAP explanations of one model (see the module doc for the method per model).

    ``method``: one of :data:`METHODS`. ``n_background``: rows kept from the background
    (seeded sample). ``n_permutations``: permutations per row for the sampling estimator
    (rounded up to antithetic pairs). ``target_class``: the class explained (default the
    last class, i.e. the positive class of a binary model). ``n_threads``: LightGBM threads
    for batches (0: its default); a single row uses one.
    """

    def __init__(
        self,
        model: Any,
        *,
        method: str = "auto",
        n_background: int = 100,
        n_permutations: int = 16,
        seed: int = 0,
        target_class: Any = None,
        n_threads: int = 0,
    ) -> None:
        self.model = model
        self.method = method
        self.n_background = n_background
        self.n_permutations = n_permutations
        self.seed = seed
        self.target_class = target_class
        self.n_threads = n_threads

    # ------------------------------------------------------------------ fitting
    def fit(self, background: Any = None) -> Explainer:
        """Choose the method, read the model's structure, keep a background sample."""
        self._check_config()
        model = self.model
        self.schema_ = list(model.input_schema)
        self.features_ = [c["name"] for c in self.schema_]
        self.task_ = model.task
        self.classes_ = list(model.output_schema.get("classes") or []) or None
        self.target_, self.class_index_ = self._target()
        scored = scored_parts(model)
        transformer = scored.transformer
        self.reads_ = scored.reads
        self.explains_ = scored.explains
        self.method_ = self._resolve(transformer, scored.estimators)
        self.background_ = None
        if background is not None:
            self.background_ = self._sample(background)
        elif self.method_ not in ("tree",):
            raise InvalidInput(
                f"background: method {self.method_!r} needs background rows (e.g. a sample of "
                "the training data): Explainer(model).fit(background)"
            )
        self.transformer_ = transformer
        self.columns_: list[str] | None = None
        self.encoder_: RowEncoder | None = None
        self._encoder_checked = False
        if self.method_ in ("tree", "linear"):
            self.columns_ = [str(c) for c in transformer.get_feature_names_out()]
            self.sum_back_ = _sum_back_matrix(transformer, self.features_)
            self.encoder_ = RowEncoder(transformer)
        if self.method_ == "tree":
            self._fit_tree(scored.estimators, scored.weights)
        elif self.method_ == "linear":
            self._fit_linear(scored.estimators, scored.weights)
        else:
            self.output_fn_, self.space_ = _output_function(model, self.class_index_)
            self.expected_value_ = float(np.mean(self.output_fn_(self._background())))
        return self

    def _background(self) -> pd.DataFrame:
        """The kept background sample; fit() refuses a method that needs one without it."""
        if self.background_ is None:
            raise InvalidInput(
                f"background: method {self.method_!r} needs background rows (e.g. a sample "
                "of the training data): Explainer(model).fit(background)"
            )
        return self.background_

    def _check_config(self) -> None:
        if self.method not in METHODS:
            raise InvalidInput(f"method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("n_background", "n_permutations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInput(f"{name}: expected a whole number 1 or above, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInput(f"seed: expected a whole number 0 or above, got {self.seed!r}")

    def _target(self) -> tuple[Any, int | None]:
        if self.task_ != "classification":
            if self.target_class is not None:
                raise InvalidInput("target_class: a regression model has no classes")
            return None, None
        classes = self.classes_ or []
        target = classes[-1] if self.target_class is None else self.target_class
        if target not in classes:
            raise InvalidInput(
                f"target_class: {target!r} is not a class of the model; classes: "
                f"{', '.join(map(repr, classes))}"
            )
        return target, classes.index(target)

    def _resolve(self, transformer: Any, estimators: list[Any]) -> str:
        tree_ok = bool(estimators) and all(_booster(e) is not None for e in estimators)
        linear_ok = bool(estimators) and all(_is_linear(e) for e in estimators)
        traced = transformer is not None and _traceable(transformer, self.features_)
        wanted = self.method
        if wanted == "tree" and not (tree_ok and traced):
            raise InvalidInput(
                "method 'tree': needs a LightGBM model whose encoded columns trace back to raw "
                "features; use method 'permutation'"
            )
        if wanted == "linear" and not (linear_ok and traced):
            raise InvalidInput(
                "method 'linear': needs a linear scikit-learn model (coef_, intercept_) after "
                "keel's feature transform; use method 'permutation'"
            )
        if wanted != "auto":
            return wanted
        if tree_ok and traced:
            return "tree"
        if linear_ok and traced:
            return "linear"
        return "exact" if len(self.features_) <= _EXACT_MAX_FEATURES else "permutation"

    def _sample(self, background: Any) -> pd.DataFrame:
        frame = _normalise(to_frame(background, self.schema_), self.schema_)
        if len(frame) > self.n_background:
            rng = np.random.default_rng(self.seed)
            idx = np.sort(rng.choice(len(frame), self.n_background, replace=False))
            frame = frame.iloc[idx]
        return frame.reset_index(drop=True)

    def _fit_tree(self, estimators: list[Any], weights: list[float]) -> None:
        """One TreeShap per booster (several: an ensemble's members, weighted)."""
        self.trees_ = [TreeShap(_booster(e)) for e in estimators]
        self._paths: list[PathShap] | None = None  # built by warm()
        self._paths_lock = threading.Lock()
        self.tree_weights_ = [float(w) for w in weights]
        self.tree_ = self.trees_[0]
        k = self.tree_.n_classes
        if any(t.n_classes != k for t in self.trees_):
            raise InvalidInput("method 'tree': the ensemble's members have different outputs")
        self.sign_ = 1.0
        if k == 1 and self.task_ == "classification" and self.class_index_ == 0:
            self.sign_ = -1.0  # a binary model's margin is the last class's log-odds
        self.column_index_ = self.class_index_ if k > 1 else 0
        self.space_ = _tree_space(self.task_, k)
        zero = np.zeros((1, self.tree_.n_features))
        bias = sum(
            w * t.contributions(zero, n_threads=1)[0, self.column_index_, -1]
            for t, w in zip(self.trees_, self.tree_weights_, strict=True)
        )
        self.expected_value_ = float(self.sign_ * bias)

    def _fit_linear(self, estimators: list[Any], weights: list[float]) -> None:
        """Linear SHAP of the (weighted sum of the) linear models' decision functions."""
        self.coef_ = 0.0
        self.intercept_ = 0.0
        binary = False
        for estimator, w in zip(estimators, weights, strict=True):
            coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
            intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
            sign, row = 1.0, 0
            if coef.shape[0] > 1:
                row = int(self.class_index_ or 0)
            elif self.task_ == "classification" and self.class_index_ == 0:
                sign = -1.0
            self.coef_ = self.coef_ + w * sign * coef[row]
            self.intercept_ += float(w * sign * intercept[row if len(intercept) > 1 else 0])
            binary = self.task_ == "classification" and coef.shape[0] == 1
        Zb = np.asarray(self.transformer_.transform(self._background()[self.reads_]), np.float64)
        self.mean_ = Zb.mean(axis=0)
        self.expected_value_ = float(self.coef_ @ self.mean_ + self.intercept_)
        self.space_ = (
            "log_odds"
            if binary and all(hasattr(e, "predict_proba") for e in estimators)
            else ("decision_function" if self.task_ == "classification" else "value")
        )

    # ------------------------------------------------------------------ explaining
    def attributions(self, X: Any, *, expanded: bool = False) -> Attributions:
        """SHAP values of many rows (a DataFrame, dicts or arrays of raw values)."""
        self._check_fitted()
        frame = to_frame(X, self.schema_)
        if self.method_ in ("tree", "linear"):
            Z = np.asarray(self.transformer_.transform(frame[self.reads_]), dtype=np.float64)
            exp, bias = self._encoded(Z, self.n_threads)
            raw = exp @ self.sum_back_
            output = exp.sum(axis=1) + bias
            return Attributions(
                raw,
                self.expected_value_,
                output,
                list(self.features_),
                self.space_,
                self.method_,
                self.target_,
                exp if expanded else None,
                list(self.columns_ or []) if expanded else None,
                self.explains_,
            )
        frame = _normalise(frame, self.schema_)
        if self.method_ == "exact":
            phi, empty, full = exact_shap(self.output_fn_, frame, self._background())
        else:
            phi, empty, full = permutation_shap(
                self.output_fn_, frame, self._background(), self.n_permutations, self.seed
            )
        # v(empty) is the same for every row; tiny differences are rounding
        return Attributions(
            phi,
            float(empty[0]),
            full,
            list(self.features_),
            self.space_,
            self.method_,
            self.target_,
            explains=self.explains_,
        )

    def explain(self, rows: Any) -> list[dict[str, Any]]:
        """One JSON-able dict per row: output, expected value, contribution per feature."""
        if isinstance(rows, Mapping):
            return [self.explain_one(rows)]
        return self.attributions(rows).rows()

    def explain_one(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One dict row of raw values (as a request carries it) explained; the fast path
        (after :meth:`warm`, a tree model's is compiled)."""
        self._check_fitted()
        if self.method_ not in ("tree", "linear"):
            return self.attributions([row]).row(0)
        check_row(row, self.schema_)
        z = self._encode_one(row)
        paths = self._paths if self.method_ == "tree" else None
        if paths:
            phi, bias = _one_row(paths, z[0], self.tree_weights_, self.sign_)
        else:
            exp, biases = self._encoded(z, 1)
            phi, bias = exp[0], float(biases[0])
        raw = phi @ self.sum_back_
        about = _about(self.space_, self.method_, self.target_, self.explains_)
        return _row_dict(self.features_, raw, self.expected_value_, phi.sum() + bias, about)

    def warm(self) -> list[PathShap]:
        """Make :meth:`explain_one` of a tree model fast, for a caller that explains many
        single rows (the server does): each booster's trees flattened for the compiled
        one-row TreeSHAP of ``keel.audit._explain_paths`` (numba compiles it once per
        process: seconds), about 3x faster than LightGBM's ``pred_contrib`` on one row,
        with the same values to rounding. Empty (single rows keep going to
        ``pred_contrib``) without numba or where a booster has trees that walk does not
        cover: categorical splits, linear leaves."""
        self._check_fitted()
        if self.method_ != "tree":
            return []
        with self._paths_lock:
            if self._paths is None:
                built = [
                    PathShap.build(t.booster.dump_model(), t.n_iterations, self.column_index_ or 0)
                    for t in self.trees_
                ]
                paths = [b for b in built if b is not None]
                self._paths = paths if len(paths) == len(built) else []
            return self._paths

    def _encoded(self, Z: np.ndarray, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Per encoded column values and the per-row bias (the expected value)."""
        if self.method_ == "tree":
            c = self.column_index_
            parts = [
                t.contributions(Z, n_threads=n_threads)[:, c, :] * (self.sign_ * w)
                for t, w in zip(self.trees_, self.tree_weights_, strict=True)
            ]
            phi = parts[0] if len(parts) == 1 else np.sum(parts, axis=0)
            return phi[:, :-1], phi[:, -1]
        exp = (Z - self.mean_) * self.coef_
        return exp, np.full(len(Z), self.expected_value_)

    def _encode_one(self, row: Mapping[str, Any]) -> np.ndarray:
        fast = self.encoder_.encode(row) if self.encoder_ is not None else None
        if fast is not None and self._encoder_checked:
            return fast
        frame = to_frame([row], self.schema_)[self.reads_]
        slow = np.asarray(self.transformer_.transform(frame), dtype=np.float64)
        if fast is not None:
            same = fast.shape == slow.shape and np.allclose(
                fast, slow, rtol=1e-12, atol=0.0, equal_nan=True
            )
            self._encoder_checked = bool(same)
            if not same:
                self.encoder_ = None
        return slow

    def _check_fitted(self) -> None:
        if not hasattr(self, "method_"):
            raise InvalidInput("Explainer is not fitted: call .fit(background) first")


def _one_row(
    paths: list[PathShap], z: np.ndarray, weights: list[float], sign: float
) -> tuple[np.ndarray, float]:
    """One encoded row's TreeSHAP values and expected value from the flattened boosters,
    weighted (an ensemble's members) and signed (the negative class of a binary model)."""
    phi, bias = paths[0].row(z)
    scale = sign * weights[0]
    if scale != 1.0:
        phi, bias = phi * scale, bias * scale
    for t, w in zip(paths[1:], weights[1:], strict=True):
        more, b = t.row(z)
        phi = phi + more * (sign * w)
        bias += b * sign * w
    return phi, float(bias)


# ---------------------------------------------------------------------- model structure
def _booster(estimator: Any) -> Any:
    if type(estimator).__module__.startswith("lightgbm") and hasattr(estimator, "dump_model"):
        return estimator
    booster = getattr(estimator, "booster_", None)
    return booster if booster is not None and hasattr(booster, "dump_model") else None


def _is_linear(estimator: Any) -> bool:
    module = type(estimator).__module__
    return (
        module.startswith("sklearn.linear_model")
        and hasattr(estimator, "coef_")
        and hasattr(estimator, "intercept_")
    )


def _traceable(transformer: Any, features: list[str]) -> bool:
    try:
        _sum_back_matrix(transformer, features)
    except (InvalidInput, AttributeError, ValueError, TypeError):
        return False
    return True


def _sum_back_matrix(transformer: Any, features: list[str]) -> np.ndarray:
    """``G[c, j]``: the share of encoded column c's attribution that raw feature j gets."""
    from sklearn.pipeline import Pipeline

    from keel.features import feature_origins

    ct = transformer[-1] if isinstance(transformer, Pipeline) else transformer
    if isinstance(transformer, Pipeline) and len(transformer.steps) != 1:
        raise InvalidInput("sum-back: expected one compiled ColumnTransformer")
    origins = feature_origins(ct)
    index = {f: j for j, f in enumerate(features)}
    G = np.zeros((len(origins), len(features)))
    for c, origin in enumerate(origins):
        if origin in index:
            G[c, index[origin]] = 1.0
            continue
        parts = origin.split("*")
        if len(parts) == 2 and all(p in index for p in parts):
            for p in parts:
                G[c, index[p]] = 0.5
            continue
        raise InvalidInput(f"sum-back: encoded column {c} comes from {origin!r}, not a feature")
    return G


def _tree_space(task: str, n_classes: int) -> str:
    if task == "classification":
        return "log_odds" if n_classes == 1 else "raw_score"
    return "raw_score"


def _output_function(
    model: Any, class_index: int | None
) -> tuple[Callable[[pd.DataFrame], np.ndarray], str]:
    """What the model-agnostic estimator explains, and the name of that space."""
    if model.task != "classification":
        return (lambda X: np.asarray(model.predict(X), dtype=np.float64)), "value"
    k = int(class_index or 0)
    if hasattr(model, "decision_probability"):  # a mitigated model: its policy, not a draw
        n = len(model.output_schema.get("classes") or [])

        def policy(X: pd.DataFrame) -> np.ndarray:
            p = np.asarray(model.decision_probability(X), dtype=np.float64)
            return p if k == n - 1 else 1.0 - p

        return policy, "decision_probability"
    pipeline = getattr(model, "pipeline", None)
    if pipeline is not None and hasattr(pipeline[-1], "decision_function"):
        n_classes = len(model.output_schema.get("classes") or [])

        def decision(X: pd.DataFrame) -> np.ndarray:
            d = np.asarray(pipeline.decision_function(X), dtype=np.float64)
            if d.ndim == 1:
                return d if k == n_classes - 1 else -d
            return d[:, k]

        return decision, "decision_function"
    return (lambda X: np.asarray(model.predict_proba(X), dtype=np.float64)[:, k]), "probability"


def _normalise(frame: pd.DataFrame, schema: list[dict[str, Any]]) -> pd.DataFrame:
    """Numbers as float64 and text as object, so coalition frames mix without surprises."""
    data = {}
    for col in schema:
        s = frame[col["name"]]
        if col.get("type") in NUMERIC:
            try:
                numbers = pd.to_numeric(s.astype(object).where(s.notna(), np.nan))
            except (TypeError, ValueError):
                bad = next((v for v in s.dropna() if not isinstance(v, int | float)), "?")
                raise InvalidInput(
                    f"column {col['name']!r}: expected numbers, got {bad!r}"
                ) from None
            data[col["name"]] = np.asarray(numbers, dtype=np.float64)
        else:
            data[col["name"]] = s.astype(object).where(s.notna(), None).to_numpy(dtype=object)
    return pd.DataFrame(data)
