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
    label), ``metrics`` (empty until labels arrive), ``missing_metrics`` (``{metric: why}``
    for each metric the labelled rows do not allow: a label that is no class of the model,
    one class only, no score, unknown classes) and ``invalid_labels`` (labelled rows whose
    label is no class of the model, or no number for a regressor); each pair ``rows``
    (answered by both), ``agree``, ``agreement`` and, for a regressor, ``mean_abs_diff``."""
    frame, known = _frame(source, name, since, until)
    versions = {}
    for v, part in frame.groupby("version", sort=True):
        mv = known.get(int(v))  # type: ignore[arg-type]  # pandas-stubs: a group key is any scalar
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
    metrics, missing, invalid = _metrics(labeled, classes) if len(labeled) else ({}, {}, 0)
    return {
        "requests": int(part["request_id"].nunique()),
        "rows": len(part),
        "latency_ms": _percentiles(per_request),
        "labeled": len(labeled),
        "metrics": metrics,
        "missing_metrics": missing,
        "invalid_labels": invalid,
    }


def _metrics(
    rows: pd.DataFrame, classes: list[str] | None
) -> tuple[dict[str, float], dict[str, str], int]:
    """The metrics of the labelled ``rows``, why each expected one is missing, and how many
    labels are no answer of the model."""
    truth = rows["label_true"].astype(str)
    if rows["label"].notna().any():  # a classifier
        out = {"accuracy": float((rows["label"].astype(str) == truth).mean())}
        known = truth.isin(classes) if classes else pd.Series(True, index=truth.index)
        invalid = int((~known).sum())
        why = _why_no_auc(rows, truth, known, classes)
        if why is None:
            from sklearn.metrics import brier_score_loss, roc_auc_score

            assert classes is not None
            y = (truth == classes[1]).to_numpy(dtype=int)
            score = rows["score"].to_numpy(dtype=float)
            out["roc_auc"] = float(roc_auc_score(y, score))
            out["brier"] = float(brier_score_loss(y, score))
            return out, {}, invalid
        return out, {"roc_auc": why, "brier": why}, invalid
    truth_num = pd.to_numeric(truth, errors="coerce")
    numeric = truth_num.notna() & np.isfinite(truth_num.astype(float))
    invalid = int((~numeric).sum())
    ok = numeric & rows["prediction"].notna()
    if not ok.any():
        why = (
            f"no labelled row has a numeric label (e.g. {_shorten(repr(truth.iloc[0]))})"
            if invalid
            else "no labelled row has a prediction"
        )
        return {}, {"mae": why, "rmse": why}, invalid
    err = rows["prediction"][ok].to_numpy(dtype=float) - truth_num[ok].to_numpy(dtype=float)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}, {}, invalid


def _why_no_auc(
    rows: pd.DataFrame, truth: pd.Series, known: pd.Series, classes: list[str] | None
) -> str | None:
    """Why ROC AUC and the Brier score cannot be computed on these rows (None: they can)."""
    if not classes:
        return "the version's classes are unknown (it is no longer registered)"
    if len(classes) != 2:
        return f"they need two classes; the model has {len(classes)}"
    if not known.all():
        bad = truth[~known]
        expected = " or ".join(map(repr, classes))
        return (
            f"{len(bad):,} of {len(truth):,} labelled rows have a label that is no class of the "
            f"model (e.g. {_shorten(repr(bad.iloc[0]))}; expected {expected}): ingest "
            f"corrected labels"
        )
    if not rows["score"].notna().all():
        return f"{int(rows['score'].isna().sum()):,} labelled rows have no score"
    present = sorted(set(truth))
    if len(present) < 2:
        return f"the labelled rows hold one class only ({present[0]!r})"
    return None


def _shorten(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pairs(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    if frame.empty:
        return {}
    frame = frame.assign(_n=frame.groupby(["request_id", "version"]).cumcount())
    by_version = {
        int(v): part.set_index(["request_id", "_n"])  # type: ignore[arg-type]  # pandas-stubs: a group key is any scalar
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
