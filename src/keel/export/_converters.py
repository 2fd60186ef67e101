"""skl2onnx converters for keel's feature transformers, and the shims that carry fitted
scikit-learn and LightGBM parts into skl2onnx with keel's ONNX conventions.

Each converter is a shape calculator plus a converter, registered with
``skl2onnx.update_registered_converter`` by :func:`register`. The conventions (see
``keel.export._convert``): a numeric input is ``tensor(float)`` with NaN for missing; a
text input is ``tensor(string)`` with ``""`` for missing.

scikit-learn's own classes are *not* re-registered (that would change skl2onnx for
every caller in the process): :func:`onnx_ready` swaps the fitted imputers, encoders and
HistGradientBoosting models for private shims registered under keel's names, and keel's
differentially private estimators for the scikit-learn twins that predict like them
(``keel.export._convert_dp``).
"""

from __future__ import annotations

import copy
import functools
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from keel.errors import InvalidInput
from keel.export import _convert_nodes as g
from keel.export._convert_dp import sklearn_twin
from keel.export._convert_encoders import EncoderShim, convert_encoder, shape_encoder
from keel.features import AsFloat, Clip, DateParts, Interactions, Log1p, NullToNaN

__all__ = ["LightGBMClassifierShim", "LightGBMRegressorShim", "onnx_ready", "register"]

_ENCODERS = (OneHotEncoder, OrdinalEncoder)


# --------------------------------------------------------------------------- shims


class _Shim(TransformerMixin, BaseEstimator):
    """Carries one fitted scikit-learn object into skl2onnx under keel's converter."""

    def __init__(self, fitted: Any = None) -> None:
        self.fitted = fitted


class _ImputerShim(_Shim):
    """A SimpleImputer on its own (not before an encoder): ``""`` is missing on text
    inputs, NaN on numeric ones."""


class _HistGBClassifierShim(ClassifierMixin, _Shim):
    """HistGradientBoosting through skl2onnx's own converter (see :func:`_convert_hist_gb`)."""

    @property
    def classes_(self) -> np.ndarray:
        return self.fitted.classes_


class _HistGBRegressorShim(RegressorMixin, _Shim):
    pass


class _BoosterShim(BaseEstimator):
    """A native LightGBM booster as onnxmltools' LightGBM converter reads it."""

    def __init__(self, booster: Any = None, classes: Any = None) -> None:
        self.booster = booster
        self.classes = classes

    @property
    def booster_(self) -> Any:
        return self.booster

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes)

    @property
    def boosting_type(self) -> str:
        # average_output marks LightGBM's random-forest mode, which the converter averages
        header = self.booster.model_to_string(num_iteration=1).split("\nTree=", 1)[0]
        return "rf" if "\naverage_output" in header else "gbdt"


class LightGBMClassifierShim(ClassifierMixin, _BoosterShim):
    pass


class LightGBMRegressorShim(RegressorMixin, _BoosterShim):
    pass


def onnx_ready(part: Any) -> Any:
    """``part`` (a fitted Pipeline, ColumnTransformer or transformer) with the pieces keel
    converts itself swapped for shims; the fitted objects are shared, never changed."""
    if isinstance(part, Pipeline):
        steps = _fuse([step for _, step in part.steps])
        if len(steps) == 1:
            return steps[0]
        return Pipeline([(f"step{k}", step) for k, step in enumerate(steps)])
    if isinstance(part, ColumnTransformer):
        out = copy.copy(part)
        out.transformers_ = [
            (name, t if isinstance(t, str) else _ready_entry(t, columns), columns)
            for name, t, columns in part.transformers_
        ]
        return out
    if isinstance(part, SimpleImputer):
        return _ImputerShim(part)
    if isinstance(part, _ENCODERS):
        return EncoderShim(part)
    if isinstance(part, HistGradientBoostingClassifier):
        return _HistGBClassifierShim(part)
    if isinstance(part, HistGradientBoostingRegressor):
        return _HistGBRegressorShim(part)
    twin = sklearn_twin(part)  # a differentially private estimator: its scikit-learn twin
    return part if twin is None else twin


def _fuse(steps: list[Any]) -> list[Any]:
    """``[NullToNaN, SimpleImputer, encoder, *rest]`` (NullToNaN and the imputer
    optional) becomes ``[EncoderShim(encoder, imputer), *rest]``."""
    rest = steps[1:] if steps and isinstance(steps[0], NullToNaN) else steps
    imputer = rest[0] if rest and isinstance(rest[0], SimpleImputer) else None
    after = rest[1:] if imputer is not None else rest
    fusable = imputer is None or g.is_missing(imputer.missing_values)
    if after and isinstance(after[0], _ENCODERS) and fusable:
        return [EncoderShim(after[0], imputer), *(onnx_ready(s) for s in after[1:])]
    return [onnx_ready(s) for s in steps]


def _ready_entry(part: Any, columns: Any) -> Any:
    if _contains(part, DateParts):
        names = ", ".join(repr(str(c)) for c in np.atleast_1d(columns))
        raise InvalidInput(
            f"to_onnx: column(s) {names} use the date_parts step, which cannot be exported: "
            "ONNX has no date parsing. Split the date into numeric columns before keel sees "
            "it (e.g. signup_year, signup_month, signup_dayofweek as int columns) and use "
            "those in the feature spec instead of date_parts"
        )
    return onnx_ready(part)


def _contains(part: Any, kind: type) -> bool:
    if isinstance(part, kind):
        return True
    if isinstance(part, Pipeline):
        return any(_contains(step, kind) for _, step in part.steps)
    if isinstance(part, ColumnTransformer):
        fitted = getattr(part, "transformers_", part.transformers)
        return any(_contains(t, kind) for _, t, _ in fitted)
    return False


# --------------------------------------------------------------------------- shapes


def _shape_same(operator: Any) -> None:
    """One output column per input column, of the input's type."""
    cls = type(operator.inputs[0].type)
    operator.outputs[0].type = cls([g.rows(operator), g.width(operator)])


def _shape_float(operator: Any) -> None:
    operator.outputs[0].type = g.data_types().FloatTensorType([g.rows(operator), g.width(operator)])


def _shape_interactions(operator: Any) -> None:
    n = g.width(operator)
    operator.outputs[0].type = g.data_types().FloatTensorType([g.rows(operator), n * (n - 1) // 2])


# --------------------------------------------------------------------------- converters


def _convert_null_to_nan(scope: Any, operator: Any, container: Any) -> None:
    """The graph's inputs already mark missing values ("" or NaN): identity."""
    g.finish(scope, container, g.merged(scope, operator, container), operator)


def _convert_as_float(scope: Any, operator: Any, container: Any) -> None:
    x = g.merged(scope, operator, container)
    if g.is_text(operator.inputs[0]):
        # Cast parses numbers written as text but fails on "": missing becomes "nan" first
        empty = g.const(scope, container, "empty", [g.MISSING_TEXT], g.STRING)
        nan = g.const(scope, container, "nan", ["nan"], g.STRING)
        missing = g.node(scope, container, "Equal", [x, empty])
        x = g.node(scope, container, "Where", [missing, nan, x])
        x = g.node(scope, container, "Cast", [x], to=g.FLOAT)
    elif not isinstance(operator.inputs[0].type, g.data_types().FloatTensorType):
        x = g.node(scope, container, "Cast", [x], to=g.FLOAT)
    g.finish(scope, container, x, operator)


def _convert_log1p(scope: Any, operator: Any, container: Any) -> None:
    """log(1 + max(x, 0)); Relu keeps NaN as NaN, as np.maximum does."""
    x = g.merged(scope, operator, container)
    one = g.const(scope, container, "one", np.float32(1.0), g.FLOAT)
    x = g.node(scope, container, "Relu", [x])
    x = g.node(scope, container, "Add", [x, one])
    g.finish(scope, container, g.node(scope, container, "Log", [x]), operator)


def _convert_clip(scope: Any, operator: Any, container: Any) -> None:
    """Clip to [lower, upper] (a missing bound is infinite); NaN stays NaN."""
    est = operator.raw_operator
    low = -np.inf if est.lower is None else est.lower
    high = np.inf if est.upper is None else est.upper
    x = g.merged(scope, operator, container)
    bounds = [
        g.const(scope, container, "low", np.float32(low), g.FLOAT),
        g.const(scope, container, "high", np.float32(high), g.FLOAT),
    ]
    g.finish(scope, container, g.node(scope, container, "Clip", [x, *bounds]), operator)


def _convert_interactions(scope: Any, operator: Any, container: Any) -> None:
    """The product of every pair in ``itertools.combinations`` order: one Gather of the
    left factors, one of the right ones, one Mul (the same numbers as a Mul per pair)."""
    x = g.merged(scope, operator, container)
    pairs = list(combinations(range(g.width(operator)), 2))
    left = g.const(scope, container, "left", [i for i, _ in pairs], g.INT64)
    right = g.const(scope, container, "right", [j for _, j in pairs], g.INT64)
    a = g.node(scope, container, "Gather", [x, left], axis=1)
    b = g.node(scope, container, "Gather", [x, right], axis=1)
    g.finish(scope, container, g.node(scope, container, "Mul", [a, b]), operator)


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    imputer = operator.raw_operator.fitted
    stats = list(imputer.statistics_)
    x = g.merged(scope, operator, container)
    marker = imputer.missing_values
    if g.is_text(operator.inputs[0]):
        marker = g.MISSING_TEXT if g.is_missing(marker) else marker
        fill = g.const(scope, container, "fill", [[str(v) for v in stats]], g.STRING)
        empty = g.const(scope, container, "missing", [str(marker)], g.STRING)
        missing = g.node(scope, container, "Equal", [x, empty])
        g.finish(scope, container, g.node(scope, container, "Where", [missing, fill, x]), operator)
        return
    if not g.is_missing(marker):
        raise InvalidInput(
            f"to_onnx: an impute step on numbers marks missing values with {marker!r}; "
            "only NaN is supported"
        )
    try:
        floats = np.asarray(stats, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"to_onnx: an impute step fills numeric columns with {stats[0]!r}; expected a number"
        ) from None
    out = g.node(
        scope,
        container,
        "Imputer",
        [x],
        op_domain="ai.onnx.ml",
        op_version=1,
        imputed_value_floats=floats.tolist(),
        replaced_value_float=float("nan"),
    )
    g.finish(scope, container, out, operator)


class _Delegate:
    """``target`` with some attributes replaced."""

    def __init__(self, target: Any, **replaced: Any) -> None:
        self._target = target
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _IntFlagsContainer(_Delegate):
    """skl2onnx 1.20 writes HistGradientBoosting's leaves with ``missing = False`` among
    integer flags, which onnx >= 1.17 refuses in an ints attribute: store them as 0/1."""

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, list) and any(isinstance(v, bool | np.bool_) for v in value):
                attrs[key] = [int(v) for v in value]
        return self._target.add_node(*args, **attrs)


def _convert_hist_gb(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common._registration import get_converter

    fitted = operator.raw_operator.fitted
    convert = get_converter(f"Sklearn{type(fitted).__name__}")
    convert(scope, _Delegate(operator, raw_operator=fitted), _IntFlagsContainer(container))


# --------------------------------------------------------------------------- registry


@functools.cache
def register() -> None:
    """Register keel's converters with skl2onnx (once per process)."""
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"zipmap": [True, False, "columns"], "nocl": [True, False]}
    table: list[tuple[type, Any, Any, dict[str, Any] | None]] = [
        (AsFloat, _shape_float, _convert_as_float, None),
        (NullToNaN, _shape_same, _convert_null_to_nan, None),
        (Log1p, _shape_float, _convert_log1p, None),
        (Clip, _shape_float, _convert_clip, None),
        (Interactions, _shape_interactions, _convert_interactions, None),
        (_ImputerShim, _shape_same, _convert_imputer, None),
        (EncoderShim, shape_encoder, convert_encoder, None),
        (
            _HistGBClassifierShim,
            calculate_linear_classifier_output_shapes,
            _convert_hist_gb,
            {**classifier_options, "raw_scores": [True, False]},
        ),
        (_HistGBRegressorShim, calculate_linear_regressor_output_shapes, _convert_hist_gb, None),
        (
            LightGBMClassifierShim,
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            classifier_options,
        ),
        (LightGBMRegressorShim, calculate_linear_regressor_output_shapes, convert_lightgbm, None),
    ]
    for cls, shape, convert, options in table:
        alias = f"Keel{cls.__name__.strip('_')}"
        update_registered_converter(cls, alias, shape, convert, options=options)
