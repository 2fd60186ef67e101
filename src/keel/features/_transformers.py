"""Small scikit-learn transformers that the feature ops need and sklearn lacks.

Each is plain on purpose: constructors store configuration only, learned state ends in
``_``, ``fit`` returns ``self``, no lambdas. That keeps them loadable by skops from an
explicit list of trusted types (see ``keel.features.TRUSTED_TYPES``) and gives the ONNX
exporter one small converter to write per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from keel.errors import InvalidInput

__all__ = ["DATE_PARTS", "AsFloat", "Clip", "DateParts", "Interactions", "Log1p", "NullToNaN"]

DATE_PARTS: tuple[Literal["year", "month", "day", "dayofweek", "hour"], ...] = (
    "year",
    "month",
    "day",
    "dayofweek",
    "hour",
)
_DT_ATTRIBUTE = {"dayofweek": "day_of_week"}  # pandas deprecates .dt.dayofweek


def _input_names(est: BaseEstimator, input_features: Sequence[str] | None) -> list[str]:
    """The input column names, from ``input_features``, what ``fit`` saw, or x0, x1, ..."""
    check_is_fitted(est, "n_features_in_")
    n = est.n_features_in_
    if input_features is not None:
        names = [str(f) for f in input_features]
        if len(names) != n:
            raise InvalidInput(f"input_features has {len(names)} names; expected {n}")
        return names
    seen = getattr(est, "feature_names_in_", None)
    if seen is not None:
        return [str(f) for f in seen]
    return [f"x{i}" for i in range(n)]


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X, dtype=object)
    return pd.DataFrame(array.reshape(len(array), -1))


def _column_name(est: BaseEstimator, j: int, columns: Sequence[str] | None = None) -> str:
    if columns is not None and j < len(columns):
        return str(columns[j])
    seen = getattr(est, "feature_names_in_", None)
    return str(seen[j]) if seen is not None else f"input column {j}"


class _NumericTransformer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Shared input checks for the float-in, float-out transformers."""

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        return validate_data(
            self, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan", copy=False
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class Log1p(_NumericTransformer):
    """``log(1 + x)``. ``fit`` refuses negative values, naming the column and the value;
    ``transform`` floors values at 0 so that serving and ONNX give the same answer.

    ``columns`` are the raw column names, used only in error messages (inside a pipeline
    the names are gone by the time this step runs).
    """

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> Log1p:
        values = self._validate(X, reset=True)
        negative = values < 0
        if negative.any():
            row, j = np.argwhere(negative)[0]
            name = _column_name(self, int(j), self.columns)
            raise InvalidInput(
                f"Negative values in data for the log step: column {name!r} has "
                f"{values[row, j]:g} (row {row}); log1p needs values >= 0: add a clip step "
                "with lower: 0 before it, or remove the log step for this column"
            )
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        values = self._validate(X, reset=False)
        return np.log1p(np.maximum(values, 0.0))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags


class Clip(_NumericTransformer):
    """Clip values to ``[lower, upper]``; either bound may be None. NaN stays NaN."""

    def __init__(self, lower: float | None = None, upper: float | None = None) -> None:
        self.lower = lower
        self.upper = upper

    def fit(self, X: Any, y: Any = None) -> Clip:
        self._validate(X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        values = self._validate(X, reset=False)
        low = -np.inf if self.lower is None else self.lower
        high = np.inf if self.upper is None else self.upper
        return np.clip(values, low, high)


class Interactions(TransformerMixin, BaseEstimator):
    """Pairwise products of the input columns, named ``a*b``, in ``combinations`` order."""

    def fit(self, X: Any, y: Any = None) -> Interactions:
        values = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        if values.shape[1] < 2:
            raise InvalidInput(
                f"interact needs at least 2 columns; got {values.shape[1]} feature(s)"
            )
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        values = validate_data(
            self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan"
        )
        pairs = list(combinations(range(values.shape[1]), 2))
        out = np.empty((values.shape[0], len(pairs)), dtype=np.float64)
        for k, (i, j) in enumerate(pairs):
            np.multiply(values[:, i], values[:, j], out=out[:, k])
        return out

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        names = _input_names(self, input_features)
        return np.asarray([f"{a}*{b}" for a, b in combinations(names, 2)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _parse_dates(column: pd.Series, name: str) -> pd.Series:
    if is_datetime64_any_dtype(column):
        return column
    if is_numeric_dtype(column) and not is_bool_dtype(column) and column.isna().all():
        return pd.Series(pd.NaT, index=column.index, dtype="datetime64[s]")
    if is_numeric_dtype(column):
        raise InvalidInput(
            f"date_parts: column {name!r} holds numbers ({column.dtype}); "
            "expected datetimes or ISO 8601 strings"
        )
    values = column.astype(object)
    try:
        return pd.to_datetime(values, format="ISO8601")
    except ValueError as exc:
        if "Mixed timezones" in str(exc):
            return pd.to_datetime(values, format="ISO8601", utc=True)
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
        bad = values[parsed.isna() & values.notna()]
        shown = bad.iloc[0] if len(bad) else "?"
        raise InvalidInput(
            f"date_parts: column {name!r} has {shown!r}, which is not a datetime; "
            "expected an ISO 8601 string such as '2024-05-06' or '2024-05-06T13:45:00'"
        ) from None


class DateParts(TransformerMixin, BaseEstimator):
    """Calendar parts (year, month, day, dayofweek with Monday=0, hour) of datetime or
    ISO 8601 string columns, as floats; a missing date gives NaN parts. Strings with
    different UTC offsets are converted to UTC first."""

    def __init__(self, parts: Sequence[str] = DATE_PARTS) -> None:
        self.parts = parts

    def fit(self, X: Any, y: Any = None) -> DateParts:
        unknown = [p for p in self.parts if p not in DATE_PARTS]
        if unknown or not self.parts:
            raise InvalidInput(
                f"date_parts: parts {list(self.parts)!r}; expected some of {DATE_PARTS}"
            )
        validate_data(self, X, skip_check_array=True)
        self.transform(X)  # refuse unparseable values now rather than at serving time
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        validate_data(self, X, skip_check_array=True, reset=False)
        frame = _as_frame(X)
        blocks = []
        for j, label in enumerate(frame.columns):
            dates = _parse_dates(frame[label], _column_name(self, j))
            for part in self.parts:
                values = getattr(dates.dt, _DT_ATTRIBUTE.get(part, part))
                blocks.append(values.to_numpy(dtype=np.float64, na_value=np.nan))
        if not blocks:
            return np.empty((len(frame), 0), dtype=np.float64)
        return np.column_stack(blocks)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        names = _input_names(self, input_features)
        return np.asarray([f"{n}_{p}" for n in names for p in self.parts], dtype=object)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _column_to_float(column: pd.Series, name: str) -> np.ndarray:
    if not (is_numeric_dtype(column) or is_bool_dtype(column)):
        try:
            column = pd.Series(pd.to_numeric(column.astype(object), errors="raise"))
        except (TypeError, ValueError):
            bad = next((v for v in column.dropna() if not _is_number(v)), "?")
            raise InvalidInput(
                f"column {name!r} has {bad!r}; expected a number or a bool "
                "(passthrough keeps values as they are: encode text with onehot or ordinal)"
            ) from None
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


class AsFloat(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Pass columns through unchanged as float64 (bool becomes 0/1, None becomes NaN),
    so the compiled transformer always returns one float64 array."""

    def fit(self, X: Any, y: Any = None) -> AsFloat:
        validate_data(self, X, skip_check_array=True)
        self.transform(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        validate_data(self, X, skip_check_array=True, reset=False)
        if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
            return X.astype(np.float64).reshape(len(X), -1)
        frame = _as_frame(X)
        columns = [
            _column_to_float(frame[label], _column_name(self, j))
            for j, label in enumerate(frame.columns)
        ]
        if not columns:
            return np.empty((len(frame), 0), dtype=np.float64)
        return np.column_stack(columns)


class NullToNaN(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Turn None and pd.NA in text columns into NaN, which is the one missing marker that
    SimpleImputer and the encoders recognise. All-numeric input passes unchanged; other
    input comes back as an object array."""

    def fit(self, X: Any, y: Any = None) -> NullToNaN:
        validate_data(self, X, skip_check_array=True)
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "n_features_in_")
        validate_data(self, X, skip_check_array=True, reset=False)
        if isinstance(X, pd.DataFrame):
            if all(is_numeric_dtype(t) or is_bool_dtype(t) for t in X.dtypes):
                return X
            values = X.to_numpy(dtype=object, copy=True)
        else:
            values = np.asarray(X)
            if values.dtype.kind != "O":
                return values
            values = values.copy()
        values[pd.isna(values)] = np.nan
        return values
