"""Helpers of the dashboard's API and filter tests: stores made with keel's own tracking
API, a brute-force filter in Python to check the SQL against, and small HTTP calls."""

from __future__ import annotations

import json
import math
import random
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from keel.train import start_run

XSS = "<script>alert(1)</script>"
MODELS = ("lightgbm", "logreg", "rf", "Ünïcode model")


def make_runs(store: Any, n: int = 40, seed: int = 0) -> list[str]:
    """``n`` finished runs over two experiments with varied params (numbers, strings,
    booleans, lists, missing), metrics (some with histories, some missing) and tags."""
    rng = random.Random(seed)
    ids = []
    for i in range(n):
        tags = {"name": f"run-{i:03d}", "kind": rng.choice(["search", "train"])}
        if i % 7 == 0:
            tags.pop("kind")
        run = start_run(store, "exp-a" if i % 3 else "exp-b", seed=i, tags=tags)
        params: dict[str, Any] = {
            "model": MODELS[i % len(MODELS)],
            "lr": rng.choice([0.001, 0.01, 0.1, 1, 3]),
            "depth": rng.randint(1, 12),
            "balanced": rng.random() < 0.5,
        }
        if i % 5 == 0:
            params["layers"] = [rng.randint(1, 4), 8]
        if i % 4 == 0:
            params.pop("depth")
        if i % 6 == 0:
            params["lr"] = "auto"
        run.log_params(params)
        for step in range(rng.randint(1, 4)):
            run.log_metrics({"roc_auc": rng.random(), "loss": rng.random() * 2}, step=step)
        if i % 3 == 0:
            run.log_metric("val loss", rng.random())
        if i % 8 == 0:  # out-of-order steps: the last value is the highest step's
            run.log_metric("roc_auc", 0.123, step=0)
        run.end("failed" if i % 9 == 0 else "finished")
        ids.append(run.id)
    return ids


# -- the filter language, by brute force ------------------------------------------------


def _param_number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _param_text(raw: str) -> str:
    v = json.loads(raw)
    return v if isinstance(v, str) else raw


def value_of(run: dict[str, Any], field: Any, want: str) -> Any:
    """What ``field`` means for one run (``get_run``'s dict plus ``raw_params``), as the
    filter language defines it; None when the run lacks it."""
    kind, key = field.kind, field.key
    if kind == "metrics":
        hist = run["metric_history"].get(key)
        return hist[-1][1] if hist else None
    if kind == "tags":
        return run["tags"].get(key)
    if kind == "params":
        if key not in run["raw_params"]:
            return None
        raw = run["raw_params"][key]
        return _param_number(json.loads(raw)) if want == "number" else _param_text(raw)
    if key == "name":
        return run["tags"].get("name")
    return run[key]


_CMP = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def matches(node: Any, run: dict[str, Any]) -> bool:
    from keel.ui._filter import And, Compare

    if node is None:
        return True
    if isinstance(node, Compare):
        want = "number" if isinstance(node.value, float) else "text"
        v = value_of(run, node.field, want)
        return v is not None and _CMP[node.op](v, node.value)
    results = [matches(p, run) for p in node.parts]
    return all(results) if isinstance(node, And) else any(results)


def all_runs(store: Any) -> list[dict[str, Any]]:
    """Every run as ``get_run`` reads it, plus its params' stored JSON text."""
    from sqlalchemy import select

    from keel.store import _tables
    from keel.train import get_run

    with store.read() as conn:
        ids = [r[0] for r in conn.execute(select(_tables.runs.c.id))]
        raw: dict[str, dict[str, str]] = {}
        for rid, key, value in conn.execute(select(_tables.params)):
            raw.setdefault(rid, {})[key] = value
    runs = []
    for rid in ids:
        run = get_run(store, rid)
        run["raw_params"] = raw.get(rid, {})
        runs.append(run)
    return runs


# -- HTTP -------------------------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of a GET, errors included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = get(url, headers)
    return status, json.loads(body)


def q(**params: Any) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
