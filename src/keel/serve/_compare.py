"""Comparing the versions that served one route: what each answered, how fast, and — once
labels arrive — how well.

The report reads the prediction log (or a :class:`~keel.serve.MemorySink`'s entries): for
each version its requests, rows, latency percentiles and, over the rows whose request has a
label, its metrics (accuracy and, for two classes, ROC AUC and the Brier score; MAE and RMSE
for a regressor); for each pair of versions that answered the same request (a shadow and
the live version, or both sides of a replayed request), how often they agree.

Rows are matched by request id and their position in the request, so a 100-row request
answered by two versions gives 100 pairs. Latency is per request (a request's rows share
it): arrival to answer, batch wait and model run included.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["comparison"]


def comparison(
    source: Any,
    name: str | None = None,
    *,
    since: Any = None,
    until: Any = None,
) -> dict[str, Any]:
    """Compare the versions of registered model ``name`` in ``source``: a store or project
    (its prediction log joined with the labels ingested so far; ``name`` required), or
    prediction-sink entries (a :class:`MemorySink` or a list of entry dicts; no labels).

    Returns ``{"model", "versions": {version: {...}}, "pairs": {"A:B": {...}}}``. Each
    version has ``aliases`` (now, in the registry; empty for sink entries), ``requests``,
    ``rows``, ``latency_ms`` (``p50``, ``p95``, ``p99``, ``mean``), ``labeled`` (rows with a
    label) and ``metrics`` (empty until labels arrive); each pair ``rows`` (answered by
    both), ``agree``, ``agreement`` and, for a regressor, ``mean_abs_diff``."""
    frame, known = _frame(source, name, since, until)
    versions = {}
    for v, part in frame.groupby("version", sort=True):
        mv = known.get(int(v))
        classes = mv.output_schema.get("classes") if mv is not None else None
        versions[str(v)] = {
            "aliases": list(mv.aliases) if mv is not None else [],
            **_version_report(part, [str(c) for c in classes] if classes else None),
        }
    return {"model": name, "versions": versions, "pairs": _pairs(frame)}


def _frame(
    source: Any, name: str | None, since: Any, until: Any
) -> tuple[pd.DataFrame, dict[int, Any]]:
    from keel.serve._app import store_of
    from keel.serve._predlog import _to_table

    entries = getattr(source, "entries", source)
    if isinstance(entries, list | tuple):
        rows = [e for e in list(entries) if name is None or e.get("model") == name]
        table = _to_table(rows)
        frame = table.select(
            ["request_id", "ts", "version", "latency_ms", "label", "score", "prediction"]
        ).to_pandas()
        frame["label_true"] = None
        if since is not None or until is not None:
            lo = -math.inf if since is None else float(since)
            hi = math.inf if until is None else float(until)
            frame = frame[(frame["ts"] >= lo) & (frame["ts"] < hi)]
        return frame, {}
    if name is None:
        raise InvalidInput("comparison: name: expected the registered model to compare, got None")
    from keel import registry
    from keel.serve._labels import joined

    store = store_of(source)
    table = joined(store, name, since=since, until=until)
    frame = table.drop_columns(["inputs", "outputs", "model"]).to_pandas()
    known = {}
    for v in sorted(set(frame["version"].tolist())):
        try:
            known[int(v)] = registry.get_version(store, f"{name}/{int(v)}")
        except Exception:  # a version since deleted: compare without its class order
            pass
    return frame, known


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(values.mean())}


def _version_report(part: pd.DataFrame, classes: list[str] | None) -> dict[str, Any]:
    per_request = part.drop_duplicates("request_id")["latency_ms"].to_numpy(dtype=float)
    labeled = part[part["label_true"].notna()]
    return {
        "requests": int(part["request_id"].nunique()),
        "rows": len(part),
        "latency_ms": _percentiles(per_request),
        "labeled": len(labeled),
        "metrics": _metrics(labeled, classes) if len(labeled) else {},
    }


def _metrics(rows: pd.DataFrame, classes: list[str] | None) -> dict[str, float]:
    truth = rows["label_true"].astype(str)
    if rows["label"].notna().any():  # a classifier
        out = {"accuracy": float((rows["label"].astype(str) == truth).mean())}
        if classes and len(classes) == 2 and rows["score"].notna().all():
            from sklearn.metrics import brier_score_loss, roc_auc_score

            known = truth.isin(classes)
            y = (truth[known] == classes[1]).to_numpy(dtype=int)
            score = rows["score"][known].to_numpy(dtype=float)
            if known.all() and 0 < y.sum() < len(y):
                out["roc_auc"] = float(roc_auc_score(y, score))
                out["brier"] = float(brier_score_loss(y, score))
        return out
    truth_num = pd.to_numeric(truth, errors="coerce")
    ok = truth_num.notna() & rows["prediction"].notna()
    if not ok.any():
        return {}
    err = rows["prediction"][ok].to_numpy(dtype=float) - truth_num[ok].to_numpy(dtype=float)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}


def _pairs(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    if frame.empty:
        return {}
    frame = frame.assign(_n=frame.groupby(["request_id", "version"]).cumcount())
    by_version = {
        int(v): part.set_index(["request_id", "_n"])
        for v, part in frame.groupby("version", sort=True)
    }
    versions = sorted(by_version)
    pairs: dict[str, dict[str, Any]] = {}
    for i, a in enumerate(versions):
        for b in versions[i + 1 :]:
            both = by_version[a].merge(
                by_version[b], left_index=True, right_index=True, suffixes=("_a", "_b")
            )
            if both.empty:
                continue
            stat: dict[str, Any] = {"rows": len(both)}
            if both["label_a"].notna().any():
                agree = both["label_a"] == both["label_b"]
            else:
                diff = (both["prediction_a"] - both["prediction_b"]).abs()
                agree = diff == 0
                stat["mean_abs_diff"] = float(diff.mean())
            stat["agree"] = int(agree.sum())
            stat["agreement"] = stat["agree"] / stat["rows"]
            pairs[f"{a}:{b}"] = stat
    return pairs
