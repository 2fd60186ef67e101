"""Monitoring over time, read-only: a model's logged traffic cut into consecutive time
windows, each with its drift per feature, its performance once labels arrive and its
fairness; and the history the monitor recorded — its passes, the alerts that fired, their
deliveries and the pipelines they started.

Unlike :func:`keel.monitor.monitor`, :func:`timeline` writes nothing and fires nothing:
it is what a dashboard or a report reads. The statistics are those of a monitoring pass
(the same reference, tests and thresholds), computed per window.

::

    from keel.monitor import alert_history, timeline
    tl = timeline(store, "adult", windows=12)
    [w["drift"]["share"] for w in tl["windows"]]
    alert_history(store, "adult")[0]["deliveries"]     # [{"notifier", "ok", "error", ...}]
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from sqlalchemy import select

from keel.errors import InvalidInput

__all__ = ["MAX_WINDOWS", "alert_history", "monitor_passes", "timeline"]

MAX_WINDOWS = 48
_DRIFT_KEYS = ("test", "statistic", "p_value", "threshold", "drift")


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def timeline(
    store: Any,
    model: str,
    *,
    since: Any = None,
    until: Any = None,
    windows: int = 12,
    min_labels: int = 100,
    sensitive: list[str] | None = None,
    reference: Any = None,
) -> dict[str, Any]:
    """``model``'s logged traffic in ``[since, until)`` (open ends: the first and the last
    logged prediction) cut into ``windows`` windows of equal length, each checked as a
    monitoring pass checks one, without recording anything.

    Returns ``{"model", "served" (the version whose training data is the reference),
    "reference" (that dataset), "features", "sensitive", "min_labels", "since", "until",
    "windows": [{"since", "until", "rows", "labeled", "versions", "drift": {"share",
    "n_drifted", "features": {name: {"test", "statistic", "p_value", "threshold",
    "drift"}}}, "performance", "fairness" (per sensitive column its disparities as
    ``{"value": v}`` and ``groups``: key, count, selection_rate, accuracy, tpr, fpr)}]}``.
    A window without traffic has ``rows`` 0 and no figures; performance and fairness say
    ``too_few_labels`` below ``min_labels`` labelled rows, as a pass does."""
    from keel.monitor._run import _expected_inputs, _served_version, training_dataset
    from keel.monitor._window import read_window
    from keel.monitor.drift import Reference

    windows = _check_int(windows, "windows", 1, MAX_WINDOWS)
    min_labels = _check_int(min_labels, "min_labels", 1, 10_000_000)
    whole = read_window(store, model, since=since, until=until)
    out: dict[str, Any] = {
        "model": model,
        "served": None,
        "reference": None,
        "features": [],
        "sensitive": [],
        "min_labels": min_labels,
        "since": whole.since,
        "until": whole.until,
        "windows": [],
    }
    if whole.rows == 0:
        return out
    mv = _served_version(store, model, whole)
    settings = getattr(store, "settings", {}) or {}
    if sensitive is None:
        sensitive = list((settings.get("audit") or {}).get("sensitive") or [])
    sensitive = [c for c in sensitive if c in whole.inputs.columns]
    train_ref = training_dataset(store, mv.ref)
    if reference is None:
        reference = Reference.from_dataset(store, train_ref)
    expected = _expected_inputs(mv, reference)
    features = [c for c in expected if c in whole.inputs.columns]
    ts = whole.outputs["ts"].to_numpy(dtype=float)
    lo = float(ts.min()) if whole.since is None else float(whole.since)
    hi = float(ts.max()) if whole.until is None else float(whole.until)
    step = max(hi - lo, 1e-9) / windows
    edges = [lo + i * step for i in range(windows)] + [hi]
    index = (
        np.minimum(((ts - lo) // step).astype(int), windows - 1)
        if hi > lo
        else np.zeros(len(ts), int)
    )
    out.update(
        served=mv.ref,
        reference=train_ref,
        features=features,
        sensitive=sensitive,
        since=lo,
        until=hi,
    )
    for i in range(windows):
        mask = index == i
        entry: dict[str, Any] = {"since": edges[i], "until": edges[i + 1], "rows": int(mask.sum())}
        if mask.any():
            entry.update(_one_window(whole, mask, mv, reference, features, sensitive, min_labels))
        out["windows"].append(entry)
    return out


def _one_window(
    whole: Any,
    mask: np.ndarray,
    mv: Any,
    reference: Any,
    features: list[str],
    sensitive: list[str],
    min_labels: int,
) -> dict[str, Any]:
    from keel.monitor._run import _fairness, _labelled, _performance
    from keel.monitor._window import Window
    from keel.monitor.drift import drift_report

    part = Window(
        whole.model,
        None,
        None,
        whole.inputs.loc[mask].reset_index(drop=True),
        whole.outputs.loc[mask].reset_index(drop=True),
    )
    report = drift_report(reference, part.inputs, columns=features)
    drift = {
        "share": report.get("share"),
        "n_drifted": report.get("n_drifted"),
        "features": {
            name: {k: f.get(k) for k in _DRIFT_KEYS} for name, f in report["features"].items()
        },
    }
    entry: dict[str, Any] = {
        "labeled": part.labeled,
        "versions": part.describe()["versions"],
        "drift": _finite(drift),
    }
    labelled, short, skipped = _labelled(part, mv, min_labels)
    entry["performance"] = _finite(short or {**_performance(part, mv, labelled, 0), **skipped})
    if sensitive and mv.task != "regression":
        fair_short = short and {k: v for k, v in short.items() if k not in skipped}
        fair = fair_short or _slim_fairness(_fairness(part, mv, labelled, sensitive, 0))
        entry["fairness"] = _finite(fair)
    return entry


_GROUP_KEYS = ("key", "count", "selection_rate", "accuracy", "tpr", "fpr")


def _slim_fairness(fair: dict[str, Any]) -> dict[str, Any]:
    """Per sensitive column, its disparities (``{"value": v}``) and each group's count and
    rates; the rest of the audit's fairness section (intervals, notes) left out."""
    out: dict[str, Any] = {"status": fair.get("status")}
    for col, entry in fair.items():
        if not isinstance(entry, dict) or col == "about":
            continue
        slim: dict[str, Any] = {
            k: v for k, v in entry.items() if isinstance(v, dict) and "value" in v
        }
        groups = entry.get("groups") or []
        slim["groups"] = [{k: g.get(k) for k in _GROUP_KEYS} for g in groups if isinstance(g, dict)]
        out[col] = slim
    return out


def _finite(value: Any) -> Any:
    """``value`` with NumPy numbers as Python ones and NaN/infinity as None (JSON has
    neither)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _events(store: Any, kinds: tuple[str, ...], model: str | None, limit: int) -> list[Any]:
    from keel.store import _tables

    t = _tables.events
    q = select(t.c.id, t.c.kind, t.c.subject, t.c.payload_json, t.c.at).where(t.c.kind.in_(kinds))
    if model is not None:
        q = q.where(t.c.subject == model)
    q = q.order_by(t.c.id.desc()).limit(limit)
    with store.read() as conn:
        rows = conn.execute(q).all()
    return list(reversed(rows))


def alert_history(
    store: Any, model: str | None = None, *, limit: int = 200
) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts that fired (of ``model``, or of every model), newest
    first: each the alert's document (``rule``, ``model``, ``window``, ``condition``,
    ``value``, ``severity``, ``at``, ``message``, ...) with ``deliveries`` (one per notifier:
    ``notifier``, ``ok``, ``error``, ``attempts``, ``at``) and ``triggered`` (the pipeline
    runs the rule started: ``pipeline``, ``run``, ``status``)."""
    limit = _check_int(limit, "limit", 1, 10_000)
    rows = _events(store, ("alert", "alert_delivery", "alert_trigger"), model, limit * 8)
    alerts: list[dict[str, Any]] = []
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    latest_of_rule: dict[tuple[str, str], dict[str, Any]] = {}
    for rid, kind, subject, raw, at in rows:
        doc = json.loads(raw)
        if kind == "alert":
            doc = {**doc, "id": rid, "deliveries": [], "triggered": []}
            alerts.append(doc)
            key = (str(doc.get("rule")), str(doc.get("model")), str(doc.get("window")))
            by_key[key] = doc
            latest_of_rule[(str(doc.get("rule")), subject)] = doc
        elif kind == "alert_delivery":
            key = (str(doc.get("rule")), str(doc.get("model")), str(doc.get("window")))
            owner = by_key.get(key)
            if owner is not None:
                owner["deliveries"].append(
                    {
                        "notifier": doc.get("notifier"),
                        "ok": bool(doc.get("ok")),
                        "error": doc.get("error"),
                        "attempts": doc.get("attempts", 1),
                        "at": at,
                    }
                )
        else:  # alert_trigger: the pipeline the latest alert of its rule started
            owner = latest_of_rule.get((str(doc.get("rule")), subject))
            if owner is not None:
                owner["triggered"].append(
                    {k: doc.get(k) for k in ("pipeline", "run", "status")} | {"at": at}
                )
    return list(reversed(alerts))[:limit]


def monitor_passes(store: Any, model: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` monitoring passes recorded for ``model`` (by
    :func:`keel.monitor.monitor`), newest first: ``{"id", "at", "window", "served",
    "values"}`` with ``values`` the pass's numbers by dotted path (``drift.share``,
    ``performance.roc_auc``, ...)."""
    limit = _check_int(limit, "limit", 1, 10_000)
    out = []
    for rid, _, _, raw, at in _events(store, ("monitor",), model, limit):
        doc = json.loads(raw)
        out.append(
            {
                "id": rid,
                "at": at,
                "window": doc.get("window"),
                "served": doc.get("served"),
                "values": doc.get("values") or {},
            }
        )
    return list(reversed(out))
