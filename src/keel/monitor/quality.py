"""Data-quality checks of a current window against a :class:`~keel.monitor.drift.Reference`.

::

    report = quality_report(ref, window_df)
    report["columns"]["age"]["out_of_range"], report["columns_with_issues"]

Per column, with counts and rates (a rate is a share of the window's rows):

* ``nulls`` / ``null_rate``, the reference's ``reference_null_rate`` and ``null_rate_change``;
* ``type_errors`` / ``type_error_rate``: values that are not of the column's type — text,
  booleans or other objects in a numeric column, a fraction in an integer one, numbers or
  objects in a text column — with up to three ``type_error_examples``;
* numeric columns: ``below_min``, ``above_max`` (against the reference's range, infinities
  included), ``out_of_range`` / ``out_of_range_rate``;
* categorical columns: ``unseen`` / ``unseen_rate``, values the reference never had, and the
  most frequent of them in ``unseen_values``;
* ``issues``: the names of the checks that failed — ``null_rate_up`` (the null rate rose by more
  than ``null_tolerance``), ``type_errors``, ``out_of_range``, ``unseen_categories``.

Unlike :func:`~keel.monitor.drift.drift_report`, a bad value is counted, not raised; a
reference column absent from the window is listed in ``missing_columns``. Values shown
(unseen categories, examples, extra column names) are cut to 64 characters and their lists
are short (10 unseen categories, 3 examples, 20 extra columns), so a report's size does not
depend on what requests carried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.monitor._drift_ref import (
    CategoricalColumn,
    NumericColumn,
    Reference,
    shorten,
)

__all__ = ["QUALITY_VERSION", "quality_report"]

QUALITY_VERSION = 1
EXAMPLES = 3
UNSEEN_SHOWN = 10
EXTRA_SHOWN = 20


def quality_report(
    reference: Reference,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    null_tolerance: float = 0.05,
) -> dict[str, Any]:
    """Quality of ``current`` against ``reference`` as JSON-able data: ``{"version", "rows",
    "columns": {name: checks}, "missing_columns", "n_missing_columns", "extra_columns",
    "columns_with_issues", "n_columns_with_issues"}`` (the counts are what alert rules can
    address). ``columns``: the columns to check (default: every reference column; a
    monitoring pass passes the served model's inputs, so a training target is not one)."""
    if not isinstance(reference, Reference):
        raise InvalidInput(f"reference: expected a Reference, got {type(reference).__name__}")
    if not isinstance(current, pd.DataFrame):
        raise InvalidInput(f"current window: expected a DataFrame, got {type(current).__name__}")
    if len(current) == 0:
        raise InvalidInput("current window has no rows; nothing to check")
    if not 0 <= null_tolerance <= 1:
        raise InvalidInput(f"null_tolerance: expected a share in [0, 1], got {null_tolerance!r}")
    names = list(reference.columns) if columns is None else list(columns)
    for name in names:
        reference.column(name)
    missing = [n for n in names if n not in current.columns]
    checks = {
        n: _check(reference.columns[n], current[n], null_tolerance)
        for n in names
        if n in current.columns
    }
    issues = [*missing, *(n for n, c in checks.items() if c["issues"])]
    extra = [c for c in current.columns if c not in reference.columns]
    return {
        "version": QUALITY_VERSION,
        "rows": len(current),
        "columns": checks,
        "missing_columns": missing,
        "n_missing_columns": len(missing),
        "extra_columns": [shorten(str(c)) for c in extra[:EXTRA_SHOWN]],
        "n_extra_columns": len(extra),
        "columns_with_issues": issues,
        "n_columns_with_issues": len(issues),
    }


def _check(
    ref: NumericColumn | CategoricalColumn, s: pd.Series, null_tolerance: float
) -> dict[str, Any]:
    n = len(s)
    null = s.isna().to_numpy()
    nulls = int(null.sum())
    ref_rate = ref.nulls / ref.rows if ref.rows else 0.0
    out: dict[str, Any] = {
        "kind": ref.kind,
        "type": ref.type,
        "rows": n,
        "nulls": nulls,
        "null_rate": nulls / n,
        "reference_null_rate": ref_rate,
        "null_rate_change": nulls / n - ref_rate,
    }
    ok, values = _typed(ref, s, null)
    bad = ~ok & ~null
    errors = int(bad.sum())
    examples = [shorten(repr(v)) for v in s[bad].head(EXAMPLES).tolist()] if errors else []
    out |= {"type_errors": errors, "type_error_rate": errors / n, "type_error_examples": examples}
    if isinstance(ref, NumericColumn):
        out |= _range(ref, values, n)
    else:
        out |= _unseen(ref, values, n)
    issues = []
    if out["null_rate_change"] > null_tolerance:
        issues.append("null_rate_up")
    if errors:
        issues.append("type_errors")
    if out.get("out_of_range"):
        issues.append("out_of_range")
    if out.get("unseen"):
        issues.append("unseen_categories")
    out["issues"] = issues
    return out


def _typed(
    ref: NumericColumn | CategoricalColumn, s: pd.Series, null: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A mask of the values of the right type, and those values (numbers as float64,
    categories as text)."""
    dt = s.dtype
    want = "number" if isinstance(ref, NumericColumn) else ref.type
    if want == "number":
        if pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt):
            x = s.to_numpy(dtype=np.float64, na_value=np.nan)
            ok = ~null
        else:
            ok = _each(s, null, lambda v: _is_number(v))
            x = np.full(len(s), np.nan)
            x[ok] = np.array(s[ok].tolist(), dtype=np.float64)
        if ref.type == "int":
            frac = ok & np.isfinite(x) & (x != np.floor(np.nan_to_num(x)))
            ok = ok & ~frac
        return ok, x[ok]
    if want == "bool":
        if pd.api.types.is_bool_dtype(dt):
            ok = ~null
        else:
            ok = _each(s, null, lambda v: isinstance(v, bool | np.bool_))
    elif want in ("int", "float"):  # an integer column declared categorical
        ok = _each(s, null, lambda v: _is_number(v))
    elif pd.api.types.is_string_dtype(dt) and not pd.api.types.is_object_dtype(dt):
        ok = ~null
    elif isinstance(dt, pd.CategoricalDtype):
        ok = ~null
    else:
        ok = _each(s, null, lambda v: isinstance(v, str))
    return ok, s[ok].astype(str).to_numpy(dtype=object)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def _each(s: pd.Series, null: np.ndarray, ok: Any) -> np.ndarray:
    values = s.to_numpy(dtype=object)
    return np.fromiter((ok(v) for v in values), dtype=bool, count=len(values)) & ~null


def _range(ref: NumericColumn, x: np.ndarray, n: int) -> dict[str, Any]:
    lo = ref.min if ref.min is not None else np.inf
    hi = ref.max if ref.max is not None else -np.inf
    below = int(np.count_nonzero(x < lo))
    above = int(np.count_nonzero(x > hi))
    return {
        "min": ref.min,
        "max": ref.max,
        "non_finite": int(np.count_nonzero(~np.isfinite(x))),
        "below_min": below,
        "above_max": above,
        "out_of_range": below + above,
        "out_of_range_rate": (below + above) / n,
    }


def _unseen(ref: CategoricalColumn, values: np.ndarray, n: int) -> dict[str, Any]:
    vc = pd.Series(values, dtype=object).value_counts()
    new = vc[[k not in ref.counts for k in vc.index]]
    unseen = int(new.sum())
    shown: dict[str, int] = {}
    for k, v in new.head(UNSEEN_SHOWN).items():  # two long values may share their start
        key = shorten(str(k))
        shown[key] = shown.get(key, 0) + int(v)
    return {"unseen": unseen, "unseen_rate": unseen / n, "unseen_values": shown}
