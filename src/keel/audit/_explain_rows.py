"""Rows in, checked: records, one dict, arrays or a DataFrame become the model's raw frame,
with errors that name the row and the field; and a fast encoder for one dict row.

:class:`RowEncoder` replays a fitted compiled transformer (``keel.features.compile_spec``)
on one dict in plain Python: imputers, one-hot and ordinal encoders, scalers, clip, log and
pass-through. A one-row pandas transform costs milliseconds, this costs microseconds.
Transformers it does not know make it decline (``None``), and the caller checks its first
answer against the transformer's own before trusting it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from keel.errors import InvalidInput

__all__ = ["RowEncoder", "check_row", "to_frame"]

NUMERIC = frozenset({"int", "float", "bool"})
Step = Callable[[list[Any]], list[Any]]


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _names(schema: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in schema]


def check_row(row: Any, schema: list[dict[str, Any]], where: str = "row") -> None:
    """Refuse a dict row with unknown or missing fields, or values of the wrong kind."""
    if not isinstance(row, Mapping):
        raise InvalidInput(
            f"{where}: expected an object of field -> value, got {type(row).__name__}"
        )
    names = _names(schema)
    for key in row:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInput(
                f"{where}: unknown field {key!r}{hint}; the model reads {', '.join(names)}"
            )
    for col in schema:
        name = col["name"]
        if name not in row:
            raise InvalidInput(
                f"{where}: field {name!r} is missing (give null for a missing value); "
                f"the model reads {', '.join(names)}"
            )
        _check_value(row[name], col, where)


def _check_value(v: Any, col: dict[str, Any], where: str) -> None:
    if _missing(v):
        return
    if col.get("type") in NUMERIC:
        if isinstance(v, bool | int | float | np.number) and not isinstance(v, np.datetime64):
            return
        raise InvalidInput(f"{where} field {col['name']!r}: expected a number, got {v!r}")
    if not isinstance(v, str):
        raise InvalidInput(f"{where} field {col['name']!r}: expected text, got {v!r}")


def to_frame(X: Any, schema: list[dict[str, Any]]) -> pd.DataFrame:
    """The model's raw input frame from a DataFrame, one dict, a list of dicts, or an array
    (rows of values in the model's input order)."""
    from keel.models import check_input_frame

    names = _names(schema)
    if isinstance(X, pd.DataFrame):
        return check_input_frame(X, schema)
    if isinstance(X, Mapping):
        X = [X]
    if isinstance(X, np.ndarray) or (isinstance(X, list) and X and not isinstance(X[0], Mapping)):
        arr = np.asarray(X, dtype=object)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            got = arr.shape[1] if arr.ndim == 2 else arr.shape
            raise InvalidInput(
                f"rows: expected {len(names)} values per row ({', '.join(names)}), got {got}"
            )
        X = [dict(zip(names, r, strict=True)) for r in arr.tolist()]
    if not isinstance(X, list) or not X:
        raise InvalidInput(
            f"rows: expected a DataFrame, a dict or a non-empty list of dicts, got "
            f"{type(X).__name__ if not isinstance(X, list) else 'an empty list'}"
        )
    for i, row in enumerate(X):
        check_row(row, schema, f"row {i}")
    data: dict[str, Any] = {}
    for col in schema:
        values = [row[col["name"]] for row in X]
        if col.get("type") in NUMERIC:
            data[col["name"]] = np.asarray(
                [np.nan if _missing(v) else float(v) for v in values], dtype=np.float64
            )
        else:
            data[col["name"]] = pd.Series(
                [None if _missing(v) else v for v in values], dtype=object
            )
    return pd.DataFrame(data)


class RowEncoder:
    """One dict row to the transformer's output row, without pandas (see module doc)."""

    def __init__(self, transformer: Any) -> None:
        self.parts = _compile(transformer)
        self.width = len(transformer.get_feature_names_out()) if self.parts is not None else 0

    def encode(self, row: Mapping[str, Any]) -> np.ndarray | None:
        if self.parts is None:
            return None
        out: list[Any] = []
        for columns, steps in self.parts:
            values = [row[c] for c in columns]
            for step in steps:
                values = step(values)
            out.extend(values)
        return np.asarray(out, dtype=np.float64).reshape(1, -1)


def _compile(transformer: Any) -> list[tuple[list[str], list[Step]]] | None:
    if isinstance(transformer, Pipeline):
        if len(transformer.steps) != 1:
            return None
        transformer = transformer.steps[0][1]
    remainder = getattr(transformer, "remainder", "drop")
    if not hasattr(transformer, "transformers_") or not (
        isinstance(remainder, str) and remainder == "drop"
    ):
        return None
    names_in = list(getattr(transformer, "feature_names_in_", []))
    parts = []
    for _, part, cols in transformer.transformers_:
        cols = [cols] if isinstance(cols, str) else list(cols)
        cols = [names_in[c] if isinstance(c, int | np.integer) else c for c in cols]
        if isinstance(part, str):
            if part == "drop" or not cols:
                continue
            return None
        ests = [s for _, s in part.steps] if isinstance(part, Pipeline) else [part]
        steps = [_step(e) for e in ests]
        known = [s for s in steps if s is not None]
        if len(known) != len(steps):
            return None
        parts.append(([str(c) for c in cols], known))
    return parts


def _step(est: Any) -> Step | None:  # noqa: PLR0911 - one branch per known transformer
    kind = type(est).__name__
    if kind == "NullToNaN":
        return lambda vs: [math.nan if _missing(v) else v for v in vs]
    if kind == "AsFloat":
        return lambda vs: [math.nan if _missing(v) else float(v) for v in vs]
    if kind == "SimpleImputer":
        return _imputer(est)
    if kind == "Log1p":
        return lambda vs: [math.nan if _missing(v) else math.log1p(max(float(v), 0.0)) for v in vs]
    if kind == "Clip":
        lo = -math.inf if est.lower is None else float(est.lower)
        hi = math.inf if est.upper is None else float(est.upper)
        return lambda vs: [v if _missing(v) else min(max(float(v), lo), hi) for v in vs]
    if isinstance(est, StandardScaler | RobustScaler):
        return _affine(est)
    if isinstance(est, MinMaxScaler):
        if est.clip:
            return None
        return lambda vs: list(np.asarray(vs, dtype=np.float64) * est.scale_ + est.min_)
    if isinstance(est, OneHotEncoder):
        return _onehot(est)
    if isinstance(est, OrdinalEncoder):
        return _ordinal(est)
    return None


def _imputer(est: Any) -> Step | None:
    mv = est.missing_values
    if not (mv is None or (isinstance(mv, float) and math.isnan(mv))) or est.add_indicator:
        return None
    stats = list(est.statistics_)
    numeric = np.asarray(est.statistics_).dtype.kind in "fiub"

    def impute(vs: list[Any]) -> list[Any]:
        out = [stats[i] if _missing(v) else v for i, v in enumerate(vs)]
        return [float(v) for v in out] if numeric else out

    return impute


def _affine(est: Any) -> Step:
    center = getattr(est, "mean_", None) if isinstance(est, StandardScaler) else est.center_
    if isinstance(est, StandardScaler) and not est.with_mean:
        center = None
    scale = est.scale_

    def affine(vs: list[Any]) -> list[Any]:
        x = np.asarray(vs, dtype=np.float64)
        if center is not None:
            x = x - center
        if scale is not None:
            x = x / scale
        return list(x)

    return affine


def _category_maps(categories: list[np.ndarray]) -> list[tuple[dict[Any, int], int | None]]:
    maps = []
    for cats in categories:
        lookup: dict[Any, int] = {}
        nan_at = None
        for i, c in enumerate(cats.tolist()):
            if _missing(c):
                nan_at = i
            else:
                lookup[c] = i
        maps.append((lookup, nan_at))
    return maps


def _onehot(est: Any) -> Step | None:
    infrequent = est.min_frequency is not None or est.max_categories is not None
    infrequent = infrequent or getattr(est, "_infrequent_enabled", False)
    if infrequent or est.drop_idx_ is not None or est.handle_unknown == "error":
        return None
    maps = _category_maps(est.categories_)
    sizes = [len(c) for c in est.categories_]

    def onehot(vs: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v, (lookup, nan_at), size in zip(vs, maps, sizes, strict=True):
            block = [0.0] * size
            at = nan_at if _missing(v) else lookup.get(v)
            if at is not None:
                block[at] = 1.0
            out.extend(block)
        return out

    return onehot


def _ordinal(est: Any) -> Step | None:
    if est.handle_unknown != "use_encoded_value":
        return None
    maps = _category_maps(est.categories_)
    unknown = float(est.unknown_value)
    missing = float(est.encoded_missing_value)

    def ordinal(vs: list[Any]) -> list[Any]:
        out = []
        for v, (lookup, _) in zip(vs, maps, strict=True):
            if _missing(v):
                out.append(missing)
            else:
                at = lookup.get(v)
                out.append(unknown if at is None else float(at))
        return out

    return ordinal
