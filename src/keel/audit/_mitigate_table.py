"""The before/after table of a mitigation: accuracy, selection rate by group and every
disparity of :mod:`keel.audit.fairness`, for the parent model and the mitigated one on the
same hold-out rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.audit._groups import _py, group_key, group_metrics
from keel.audit.fairness import DISPARITIES, INTERSECTION, disparities

__all__ = ["before_after", "table_rows"]


def _change(before: float, after: float) -> dict[str, Any]:
    b, a = _py(float(before)), _py(float(after))
    return {"before": b, "after": a, "change": None if b is None or a is None else a - b}


def _feature_sets(frame: pd.DataFrame, sensitive: list[str]) -> dict[str, list[str]]:
    sets = {c: [c] for c in sensitive}
    if len(sensitive) > 1:
        sets[INTERSECTION.join(sensitive)] = list(sensitive)
    return sets


def before_after(
    y_true: Any,
    before: Any,
    after: Any,
    frame: pd.DataFrame,
    sensitive: list[str],
    *,
    pos_label: Any,
) -> dict[str, Any]:
    """The table as plain JSON-ready data: ``accuracy`` and ``selection_rate`` (overall),
    then per sensitive feature (and their intersection) each disparity and the selection rate
    and row count of each group, every figure as ``{"before", "after", "change"}``."""
    y = np.asarray(y_true)
    b, a = np.asarray(before), np.asarray(after)
    out: dict[str, Any] = {
        "rows": len(y),
        "positive_class": _py(pos_label),
        "accuracy": _change(np.mean(b == y), np.mean(a == y)),
        "selection_rate": _change(np.mean(b == pos_label), np.mean(a == pos_label)),
        "fairness": {},
    }
    for key, cols in _feature_sets(frame, sensitive).items():
        groups = frame[cols] if len(cols) > 1 else frame[cols[0]]
        gm_b = group_metrics(y, b, groups, pos_label=pos_label, missing="group")
        gm_a = group_metrics(y, a, groups, pos_label=pos_label, missing="group")
        d_b, d_a = disparities(gm_b.confusion), disparities(gm_a.confusion)
        entry: dict[str, Any] = {  # one table of groups, so each disparity is a 0-d array
            name: _change(float(d_b[name]), float(d_a[name])) for name in DISPARITIES
        }
        labels = [group_key(lab) for lab in gm_b.labels]
        entry["selection_rate"] = {
            g: _change(sb, sa)
            for g, sb, sa in zip(
                labels,
                gm_b.metrics["selection_rate"],
                gm_a.metrics["selection_rate"],
                strict=True,
            )
        }
        entry["count"] = {g: int(n) for g, n in zip(labels, gm_b.metrics["count"], strict=True)}
        out["fairness"][key] = entry
    return out


def table_rows(table: dict[str, Any]) -> list[list[Any]]:
    """The table flattened for printing: ``[figure, before, after, change]`` rows."""
    rows = [
        ["accuracy", *_values(table["accuracy"])],
        ["selection rate", *_values(table["selection_rate"])],
    ]
    for key, entry in table["fairness"].items():
        for name in DISPARITIES:
            rows.append([f"{key}: {name.replace('_', ' ')}", *_values(entry[name])])
        for group, v in entry["selection_rate"].items():
            rows.append(
                [f"{key}: selection rate of {group} (n={entry['count'][group]})", *_values(v)]
            )
    return rows


def _values(v: dict[str, Any]) -> list[Any]:
    return [v["before"], v["after"], v["change"]]
