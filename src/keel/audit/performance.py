"""Performance evidence on a hold-out: the task's metrics with bootstrap intervals,
calibration (reliability curve, expected calibration error) and metrics per slice with the
worst slices ranked.

Binary classification takes ``y_true`` and ``scores`` (the probability, or any score, of the
positive class); predicted labels are ``scores >= threshold`` unless ``y_pred`` is given.
Regression takes ``y_true`` and ``y_pred``.

Bootstrap: the Poisson bootstrap. Each replicate weighs every row by an independent
Poisson(1) count, and every metric is written as weighted sums (matrix products with the
weight block, and for ROC AUC a weighted Mann-Whitney statistic over the rows sorted once),
so replicates are computed in blocks without a Python loop over refits. Intervals are
percentile intervals; the point estimates are the plain metrics on the hold-out (equal to
scikit-learn's in tests). Seeds, replicate counts and sizes are recorded in every result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._groups import (
    _py,
    binary,
    check_lengths,
    encode_groups,
    metrics_from_codes,
    scores_array,
)
from keel.audit.fairness import _check_settings, interval
from keel.errors import InvalidInput

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "calibration",
    "classification_performance",
    "performance_report",
    "regression_performance",
    "slice_metrics",
]

CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "log_loss", "f1", "precision", "recall")
REGRESSION_METRICS = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = {
    "accuracy": True,
    "roc_auc": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "r2": True,
    "log_loss": False,
    "mae": False,
    "rmse": False,
}
_BLOCK_CELLS = 4_000_000  # replicate rows x hold-out rows per block of Poisson weights


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _poisson_blocks(n_boot: int, n: int, seed: int) -> Iterator[np.ndarray]:
    """``(b, n)`` float weight blocks, ``n_boot`` rows in all, from one seeded generator."""
    rng = np.random.default_rng(seed)
    step = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        yield rng.poisson(1.0, size=(min(step, n_boot - start), n)).astype(np.float64)


def _with_intervals(
    point: dict[str, float],
    stat: Callable[[np.ndarray], dict[str, np.ndarray]],
    n: int,
    n_boot: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    out = {k: {"value": _py(float(v))} for k, v in point.items()}
    if not n_boot:
        return out
    parts: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for w in _poisson_blocks(n_boot, n, seed):
        for k, v in stat(w).items():
            parts[k].append(v)
    for k in point:
        out[k].update(interval(np.concatenate(parts[k]), confidence))
    return out


# ---------------------------------------------------------------- classification


class _Classification:
    """Weighted binary-classification metrics for a block of weights ``(b, n)``."""

    def __init__(self, y: np.ndarray, scores: np.ndarray, pred: np.ndarray, zero_division: float):
        self.zero_division = zero_division
        # Rows are kept in score order: a weight block is i.i.d. per row, so it can be drawn
        # for the sorted rows directly and ROC AUC needs no gather.
        order = np.argsort(scores, kind="stable")
        scores, yf, pf = scores[order], y[order].astype(np.float64), pred[order].astype(np.float64)
        self.tp, self.fp = yf * pf, (1 - yf) * pf
        self.fn = yf * (1 - pf)
        self.proba = bool(scores[0] >= 0 and scores[-1] <= 1)
        if self.proba:
            eps = np.finfo(np.float64).eps
            p = np.clip(scores, eps, 1 - eps)
            self.loss = -(yf * np.log(p) + (1 - yf) * np.log1p(-p))
        new = np.empty(len(scores), dtype=bool)
        new[0] = True
        np.not_equal(scores[1:], scores[:-1], out=new[1:])
        self.starts = np.flatnonzero(new)
        self.y_sorted = yf

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        tp, fp, fn = w @ self.tp, w @ self.fp, w @ self.fn
        tn = total - tp - fp - fn
        zd = self.zero_division
        precision, recall = _safe_div(tp, tp + fp, zd), _safe_div(tp, tp + fn, zd)
        out = {
            "accuracy": _safe_div(tp + tn, total),
            "roc_auc": self._auc(w),
            "log_loss": _safe_div(w @ self.loss, total) if self.proba else None,
            "f1": _safe_div(2 * tp, 2 * tp + fp + fn, zd),
            "precision": precision,
            "recall": recall,
        }
        return {k: v for k, v in out.items() if v is not None}

    def _auc(self, w: np.ndarray) -> np.ndarray:
        """Weighted Mann-Whitney: positives' weight times negatives' weight ranked below
        them, ties counted one half, over total positive x negative weight."""
        pos = np.add.reduceat(w * self.y_sorted, self.starts, axis=1)
        neg = np.add.reduceat(w, self.starts, axis=1) - pos
        below = np.cumsum(neg, axis=1) - neg
        u = (pos * (below + 0.5 * neg)).sum(axis=1)
        return _safe_div(u, pos.sum(axis=1) * neg.sum(axis=1))


def _labels_and_scores(
    y_true: Any, scores: Any, y_pred: Any, threshold: float, pos_label: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_lengths(y_true=y_true, scores=scores, y_pred=y_pred)
    y = binary(y_true, "y_true", pos_label)
    s = scores_array(scores)
    if y_pred is None:
        if not np.isfinite(threshold):
            raise InvalidInput(f"threshold: expected a finite number, got {threshold!r}")
        pred = s >= threshold
    else:
        pred = binary(y_pred, "y_pred", pos_label)
    return y, s, pred


def classification_performance(
    y_true: Any,
    scores: Any,
    *,
    y_pred: Any = None,
    threshold: float = 0.5,
    pos_label: Any = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    zero_division: float = np.nan,
) -> dict[str, Any]:
    """Accuracy, ROC AUC, log loss (when scores are probabilities), F1, precision and recall
    of the positive class, each with a Poisson-bootstrap percentile interval."""
    _check_settings(n_boot, confidence, seed)
    y, s, pred = _labels_and_scores(y_true, scores, y_pred, threshold, pos_label)
    if y.all() or not y.any():
        raise InvalidInput(
            f"y_true: expected both classes in the hold-out, got only "
            f"{'positives' if y.any() else 'negatives'} ({len(y)} rows)"
        )
    stat = _Classification(y, s, pred, zero_division)
    point = {k: float(v[0]) for k, v in stat(np.ones((1, len(y)))).items()}
    return {
        "kind": "classification",
        "n": len(y),
        "positives": int(y.sum()),
        "threshold": None if y_pred is not None else float(threshold),
        "scores_are_probabilities": stat.proba,
        "metrics": _with_intervals(point, stat, len(y), n_boot, confidence, seed),
        "bootstrap": _bootstrap_info(n_boot, confidence, seed),
    }


def _bootstrap_info(n_boot: int, confidence: float, seed: int) -> dict[str, Any]:
    return {
        "n_boot": n_boot,
        "confidence": confidence,
        "seed": seed,
        "scheme": "Poisson(1) row weights",
        "interval": "percentile",
    }


# ---------------------------------------------------------------- regression


class _Regression:
    def __init__(self, y: np.ndarray, pred: np.ndarray):
        e = y - pred
        self.abs, self.sq, self.y, self.y2 = np.abs(e), e * e, y, y * y

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        sse = w @ self.sq
        sy = w @ self.y
        sst = w @ self.y2 - _safe_div(sy * sy, total, 0.0)
        sst = np.where(np.abs(sst) <= 1e-12 * np.maximum(w @ self.y2, 1.0), 0.0, sst)
        # scikit-learn's convention for a constant target: 1 if perfect, else 0
        r2 = np.where(sst > 0, 1 - _safe_div(sse, sst), np.where(sse == 0, 1.0, 0.0))
        return {
            "mae": _safe_div(w @ self.abs, total),
            "rmse": np.sqrt(_safe_div(sse, total)),
            "r2": np.where(total > 0, r2, np.nan),
        }


def _numeric(values: Any, name: str) -> np.ndarray:
    return scores_array(values, name)


def regression_performance(
    y_true: Any,
    y_pred: Any,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """MAE, RMSE and R² with Poisson-bootstrap percentile intervals."""
    _check_settings(n_boot, confidence, seed)
    check_lengths(y_true=y_true, y_pred=y_pred)
    y, p = _numeric(y_true, "y_true"), _numeric(y_pred, "y_pred")
    stat = _Regression(y, p)
    point = {k: float(v[0]) for k, v in stat(np.ones((1, len(y)))).items()}
    return {
        "kind": "regression",
        "n": len(y),
        "metrics": _with_intervals(point, stat, len(y), n_boot, confidence, seed),
        "bootstrap": _bootstrap_info(n_boot, confidence, seed),
    }


# ---------------------------------------------------------------- calibration


def _bin_edges(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    raise InvalidInput(f"strategy: expected 'uniform' or 'quantile', got {strategy!r}")


def calibration(
    y_true: Any,
    scores: Any,
    *,
    n_bins: int = 10,
    strategy: str = "uniform",
    pos_label: Any = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Reliability curve and expected calibration error of predicted probabilities.

    Bins as scikit-learn's ``calibration_curve`` (``strategy`` 'uniform' or 'quantile'; a
    score on an inner edge goes to the lower bin). ECE = sum over bins of
    ``count/n * |fraction positive - mean predicted|``; MCE the largest gap of a non-empty
    bin. The ECE interval keeps the bin edges fixed and re-weighs the rows (Poisson)."""
    _check_settings(n_boot, confidence, seed)
    if not isinstance(n_bins, int | np.integer) or isinstance(n_bins, bool) or n_bins < 1:
        raise InvalidInput(f"n_bins: expected a whole number >= 1, got {n_bins!r}")
    check_lengths(y_true=y_true, scores=scores)
    y = binary(y_true, "y_true", pos_label).astype(np.float64)
    p = scores_array(scores)
    if p.min() < 0 or p.max() > 1:
        raise InvalidInput(
            f"scores: expected probabilities in [0, 1] for calibration, got values from "
            f"{p.min():g} to {p.max():g}"
        )
    edges = _bin_edges(p, int(n_bins), strategy)
    bins = np.searchsorted(edges[1:-1], p)
    count = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    mean_p, frac = _safe_div(sum_p, count), _safe_div(sum_y, count)
    gap = np.abs(frac - mean_p)
    ece = float(np.abs(sum_y - sum_p).sum() / len(p))
    curve = [
        {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(count[b]),
            "mean_predicted": _py(mean_p[b]),
            "fraction_positive": _py(frac[b]),
        }
        for b in range(n_bins)
    ]
    out: dict[str, Any] = {
        "kind": "calibration",
        "n": len(p),
        "n_bins": int(n_bins),
        "strategy": strategy,
        "reliability": curve,
        "ece": {"value": ece},
        "mce": float(gap[count > 0].max()),
        "brier": float(np.mean((p - y) ** 2)),
        "bootstrap": _bootstrap_info(n_boot, confidence, seed),
    }
    if n_boot:
        order = np.argsort(bins, kind="stable")  # weights drawn for the rows in bin order
        d = (y - p)[order]
        starts = np.flatnonzero(np.r_[True, np.diff(bins[order]) != 0])
        reps = []
        for w in _poisson_blocks(n_boot, len(p), seed):
            per_bin = np.add.reduceat(w * d, starts, axis=1)
            reps.append(_safe_div(np.abs(per_bin).sum(axis=1), w.sum(axis=1)))
        out["ece"].update(interval(np.concatenate(reps), confidence))
    return out


# ---------------------------------------------------------------- slices


def _slice_codes(col: pd.Series, n_quantiles: int) -> tuple[Any, str]:
    """The column as slice codes: quantile bins for a numeric column with more distinct
    values than bins, one slice per value otherwise; missing values are a slice."""
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if numeric and col.nunique() > n_quantiles:
        binned = pd.qcut(col, n_quantiles, duplicates="drop")
        return encode_groups({str(col.name): binned}, missing="group"), "numeric"
    return encode_groups({str(col.name): col}, missing="group"), "categorical"


def _slice_label(v: Any) -> Any:
    if v is None:
        return "(missing)"
    if isinstance(v, pd.Interval):
        return str(v)
    return _py(v)


def _classification_table(
    enc: Any, y: np.ndarray, s: np.ndarray | None, pred: np.ndarray, loss: np.ndarray | None
) -> dict[str, np.ndarray]:
    gm = metrics_from_codes(enc, y, pred, s)
    tn, fp, fn, tp = (gm.confusion[:, i, j].astype(np.float64) for i in (0, 1) for j in (0, 1))
    out = {
        "count": gm.metrics["count"],
        "accuracy": gm.metrics["accuracy"],
        "precision": gm.metrics["precision"],
        "recall": gm.metrics["tpr"],
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "selection_rate": gm.metrics["selection_rate"],
        "positive_rate": _safe_div(tp + fn, gm.metrics["count"]),
    }
    if s is not None:
        out["roc_auc"] = gm.metrics["roc_auc"]
    if loss is not None:
        out["log_loss"] = _safe_div(
            np.bincount(enc.codes, weights=loss, minlength=enc.n_groups), out["count"]
        )
    return out


def _regression_table(enc: Any, y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    g, k = enc.codes, enc.n_groups
    n = np.bincount(g, minlength=k).astype(np.float64)
    e = y - pred
    sse = np.bincount(g, weights=e * e, minlength=k)
    sy, sy2 = np.bincount(g, weights=y, minlength=k), np.bincount(g, weights=y * y, minlength=k)
    sst = sy2 - _safe_div(sy * sy, n, 0.0)
    sst = np.where(np.abs(sst) <= 1e-12 * np.maximum(sy2, 1.0), 0.0, sst)
    return {
        "count": n.astype(np.int64),
        "mae": _safe_div(np.bincount(g, weights=np.abs(e), minlength=k), n),
        "rmse": np.sqrt(_safe_div(sse, n)),
        "r2": np.where(sst > 0, 1 - _safe_div(sse, sst), np.where(sse == 0, 1.0, 0.0)),
    }


def slice_metrics(
    features: pd.DataFrame,
    y_true: Any,
    *,
    task: str = "classification",
    scores: Any = None,
    y_pred: Any = None,
    threshold: float = 0.5,
    pos_label: Any = None,
    metric: str | None = None,
    min_size: int = 30,
    n_quantiles: int = 4,
    max_categories: int = 100,
    top: int = 10,
) -> dict[str, Any]:
    """Metrics for every value of each categorical column and every quantile bin of each
    numeric one, and the ``top`` worst slices by ``metric`` among slices with at least
    ``min_size`` rows (default metric: accuracy for classification, MAE for regression).
    Columns with more than ``max_categories`` values are skipped (named in ``skipped``)."""
    if not isinstance(features, pd.DataFrame):
        raise InvalidInput(f"features: expected a pandas DataFrame, got {type(features).__name__}")
    for name, v in (("min_size", min_size), ("n_quantiles", n_quantiles), ("top", top)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise InvalidInput(f"{name}: expected a whole number >= 1, got {v!r}")
    n = check_lengths(y_true=y_true, features=features, scores=scores, y_pred=y_pred)
    table = _slice_table(task, y_true, scores, y_pred, threshold, pos_label)
    metric = metric or ("accuracy" if task == "classification" else "mae")
    probe = table(encode_groups({"all": np.zeros(n, dtype=np.int8)}))
    if metric not in probe or metric == "count":
        valid = sorted(k for k in probe if k != "count")
        raise InvalidInput(f"metric: expected one of {valid} for {task}, got {metric!r}")
    out_features: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for col in features.columns:
        series = features[col].reset_index(drop=True)
        if not pd.api.types.is_numeric_dtype(series) and series.nunique() > max_categories:
            skipped[str(col)] = (
                f"{series.nunique()} distinct values, more than max_categories={max_categories}"
            )
            continue
        enc, kind = _slice_codes(series, n_quantiles)
        values = table(enc)
        rows = []
        for g, lab in enumerate(enc.labels):
            row = {"slice": _slice_label(lab[0])}
            row.update({k: _py(v[g]) for k, v in values.items()})
            rows.append(row)
        out_features[str(col)] = {"type": kind, "slices": rows}
    return {
        "kind": "slices",
        "task": task,
        "n": n,
        "metric": metric,
        "higher_is_better": HIGHER_IS_BETTER.get(metric, True),
        "min_size": min_size,
        "n_quantiles": n_quantiles,
        "overall": {k: _py(v[0]) for k, v in probe.items()},
        "features": out_features,
        "skipped": skipped,
        "worst": _worst(out_features, metric, probe[metric][0], min_size, top),
    }


def _slice_table(
    task: str, y_true: Any, scores: Any, y_pred: Any, threshold: float, pos_label: Any
) -> Callable[[Any], dict[str, np.ndarray]]:
    """Checks the inputs once; returns encoded groups -> per-slice metric arrays."""
    if task == "classification":
        if scores is None and y_pred is None:
            raise InvalidInput("scores: expected scores or y_pred for classification, got neither")
        if scores is None:
            y = binary(y_true, "y_true", pos_label)
            pred, s = binary(y_pred, "y_pred", pos_label), None
        else:
            y, s, pred = _labels_and_scores(y_true, scores, y_pred, threshold, pos_label)
        loss = None
        if s is not None and ((s >= 0) & (s <= 1)).all():
            eps = np.finfo(np.float64).eps
            p = np.clip(s, eps, 1 - eps)
            loss = -(y * np.log(p) + (~y) * np.log1p(-p))
        return lambda enc: _classification_table(enc, y, s, pred, loss)
    if task == "regression":
        if y_pred is None:
            raise InvalidInput("y_pred: expected predictions for regression, got none")
        y, p = _numeric(y_true, "y_true"), _numeric(y_pred, "y_pred")
        return lambda enc: _regression_table(enc, y, p)
    raise InvalidInput(f"task: expected 'classification' or 'regression', got {task!r}")


def _worst(
    features: dict[str, Any], metric: str, overall: float, min_size: int, top: int
) -> list[dict[str, Any]]:
    higher = HIGHER_IS_BETTER.get(metric, True)
    candidates = []
    for col, info in features.items():
        for row in info["slices"]:
            v = row.get(metric)
            if v is None or row["count"] < min_size:
                continue
            shortfall = (overall - v) if higher else (v - overall)
            candidates.append(
                {
                    "feature": col,
                    "slice": row["slice"],
                    "count": row["count"],
                    metric: v,
                    "overall": _py(overall),
                    "shortfall": shortfall,
                }
            )
    candidates.sort(key=lambda r: (-r["shortfall"], r["feature"], str(r["slice"])))
    return candidates[:top]


# ---------------------------------------------------------------- the whole evidence


def performance_report(
    y_true: Any,
    *,
    task: str = "classification",
    scores: Any = None,
    y_pred: Any = None,
    features: pd.DataFrame | None = None,
    threshold: float = 0.5,
    pos_label: Any = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    n_bins: int = 10,
    slice_metric: str | None = None,
    min_slice_size: int = 30,
    n_quantiles: int = 4,
    top: int = 10,
) -> dict[str, Any]:
    """The performance evidence of a hold-out: metrics with intervals, calibration (binary
    classification with probability scores) and slices (when ``features`` are given)."""
    if task == "classification":
        if scores is None:
            raise InvalidInput("scores: expected the positive-class scores, got none")
        metrics = classification_performance(
            y_true,
            scores,
            y_pred=y_pred,
            threshold=threshold,
            pos_label=pos_label,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
        )
        cal = None
        if metrics["scores_are_probabilities"]:
            cal = calibration(
                y_true,
                scores,
                n_bins=n_bins,
                pos_label=pos_label,
                n_boot=n_boot,
                confidence=confidence,
                seed=seed + 1,
            )
    elif task == "regression":
        if y_pred is None:
            raise InvalidInput("y_pred: expected predictions for regression, got none")
        metrics, cal = (
            regression_performance(y_true, y_pred, n_boot=n_boot, confidence=confidence, seed=seed),
            None,
        )
    else:
        raise InvalidInput(f"task: expected 'classification' or 'regression', got {task!r}")
    slices = None
    if features is not None:
        slices = slice_metrics(
            features,
            y_true,
            task=task,
            scores=scores,
            y_pred=y_pred,
            threshold=threshold,
            pos_label=pos_label,
            metric=slice_metric,
            min_size=min_slice_size,
            n_quantiles=n_quantiles,
            top=top,
        )
    return {
        "kind": "performance",
        "task": task,
        "n": metrics["n"],
        "seed": seed,
        "metrics": metrics,
        "calibration": cal,
        "slices": slices,
    }
