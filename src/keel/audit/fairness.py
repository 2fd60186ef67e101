"""Fairness evidence: group metrics and the disparities between groups, with bootstrap
intervals.

Disparities (fairlearn's definitions, and equal to fairlearn's functions in tests):

* demographic parity: selection rates across groups, ``max - min`` and ``min / max``;
* equal opportunity: true positive rates, the same;
* equalized odds: the worse of the TPR and FPR disparities (``agg="worst_case"``: the larger
  difference, the smaller ratio) or their mean (``agg="mean"``);
* disparate impact: the lowest selection rate over the highest (the most-favoured group is the
  reference); the four-fifths rule passes when it is at least 0.8.

``method="to_overall"`` compares each group with the overall value instead, as fairlearn does.
Groups whose metric is undefined (NaN) are left out of the max and min, as pandas does.

Intervals are percentile bootstrap intervals. Every statistic here depends on the rows only
through the per-group confusion counts, so resampling ``n`` rows with replacement is done
exactly, and cheaply, by drawing those counts from a multinomial over the ``4 x groups``
cells (``n_boot`` draws of a few dozen numbers instead of ``n_boot`` passes over the rows).
A replicate where a group happens to vanish leaves that group out, like MetricFrame on the
resampled rows would. Max-minus-min statistics are biased upward near zero, so the interval of
a near-zero difference can lie above the estimate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.audit._groups import (
    GroupCodes,
    GroupMetrics,
    _columns,
    _py,
    binary_pair,
    check_lengths,
    encode_groups,
    group_key,
    metrics_from_codes,
    rates,
    scores_array,
)
from keel.errors import InvalidInput

__all__ = [
    "DISPARITIES",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "disparities",
    "disparate_impact_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "fairness_report",
]

DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "disparate_impact_ratio",
)
FOUR_FIFTHS = 0.8
SMALL_GROUP = 30  # groups with fewer rows are listed as small in the evidence
INTERSECTION = "+"  # "sex+race": no dots, so policy paths like fairness.sex+race.x stay parseable


# ---------------------------------------------------------------- NaN-skipping reductions


def _nanmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Max over ``axis`` ignoring NaN; NaN where all are NaN (no RuntimeWarning)."""
    nan = np.isnan(x)
    out = np.where(nan, -np.inf, x).max(axis=axis)
    return np.where(nan.all(axis=axis), np.nan, out)


def _nanmin(x: np.ndarray, axis: int = -1) -> np.ndarray:
    nan = np.isnan(x)
    out = np.where(nan, np.inf, x).min(axis=axis)
    return np.where(nan.all(axis=axis), np.nan, out)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with pandas' float semantics (0/0 -> NaN, x/0 -> inf), without warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num, dtype=np.float64) / np.asarray(den, dtype=np.float64)


def _difference(values: np.ndarray, overall: np.ndarray | None) -> np.ndarray:
    if overall is None:
        return _nanmax(values) - _nanmin(values)
    return _nanmax(np.abs(values - overall[..., None]))


def _ratio_of(values: np.ndarray, overall: np.ndarray | None) -> np.ndarray:
    if overall is None:
        return _ratio(_nanmin(values), _nanmax(values))
    r = _ratio(values, overall[..., None])
    with np.errstate(divide="ignore"):
        r = np.where(r > 1, 1.0 / np.where(r > 1, r, 1.0), r)
    return _nanmin(r)


def _pair(a: np.ndarray, b: np.ndarray, agg: str, larger: bool) -> np.ndarray:
    """Combine the TPR (``a``) and FPR (``b``) disparities. ``worst_case`` is Python's
    ``max``/``min`` over ``[a, b]`` as fairlearn computes it: NaN when ``a`` is NaN,
    ``a`` when only ``b`` is."""
    if agg == "worst_case":
        return np.where(b > a if larger else b < a, b, a)
    both = np.stack([a, b])
    valid = ~np.isnan(both)
    total = np.where(valid, both, 0.0).sum(axis=0)
    return _ratio(total, valid.sum(axis=0))  # pandas' mean skips NaN


def disparities(
    confusion: np.ndarray,
    *,
    method: str = "between_groups",
    agg: str = "worst_case",
    zero_division: float = np.nan,
) -> dict[str, np.ndarray]:
    """Every statistic in ``DISPARITIES`` from per-group confusion counts of shape
    ``(..., groups, 2, 2)``; leading axes (bootstrap replicates) are kept."""
    if method not in ("between_groups", "to_overall"):
        raise InvalidInput(f"method: expected 'between_groups' or 'to_overall', got {method!r}")
    if agg not in ("worst_case", "mean"):
        raise InvalidInput(f"agg: expected 'worst_case' or 'mean', got {agg!r}")
    r = rates(confusion, zero_division)
    over = rates(np.asarray(confusion).sum(axis=-3), zero_division)

    def ov(name: str) -> np.ndarray | None:
        return over[name] if method == "to_overall" else None

    tpr_d, fpr_d = _difference(r["tpr"], ov("tpr")), _difference(r["fpr"], ov("fpr"))
    tpr_r, fpr_r = _ratio_of(r["tpr"], ov("tpr")), _ratio_of(r["fpr"], ov("fpr"))
    return {
        "demographic_parity_difference": _difference(r["selection_rate"], ov("selection_rate")),
        "demographic_parity_ratio": _ratio_of(r["selection_rate"], ov("selection_rate")),
        "equalized_odds_difference": _pair(tpr_d, fpr_d, agg, larger=True),
        "equalized_odds_ratio": _pair(tpr_r, fpr_r, agg, larger=False),
        "equal_opportunity_difference": tpr_d,
        "equal_opportunity_ratio": tpr_r,
        # always between groups: the lowest selection rate over the most-favoured group's
        "disparate_impact_ratio": _ratio_of(r["selection_rate"], None),
    }


# ---------------------------------------------------------------- fairlearn-shaped functions


def _confusion(y_true: Any, y_pred: Any, sensitive_features: Any, pos_label: Any) -> np.ndarray:
    check_lengths(y_true=y_true, y_pred=y_pred)
    yt, yp = binary_pair(y_true, y_pred, pos_label)
    enc = encode_groups(sensitive_features)
    _same_length(enc, len(yt))
    return metrics_from_codes(enc, yt, yp, None).confusion


def _same_length(enc: GroupCodes, n: int) -> None:
    if len(enc.codes) != n:
        raise InvalidInput(
            f"sensitive_features: expected {n} rows (the length of y_true), got {len(enc.codes)}"
        )


def _one(
    name: str,
    y_true: Any,
    y_pred: Any,
    sensitive_features: Any,
    method: str,
    pos_label: Any,
    zero_division: float,
    agg: str = "worst_case",
) -> float:
    cm = _confusion(y_true, y_pred, sensitive_features, pos_label)
    d = disparities(cm, method=method, agg=agg, zero_division=zero_division)
    return float(d[name])


def demographic_parity_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    method: str = "between_groups",
    pos_label: Any = None,
) -> float:
    """Largest minus smallest group selection rate (fairlearn's function, vectorized)."""
    return _one(
        "demographic_parity_difference",
        y_true,
        y_pred,
        sensitive_features,
        method,
        pos_label,
        np.nan,
    )


def demographic_parity_ratio(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    method: str = "between_groups",
    pos_label: Any = None,
) -> float:
    """Smallest over largest group selection rate."""
    return _one(
        "demographic_parity_ratio", y_true, y_pred, sensitive_features, method, pos_label, np.nan
    )


def equalized_odds_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    method: str = "between_groups",
    agg: str = "worst_case",
    pos_label: Any = None,
    zero_division: float = np.nan,
) -> float:
    """The larger (or mean) of the TPR and FPR differences. ``zero_division=0.0`` gives
    fairlearn's value when a group has no positives or no negatives."""
    return _one(
        "equalized_odds_difference",
        y_true,
        y_pred,
        sensitive_features,
        method,
        pos_label,
        zero_division,
        agg,
    )


def equalized_odds_ratio(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    method: str = "between_groups",
    agg: str = "worst_case",
    pos_label: Any = None,
    zero_division: float = np.nan,
) -> float:
    """The smaller (or mean) of the TPR and FPR ratios."""
    return _one(
        "equalized_odds_ratio",
        y_true,
        y_pred,
        sensitive_features,
        method,
        pos_label,
        zero_division,
        agg,
    )


def equal_opportunity_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    method: str = "between_groups",
    pos_label: Any = None,
    zero_division: float = np.nan,
) -> float:
    """Largest minus smallest group TPR."""
    return _one(
        "equal_opportunity_difference",
        y_true,
        y_pred,
        sensitive_features,
        method,
        pos_label,
        zero_division,
    )


def equal_opportunity_ratio(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    method: str = "between_groups",
    pos_label: Any = None,
    zero_division: float = np.nan,
) -> float:
    """Smallest over largest group TPR."""
    return _one(
        "equal_opportunity_ratio",
        y_true,
        y_pred,
        sensitive_features,
        method,
        pos_label,
        zero_division,
    )


def disparate_impact_ratio(
    y_true: Any, y_pred: Any, *, sensitive_features: Any, pos_label: Any = None
) -> float:
    """Lowest group selection rate over the highest; the four-fifths rule wants >= 0.8."""
    return _one(
        "disparate_impact_ratio",
        y_true,
        y_pred,
        sensitive_features,
        "between_groups",
        pos_label,
        np.nan,
    )


# ---------------------------------------------------------------- bootstrap and the report


def bootstrap_confusion(confusion: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, groups, 2, 2)`` confusion counts of ``n_boot`` resamples of the rows with
    replacement, drawn exactly as multinomial counts over the cells."""
    cm = np.asarray(confusion, dtype=np.int64)
    n = int(cm.sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, cm.ravel() / n, size=n_boot)
    return draws.reshape(n_boot, *cm.shape)


def interval(replicates: np.ndarray, confidence: float) -> dict[str, Any]:
    """Percentile interval of the finite replicates (NaN ones are counted and left out)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return {"ci_low": None, "ci_high": None, "n_valid": 0}
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return {"ci_low": float(low), "ci_high": float(high), "n_valid": int(finite.size)}


def _check_settings(n_boot: int, confidence: float, seed: Any) -> None:
    if not isinstance(n_boot, int | np.integer) or isinstance(n_boot, bool) or n_boot < 0:
        raise InvalidInput(f"n_boot: expected a whole number >= 0, got {n_boot!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise InvalidInput(f"confidence: expected a number between 0 and 1, got {confidence!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise InvalidInput(f"seed: expected an integer, got {seed!r}")


def _feature_evidence(
    gm: GroupMetrics,
    *,
    n_boot: int,
    confidence: float,
    seed: int,
    method: str,
    agg: str,
    four_fifths: float,
) -> dict[str, Any]:
    point = disparities(gm.confusion, method=method, agg=agg, zero_division=gm.zero_division)
    boot = (
        disparities(
            bootstrap_confusion(gm.confusion, n_boot, seed),
            method=method,
            agg=agg,
            zero_division=gm.zero_division,
        )
        if n_boot
        else None
    )
    out: dict[str, Any] = {}
    for name in DISPARITIES:
        entry: dict[str, Any] = {"value": _py(float(point[name]))}
        if boot is not None:
            entry.update(interval(boot[name], confidence))
        out[name] = entry
    sr = gm.metrics["selection_rate"]
    ref = int(np.argmax(np.where(np.isnan(sr), -np.inf, sr)))
    impact = _ratio(sr, sr[ref])
    keys = [group_key(lab) for lab in gm.labels]
    di = point["disparate_impact_ratio"]
    evidence = gm.to_dict()
    evidence["disparities"] = out
    counts = gm.metrics["count"]
    evidence["small_groups"] = {  # too few rows for their rates to mean much
        "min_rows": SMALL_GROUP,
        "groups": [k for k, c in zip(keys, counts, strict=True) if int(c) < SMALL_GROUP],
    }
    evidence["four_fifths_rule"] = {
        "threshold": four_fifths,
        "passed": bool(di >= four_fifths) if np.isfinite(di) else None,
        "reference_group": keys[ref],
        "impact_ratios": {k: _py(float(v)) for k, v in zip(keys, impact, strict=True)},
        "failing_groups": [k for k, v in zip(keys, impact, strict=True) if v < four_fifths],
    }
    return evidence


def fairness_report(
    y_true: Any,
    y_pred: Any,
    sensitive_features: Any,
    *,
    scores: Any = None,
    pos_label: Any = None,
    intersectional: bool = True,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "between_groups",
    agg: str = "worst_case",
    zero_division: float = np.nan,
    missing: str = "error",
    four_fifths: float = FOUR_FIFTHS,
) -> dict[str, Any]:
    """Fairness evidence for each sensitive column and (with two or more, when
    ``intersectional``) their intersection, keyed ``"sex"``, ``"race"``, ``"sex+race"``: the
    group table, every disparity with its bootstrap interval, and the four-fifths rule.
    Plain JSON-ready dict (undefined values are None); records seeds and sizes."""
    _check_settings(n_boot, confidence, seed)
    check_lengths(y_true=y_true, y_pred=y_pred, scores=scores)
    yt, yp = binary_pair(y_true, y_pred, pos_label)
    s = None if scores is None else scores_array(scores)
    enc_all = encode_groups(sensitive_features, missing=missing)
    _same_length(enc_all, len(yt))
    sets: dict[str, GroupCodes] = {}
    if len(enc_all.names) > 1:
        cols = _columns(sensitive_features)
        for name in enc_all.names:
            # each column alone, in its own order (a categorical's categories, else sorted)
            sets[name] = encode_groups({name: cols[name]}, missing=missing)
        if intersectional:
            sets[INTERSECTION.join(enc_all.names)] = enc_all
    else:
        sets[enc_all.names[0]] = enc_all
    features = {}
    for k, (key, enc) in enumerate(sets.items()):
        gm = metrics_from_codes(enc, yt, yp, s, zero_division=zero_division)
        features[key] = _feature_evidence(
            gm,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed + k,
            method=method,
            agg=agg,
            four_fifths=four_fifths,
        )
        features[key]["bootstrap_seed"] = seed + k
    return {
        "kind": "fairness",
        "n": len(yt),
        "positives": int(yt.sum()),
        "predicted_positives": int(yp.sum()),
        "pos_label": _py(pos_label) if pos_label is not None else 1,
        "sensitive_features": list(enc_all.names),
        "method": method,
        "agg": agg,
        "zero_division": _py(zero_division),
        "bootstrap": {
            "n_boot": n_boot,
            "confidence": confidence,
            "seed": seed,
            "scheme": "rows resampled with replacement, drawn as multinomial confusion counts",
            "interval": "percentile",
        },
        "features": features,
    }
