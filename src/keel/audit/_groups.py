"""Vectorized per-group classification metrics: the hot path of fairness evidence and of
fairness monitoring.

Groups (one sensitive column, or the intersection of several) are encoded to integer codes
once; the per-group confusion counts come from one ``np.bincount`` over ``code * 4 +
y_true * 2 + y_pred``; every rate is derived from those counts. ROC AUC per group is the
Mann-Whitney U statistic on within-group mid-ranks (ties count one half), from one
sort by score and a stable (radix) sort by group.

Agreement with fairlearn's ``MetricFrame`` (checked to 1e-9 in tests):

* count, selection rate and accuracy are always identical;
* TPR, FPR, FNR and precision of a group whose denominator is empty (no actual positives,
  no actual negatives, no predicted positives) are ``zero_division``: NaN by default, which
  equals scikit-learn's ``recall_score``/``precision_score`` with ``zero_division=np.nan``.
  fairlearn's own ``true_positive_rate``/``false_positive_rate``/``false_negative_rate`` and
  scikit-learn's default (``zero_division="warn"``) give 0.0 there: pass
  ``zero_division=0.0`` to reproduce them exactly;
* ROC AUC of a group with one class only is NaN (scikit-learn warns and returns NaN);
* groups are only those present in the data (MetricFrame also lists empty intersections,
  as all-NaN rows);
* a missing value in a sensitive column is refused (as fairlearn does) unless
  ``missing="group"``, which keeps those rows as a group of their own labelled ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

RATES = ("selection_rate", "accuracy", "tpr", "fpr", "fnr", "precision")
METRICS = ("count", *RATES, "roc_auc")


@dataclass(frozen=True)
class GroupCodes:
    """Rows encoded to groups: ``codes[i]`` in ``[0, len(labels))`` names row ``i``'s group,
    ``labels[g]`` is the tuple of that group's values (one per feature in ``names``), sorted
    as ``sorted()`` would sort them per column."""

    names: tuple[str, ...]
    codes: np.ndarray
    labels: tuple[tuple[Any, ...], ...]

    @property
    def n_groups(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class GroupMetrics:
    """Per-group metrics. ``confusion[g]`` is ``[[tn, fp], [fn, tp]]`` (scikit-learn's
    layout); ``metrics[name][g]`` one value per group for every name in ``METRICS``
    (``roc_auc`` only when scores were given); ``overall`` the same over all rows."""

    features: tuple[str, ...]
    labels: tuple[tuple[Any, ...], ...]
    confusion: np.ndarray
    metrics: dict[str, np.ndarray]
    overall: dict[str, float]
    zero_division: float

    def to_frame(self) -> pd.DataFrame:
        """One row per group, indexed like ``MetricFrame.by_group``."""
        if len(self.features) == 1:
            index = pd.Index([lab[0] for lab in self.labels], name=self.features[0])
        else:
            index = pd.MultiIndex.from_tuples(list(self.labels), names=list(self.features))
        return pd.DataFrame(self.metrics, index=index)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form: features, one entry per group, overall."""
        groups = []
        for g, lab in enumerate(self.labels):
            row: dict[str, Any] = {
                "group": {f: _py(v) for f, v in zip(self.features, lab, strict=True)},
                "key": group_key(lab),
            }
            tn, fp, fn, tp = (int(x) for x in self.confusion[g].ravel())
            row.update(tp=tp, fp=fp, tn=tn, fn=fn)
            for name, values in self.metrics.items():
                row[name] = _py(values[g])
            groups.append(row)
        return {
            "features": list(self.features),
            "zero_division": _py(self.zero_division),
            "groups": groups,
            "overall": {k: _py(v) for k, v in self.overall.items()},
        }


def group_key(label: Sequence[Any]) -> str:
    """A group's display key: its values joined with ``" & "``."""
    return " & ".join("(missing)" if v is None else str(_py(v)) for v in label)


def _py(v: Any) -> Any:
    """numpy scalars to Python ones, NaN to None: the evidence is strict JSON."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


# ---------------------------------------------------------------- input checks


def _length(x: Any) -> int:
    return len(x) if hasattr(x, "__len__") else np.asarray(x).shape[0]


def check_lengths(**arrays: Any) -> int:
    """The common length of the named arrays (``None`` ones skipped), or InvalidInput."""
    lengths = {k: _length(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        bad = [k for k in lengths if lengths[k] != lengths[first]]
        raise InvalidInput(
            f"{bad[0]}: expected {lengths[first]} rows (the length of {first}), "
            f"got {lengths[bad[0]]}"
        )
    n = next(iter(lengths.values()))
    if n == 0:
        raise InvalidInput(f"{next(iter(lengths))}: expected at least one row, got none")
    return n


def binary(y: Any, name: str, pos_label: Any = None) -> np.ndarray:
    """``y`` as a boolean array (True = positive). Without ``pos_label`` the values must be
    0/1 (or booleans, or -1/1); with it, at most two distinct values, positive where equal."""
    arr = y.to_numpy() if isinstance(y, pd.Series | pd.Index) else np.asarray(y)
    if arr.ndim != 1:
        raise InvalidInput(f"{name}: expected a 1-D array of labels, got shape {arr.shape}")
    if arr.dtype == bool:
        if pos_label is None or pos_label is True or pos_label == 1:
            return arr
        if pos_label is False or pos_label == 0:
            return ~arr
        raise InvalidInput(
            f"{name}: expected pos_label True or False for booleans, got {pos_label!r}"
        )
    if pos_label is None:
        if arr.dtype.kind in "iuf":
            ok01 = (arr == 0) | (arr == 1)
            if ok01.all():
                return arr == 1
            if ((arr == -1) | (arr == 1)).all():
                return arr == 1
        seen = _distinct(arr)
        raise InvalidInput(
            f"{name}: expected labels 0/1 (or pass pos_label= naming the positive class), "
            f"got values {seen}"
        )
    classes = pd.unique(arr)
    if len(classes) > 2 or pd.isna(classes).any():
        raise InvalidInput(
            f"{name}: expected two classes, one of them pos_label={pos_label!r}, "
            f"got values {_distinct(arr)}"
        )
    return arr == pos_label


def _distinct(arr: np.ndarray, limit: int = 6) -> str:
    seen = pd.unique(arr)
    shown = [_py(v) for v in seen[:limit]]
    more = f" and {len(seen) - limit} more" if len(seen) > limit else ""
    return f"{shown}{more}"


def binary_pair(y_true: Any, y_pred: Any, pos_label: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as booleans; with ``pos_label`` their values together must be two."""
    yt = binary(y_true, "y_true", pos_label)
    yp = binary(y_pred, "y_pred", pos_label)
    if pos_label is not None:
        t, p = np.asarray(y_true), np.asarray(y_pred)
        if len(pd.unique(np.concatenate([pd.unique(t), pd.unique(p)]))) > 2:
            raise InvalidInput(
                f"y_pred: expected the same two classes as y_true, got y_true values "
                f"{_distinct(t)} and y_pred values {_distinct(p)}"
            )
    return yt, yp


def scores_array(scores: Any, name: str = "scores") -> np.ndarray:
    """Scores as finite float64, or InvalidInput naming the first bad row."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name}: expected numbers, got {exc}") from None
    if s.ndim != 1:
        raise InvalidInput(f"{name}: expected a 1-D array of scores, got shape {s.shape}")
    bad = ~np.isfinite(s)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InvalidInput(
            f"{name}: expected finite numbers, got {s[rows[0]]} in {len(rows)} row(s), "
            f"first at row {rows[0]}"
        )
    return s


# ---------------------------------------------------------------- group encoding


def _columns(sensitive_features: Any) -> dict[str, Any]:
    """Name -> 1-D values, from a DataFrame, Series, mapping, 1-D or 2-D array."""
    if isinstance(sensitive_features, pd.DataFrame):
        return {str(c): sensitive_features[c] for c in sensitive_features.columns}
    if isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name
        return {"sensitive_feature_0" if name is None else str(name): sensitive_features}
    if isinstance(sensitive_features, Mapping):
        return {str(k): v for k, v in sensitive_features.items()}
    arr = np.asarray(sensitive_features, dtype=object)
    if arr.ndim == 1:
        return {"sensitive_feature_0": arr}
    if arr.ndim == 2:
        return {f"sensitive_feature_{i}": arr[:, i] for i in range(arr.shape[1])}
    raise InvalidInput(
        f"sensitive_features: expected a DataFrame, Series, mapping or 1-D/2-D array, "
        f"got shape {arr.shape}"
    )


def _factorize(values: Any, name: str, missing: str) -> tuple[np.ndarray, list[Any]]:
    """Sorted codes of one column; missing values refused or given the last code."""
    if isinstance(values, pd.Categorical | pd.Series) and isinstance(
        getattr(values, "dtype", None), pd.CategoricalDtype
    ):
        cat = values.cat if isinstance(values, pd.Series) else values
        codes = np.asarray(cat.codes, dtype=np.int64)
        uniques = list(cat.categories)
        used = np.bincount(codes[codes >= 0], minlength=len(uniques)) > 0
        if not used.all():  # drop unused categories: groups are what the data has
            remap = np.cumsum(used) - 1
            codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
            uniques = [u for u, k in zip(uniques, used, strict=True) if k]
    else:
        try:
            vals = np.asarray(values, dtype=object) if isinstance(values, list) else values
            codes, uniq = pd.factorize(vals, sort=True)
        except TypeError as exc:  # mixed, unorderable values
            raise InvalidInput(
                f"sensitive feature {name!r}: expected values of one comparable type, got {exc}"
            ) from None
        codes = np.asarray(codes, dtype=np.int64)
        uniques = list(uniq)
    if (codes < 0).any():
        n_missing = int((codes < 0).sum())
        if missing != "group":
            raise InvalidInput(
                f"sensitive feature {name!r}: expected no missing values, got {n_missing} "
                f"missing row(s); fill them or pass missing='group' to keep them as a group"
            )
        codes = np.where(codes < 0, len(uniques), codes)
        uniques.append(None)
    return codes, uniques


def encode_groups(sensitive_features: Any, *, missing: str = "error") -> GroupCodes:
    """Encode one or more sensitive columns to integer group codes (their intersection when
    several), keeping only the groups present. ``missing``: ``"error"`` (default) refuses
    missing values naming the column; ``"group"`` keeps them as a group labelled None."""
    if missing not in ("error", "group"):
        raise InvalidInput(f"missing: expected 'error' or 'group', got {missing!r}")
    cols = _columns(sensitive_features)
    if not cols:
        raise InvalidInput("sensitive_features: expected at least one column, got none")
    check_lengths(**cols)
    names = tuple(cols)
    per = [_factorize(v, k, missing) for k, v in cols.items()]
    if len(per) == 1:
        codes, uniques = per[0]
        return GroupCodes(names, codes, tuple((u,) for u in uniques))
    sizes = [len(u) for _, u in per]
    total = int(np.prod(sizes, dtype=object))
    n = len(per[0][0])
    if total > 4 * n + 1024:  # sparse intersection: sort the observed tuples instead
        return GroupCodes(names, *_combine_unique(per))
    # mixed radix, first column most significant: sorted like MetricFrame's index
    combined = np.ravel_multi_index(tuple(c for c, _ in per), sizes)
    present = np.bincount(combined, minlength=total) > 0
    remap = np.cumsum(present) - 1
    idx = np.unravel_index(np.flatnonzero(present), sizes)
    labels = tuple(
        tuple(per[k][1][i] for k, i in enumerate(parts)) for parts in zip(*idx, strict=True)
    )
    return GroupCodes(names, remap[combined].astype(np.int64), labels)


def _combine_unique(
    per: list[tuple[np.ndarray, list[Any]]],
) -> tuple[np.ndarray, tuple[tuple[Any, ...], ...]]:
    stacked = np.stack([c for c, _ in per], axis=1)
    rows, codes = np.unique(stacked, axis=0, return_inverse=True)
    labels = tuple(tuple(per[k][1][i] for k, i in enumerate(r)) for r in rows)
    return codes.ravel().astype(np.int64), labels


# ---------------------------------------------------------------- counts and rates


def confusion_by_group(
    codes: np.ndarray, n_groups: int, y_true: np.ndarray, y_pred: np.ndarray
) -> np.ndarray:
    """``(n_groups, 2, 2)`` int64 counts ``[[tn, fp], [fn, tp]]`` in one bincount."""
    cell = codes * 4 + (y_true.astype(np.int64) * 2) + y_pred
    return np.bincount(cell, minlength=4 * n_groups).reshape(n_groups, 2, 2)


def _div(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def rates(confusion: np.ndarray, zero_division: float = np.nan) -> dict[str, np.ndarray]:
    """Count and the rates in ``RATES`` from confusion counts of shape ``(..., 2, 2)``
    (any leading axes: groups, bootstrap replicates). A group with no rows gets NaN for every
    rate; an empty denominator in a group with rows gets ``zero_division``."""
    c = np.asarray(confusion, dtype=np.float64)
    tn, fp, fn, tp = c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1]
    n = tn + fp + fn + tp
    out = {
        "count": n,
        "selection_rate": _div(tp + fp, n, np.nan),
        "accuracy": _div(tp + tn, n, np.nan),
        "tpr": _div(tp, tp + fn, zero_division),
        "fpr": _div(fp, fp + tn, zero_division),
        "fnr": _div(fn, tp + fn, zero_division),
        "precision": _div(tp, tp + fp, zero_division),
    }
    empty = n == 0
    if np.any(empty):
        for k in RATES:
            out[k] = np.where(empty, np.nan, out[k])
    return out


def roc_auc_by_group(
    codes: np.ndarray, n_groups: int, y_true: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """ROC AUC per group (NaN for a group with one class): Mann-Whitney U on within-group
    mid-ranks, from one sort by score and a stable sort by group."""
    order = np.argsort(scores, kind="stable")
    small = np.int16 if n_groups < 2**15 else np.int64  # small ints: numpy's radix sort
    order = order[np.argsort(codes[order].astype(small), kind="stable")]
    c, s, y = codes[order], scores[order], y_true[order]
    n = len(c)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.logical_or(c[1:] != c[:-1], s[1:] != s[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    block = np.cumsum(new) - 1
    gstart = np.searchsorted(c, np.arange(n_groups))
    bgroup = c[starts]
    midrank = (starts + ends - 1) / 2.0 + 1.0 - gstart[bgroup]
    pos_in_block = np.bincount(block, weights=y, minlength=len(starts))
    rank_sum = np.bincount(bgroup, weights=midrank * pos_in_block, minlength=n_groups)
    pos = np.bincount(c, weights=y, minlength=n_groups)
    neg = np.bincount(c, minlength=n_groups) - pos
    u = rank_sum - pos * (pos + 1) / 2.0
    return _div(u, pos * neg, np.nan)


def group_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive_features: Any,
    *,
    scores: Any = None,
    pos_label: Any = None,
    zero_division: float = np.nan,
    missing: str = "error",
) -> GroupMetrics:
    """Per-group count, selection rate, accuracy, TPR, FPR, FNR, precision (and ROC AUC when
    ``scores`` are given) for one sensitive column or the intersection of several.

    ``y_true``/``y_pred``: 0/1 (or booleans), or any two labels with ``pos_label`` naming the
    positive one. ``scores``: finite numbers, higher meaning more positive.
    """
    check_lengths(y_true=y_true, y_pred=y_pred, scores=scores)
    n = _length(y_true)
    yt, yp = binary_pair(y_true, y_pred, pos_label)
    s = None if scores is None else scores_array(scores)
    enc = encode_groups(sensitive_features, missing=missing)
    if len(enc.codes) != n:
        raise InvalidInput(
            f"sensitive_features: expected {n} rows (the length of y_true), got {len(enc.codes)}"
        )
    return metrics_from_codes(enc, yt, yp, s, zero_division=zero_division)


def metrics_from_codes(
    enc: GroupCodes,
    yt: np.ndarray,
    yp: np.ndarray,
    scores: np.ndarray | None,
    *,
    zero_division: float = np.nan,
) -> GroupMetrics:
    """Group metrics from already-checked booleans and encoded groups (the monitoring path:
    encode once, call per window)."""
    cm = confusion_by_group(enc.codes, enc.n_groups, yt, yp)
    metrics = rates(cm, zero_division)
    overall_cm = cm.sum(axis=0)
    overall = {k: float(v) for k, v in rates(overall_cm, zero_division).items()}
    overall["count"] = int(overall_cm.sum())
    if scores is not None:
        metrics["roc_auc"] = roc_auc_by_group(enc.codes, enc.n_groups, yt, scores)
        zeros = np.zeros(len(yt), dtype=np.int64)
        overall["roc_auc"] = float(roc_auc_by_group(zeros, 1, yt, scores)[0])
    metrics["count"] = metrics["count"].astype(np.int64)
    return GroupMetrics(enc.names, enc.labels, cm, metrics, overall, zero_division)
