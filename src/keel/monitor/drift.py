"""Drift of a current window against a :class:`Reference`, per feature and for the dataset.

::

    ref = Reference.from_frame(train_df)                     # or Reference.from_dataset(...)
    report = drift_report(ref, window_df)
    report["share"], report["features"]["age"]["drift"]

Per feature, the tests that suit its type run (overridable with ``tests``):

=============  ====================================  ==========================================
kind           tests (default threshold)             primary test, which sets ``drift``
=============  ====================================  ==========================================
numeric        ``ks`` (p < 0.05), ``wasserstein``    ``wasserstein`` when both samples have more
               (W / reference std >= 0.1), ``psi``   than 1,000 values, else ``ks``
               (>= 0.2)
categorical    ``chisquare`` (p < 0.05),             ``jensenshannon`` when both samples have
               ``jensenshannon`` (>= 0.1, base 2),   more than 1,000 values, else ``chisquare``
               ``psi`` (>= 0.2)
=============  ====================================  ==========================================

The primary test is a distance on large samples because a p-value there flags differences
too small to matter (with a million rows a shift of a hundredth of a standard deviation is
"significant"), and a p-value on small ones, where distances are noisy. ``tests={"age":
["psi", "ks"]}`` runs those on ``age`` with the first as primary; ``psi``, ``chisquare`` and
``jensenshannon`` also run on numeric columns over the reference's decile bins.

Each result is ``{"test", "statistic", "p_value" (None where a test has none), "threshold",
"drift"}``; ``wasserstein`` adds ``"normalized"`` (W divided by the reference's standard
deviation, or by 1 when the reference is constant), which its threshold applies to. The
statistics equal SciPy's (see ``keel.monitor._stats``). The report is plain JSON data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.monitor import _stats
from keel.monitor._drift_ref import (
    CategoricalColumn,
    NumericColumn,
    Reference,
    category_counts,
    numeric_values,
)
from keel.monitor._stats import chisquare, jensenshannon, ks_2samp, psi, wasserstein

__all__ = [
    "REPORT_VERSION",
    "TESTS",
    "Reference",
    "StatTest",
    "chisquare",
    "drift_report",
    "jensenshannon",
    "ks_2samp",
    "psi",
    "wasserstein",
]

REPORT_VERSION = 1
SMALL_SAMPLE = 1_000  # at most this many values on either side: the p-value test is primary
SHARE_THRESHOLD = 0.5  # the dataset drifts when at least this share of its features does


@dataclass(frozen=True)
class StatTest:
    """One drift test as data: which column kinds it applies to, and whether its threshold
    bounds the p-value (drift when below) or the statistic (drift when at or above)."""

    name: str
    kinds: tuple[str, ...]
    compares: str  # "p_value" or "statistic"
    threshold: float
    about: str


TESTS: dict[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("ks", ("numeric",), "p_value", 0.05, "two-sample Kolmogorov-Smirnov"),
        StatTest("wasserstein", ("numeric",), "statistic", 0.1, "Wasserstein-1 / reference std"),
        StatTest("psi", ("numeric", "categorical"), "statistic", 0.2, "population stability"),
        StatTest(
            "chisquare", ("numeric", "categorical"), "p_value", 0.05, "chi-square homogeneity"
        ),
        StatTest(
            "jensenshannon", ("numeric", "categorical"), "statistic", 0.1, "JS distance, base 2"
        ),
    )
}
DEFAULT_TESTS = {
    "numeric": ("wasserstein", "ks", "psi"),
    "categorical": ("jensenshannon", "chisquare", "psi"),
}
SMALL_PRIMARY = {"numeric": "ks", "categorical": "chisquare"}


def drift_report(
    reference: Reference,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    tests: Mapping[str, str | Sequence[str]] | None = None,
    thresholds: Mapping[str, float | Mapping[str, float]] | None = None,
    prediction: Mapping[str, str] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Drift of ``current`` against ``reference``, as JSON-able data.

    ``columns``: the features (default: every reference column but the prediction ones).
    ``tests``: per column, a test name or a list of them, the first being primary.
    ``thresholds``: by test name (``{"psi": 0.25}``), per column (``{"age": {"ks": 0.01}}``),
    and ``"share"`` for the dataset flag (default 0.5). ``prediction``: prediction columns
    (``{"score": "score", "label": "prediction"}`` or a list of names), tested like features
    and reported under ``"prediction"`` by role, outside the share.

    Returns ``{"version", "rows": {"reference", "current"}, "features": {name: result},
    "n_features", "n_drifted", "drifted", "share", "share_threshold", "dataset_drift",
    "skipped": {name: reason}, "prediction": {role: result}}``; a result is the primary test's
    fields plus ``"kind"``, ``"values"`` (non-missing current values tested) and ``"tests"``
    (every test run). A column with no value in the window is skipped, not flagged: the
    quality report shows it.
    """
    if not isinstance(reference, Reference):
        raise InvalidInput(f"reference: expected a Reference, got {type(reference).__name__}")
    if not isinstance(current, pd.DataFrame):
        raise InvalidInput(f"current window: expected a DataFrame, got {type(current).__name__}")
    if len(current) == 0:
        raise InvalidInput("current window has no rows; nothing to compare with the reference")
    roles = _roles(prediction)
    names = _columns(reference, current, columns, set(roles.values()))
    for col in roles.values():
        _check_present(reference, current, col)
    plan = _plan(reference, [*names, *roles.values()], tests or {})
    limits, share_threshold = _thresholds(thresholds or {}, reference)

    features, skipped = {}, {}
    for name in names:
        result = _column_drift(reference.columns[name], current[name], plan[name], limits)
        if "skipped" in result:
            skipped[name] = result["skipped"]
        else:
            features[name] = result
    drifted = [n for n, r in features.items() if r["drift"]]
    share = len(drifted) / len(features) if features else 0.0
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "rows": {"reference": reference.rows, "current": len(current)},
        "features": features,
        "n_features": len(features),
        "n_drifted": len(drifted),
        "drifted": drifted,
        "share": share,
        "share_threshold": share_threshold,
        "dataset_drift": bool(features) and share >= share_threshold,
        "skipped": skipped,
    }
    if roles:
        report["prediction"] = {
            role: _column_drift(reference.columns[col], current[col], plan[col], limits)
            | {"column": col}
            for role, col in roles.items()
        }
    return report


def _roles(prediction: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    if prediction is None:
        return {}
    if isinstance(prediction, str):
        return {prediction: prediction}
    if isinstance(prediction, Mapping):
        return {str(k): str(v) for k, v in prediction.items()}
    return {str(c): str(c) for c in prediction}


def _check_present(reference: Reference, current: pd.DataFrame, name: str) -> None:
    reference.column(name)
    if name not in current.columns:
        raise InvalidInput(f"column {name!r} is missing from the current window")


def _columns(
    reference: Reference, current: pd.DataFrame, columns: Sequence[str] | None, exclude: set
) -> list[str]:
    if isinstance(columns, str):
        columns = [columns]
    names = [c for c in reference.columns if c not in exclude] if columns is None else columns
    for name in names:
        _check_present(reference, current, name)
    return list(names)


def _plan(
    reference: Reference, names: Sequence[str], tests: Mapping[str, str | Sequence[str]]
) -> dict[str, tuple[str, ...] | None]:
    """Per column the tests asked for (None: the defaults, primary chosen by size)."""
    for name in tests:
        if name not in names:
            raise InvalidInput(f"tests: column {name!r} is not among the columns tested")
    plan: dict[str, tuple[str, ...] | None] = {}
    for name in names:
        asked = tests.get(name)
        if asked is None:
            plan[name] = None
            continue
        chosen = (asked,) if isinstance(asked, str) else tuple(asked)
        if not chosen:
            raise InvalidInput(f"tests for column {name!r}: expected at least one test name")
        kind = reference.columns[name].kind
        for t in chosen:
            if t not in TESTS:
                raise InvalidInput(
                    f"tests for column {name!r}: unknown test {t!r}; known: {', '.join(TESTS)}"
                )
            if kind not in TESTS[t].kinds:
                raise InvalidInput(f"tests for column {name!r}: {t} does not apply to {kind} data")
        plan[name] = chosen
    return plan


def _thresholds(
    given: Mapping[str, float | Mapping[str, float]], reference: Reference
) -> tuple[dict[tuple[str | None, str], float], float]:
    limits: dict[tuple[str | None, str], float] = {(None, n): t.threshold for n, t in TESTS.items()}
    share = SHARE_THRESHOLD
    for key, value in given.items():
        if isinstance(value, Mapping):
            reference.column(key)
            for test, v in value.items():
                limits[(key, _test_name(test, f"thresholds for column {key!r}"))] = _num(v, key)
        elif key == "share":
            share = _num(value, key)
        else:
            limits[(None, _test_name(key, "thresholds"))] = _num(value, key)
    return limits, share


def _test_name(name: str, where: str) -> str:
    if name not in TESTS:
        raise InvalidInput(f"{where}: unknown test {name!r}; known: {', '.join(TESTS)}")
    return name


def _num(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise InvalidInput(f"thresholds[{key!r}]: expected a finite number, got {value!r}")
    return float(value)


def _column_drift(
    ref: NumericColumn | CategoricalColumn,
    series: pd.Series,
    chosen: tuple[str, ...] | None,
    limits: Mapping[tuple[str | None, str], float],
) -> dict[str, Any]:
    if isinstance(ref, NumericColumn):
        values = numeric_values(series, ref.name)
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if len(values) == 0 or ref.ecdf.n == 0:
            side = "the current window" if len(values) == 0 else "the reference"
            return {"skipped": f"no finite value in {side}"}
        raw = _numeric_stats(ref, _stats.Ecdf.of(values), chosen)
        n_ref, n_cur = ref.ecdf.n, len(values)
    else:
        keys, counts = category_counts(series, ref.name, allow_numbers=True)
        if len(keys) == 0 or not ref.counts:
            side = "the current window" if len(keys) == 0 else "the reference"
            return {"skipped": f"no value in {side}"}
        raw = _categorical_stats(ref, keys, counts, chosen)
        n_ref, n_cur = sum(ref.counts.values()), int(counts.sum())
    if chosen is None:
        chosen = DEFAULT_TESTS[ref.kind]
        if min(n_ref, n_cur) <= SMALL_SAMPLE:
            chosen = (SMALL_PRIMARY[ref.kind], *(t for t in chosen if t != SMALL_PRIMARY[ref.kind]))
    results = {t: _judge(t, raw[t], limits.get((ref.name, t), limits[(None, t)])) for t in chosen}
    primary = results[chosen[0]]
    return {"kind": ref.kind, **primary, "values": n_cur, "tests": results}


def _numeric_stats(
    ref: NumericColumn, cur: _stats.Ecdf, chosen: tuple[str, ...] | None
) -> dict[str, dict[str, Any]]:
    want = set(chosen or DEFAULT_TESTS["numeric"])
    out: dict[str, dict[str, Any]] = {}
    if want & {"ks", "wasserstein"}:
        d, w = _stats.ks_and_wasserstein(ref.ecdf, cur)
        if "ks" in want:
            out["ks"] = {"statistic": d, "p_value": _stats._ks_pvalue(d, ref.ecdf, cur)}
        scale = ref.std if ref.std else 1.0
        out["wasserstein"] = {"statistic": w, "normalized": w / scale}
    if want & {"psi", "chisquare", "jensenshannon"}:
        r, c = ref.bin_counts(), cur.bin_counts(ref.edges)
        out |= _count_stats(r, c, want)
    return out


def _categorical_stats(
    ref: CategoricalColumn, keys: list[str], counts: np.ndarray, chosen: tuple[str, ...] | None
) -> dict[str, dict[str, Any]]:
    want = set(chosen or DEFAULT_TESTS["categorical"])
    order = list(ref.counts)
    known = set(order)
    order += sorted(k for k in keys if k not in known)
    index = {k: i for i, k in enumerate(order)}
    r = np.zeros(len(order), dtype=np.int64)
    r[: len(ref.counts)] = list(ref.counts.values())
    c = np.zeros(len(order), dtype=np.int64)
    c[[index[k] for k in keys]] = counts
    return _count_stats(r, c, want)


def _count_stats(r: np.ndarray, c: np.ndarray, want: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if "psi" in want:
        out["psi"] = {"statistic": _stats.psi(r, c)}
    if "chisquare" in want:
        stat, p, dof = _stats.chisquare(r, c)
        out["chisquare"] = {"statistic": stat, "p_value": p, "dof": dof}
    if "jensenshannon" in want:
        out["jensenshannon"] = {"statistic": _stats.jensenshannon(r, c)}
    return out


def _judge(name: str, raw: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    test = TESTS[name]
    p = raw.get("p_value")
    if test.compares == "p_value":
        drift = raw["p_value"] < threshold  # a test judged by its p-value reports one
    else:
        drift = raw.get("normalized", raw["statistic"]) >= threshold
    extra = {k: _clean(v) for k, v in raw.items() if k not in ("statistic", "p_value")}
    return {
        "test": name,
        "statistic": _clean(raw["statistic"]),
        "p_value": _clean(p),
        "threshold": threshold,
        "drift": bool(drift),
        **extra,
    }


def _clean(x: Any) -> Any:
    """Plain JSON numbers: NumPy scalars to Python, non-finite floats to None."""
    if x is None or isinstance(x, bool | int):
        return x
    if isinstance(x, np.integer):
        return int(x)
    x = float(x)
    return x if np.isfinite(x) else None
