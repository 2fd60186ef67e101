"""What the prediction log says about a model's traffic: which models logged predictions,
requests and latency per version over time, and the logged answers to one request.

These read the log only (the Parquet segments and their ``prediction_segments`` rows);
they write nothing. The log keeps the answers a server gave, so error answers are not in
it: a running server's ``/metrics`` counts those (:func:`keel.serve.server_metrics`).

::

    from keel.serve import find_predictions, logged_models, traffic
    logged_models(store)                        # [{"model", "versions", "rows", ...}]
    traffic(store, "adult", since=t0, buckets=30)["versions"]["3"]["req_per_s"]
    find_predictions(store, "4f1c9a0b2d3e4f50")  # the live answer and its shadow's
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, select

from keel.errors import InvalidInput
from keel.serve._predlog import _epoch, _load_segment, _segments
from keel.store import Store, _tables

__all__ = ["REQUEST_ID", "find_predictions", "logged_models", "traffic"]

#: What a request id looks like: the server's own ids and the ``x-request-id`` it echoes.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
MAX_BUCKETS = 500
#: Bucket lengths a traffic chart uses (seconds): the smallest that fits the window.
NICE_SECONDS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 1209600, 2592000, 7776000, 31536000,
)  # fmt: skip

_t = _tables.prediction_segments


def logged_models(store: Store) -> list[dict[str, Any]]:
    """Every model with logged predictions: ``{"model", "versions": [..], "rows",
    "segments", "first_ts", "last_ts"}``, the most recently active first."""
    q = (
        select(
            _t.c.model,
            _t.c.version,
            func.sum(_t.c.n_rows),
            func.count(),
            func.min(_t.c.ts_min),
            func.max(_t.c.ts_max),
        )
        .group_by(_t.c.model, _t.c.version)
        .order_by(_t.c.model, _t.c.version)
    )
    out: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for model, version, rows, segments, first, last in conn.execute(q):
            m = out.setdefault(
                model,
                {"model": model, "versions": [], "rows": 0, "segments": 0,
                 "first_ts": first, "last_ts": last},
            )  # fmt: skip
            m["versions"].append(int(version))
            m["rows"] += int(rows or 0)
            m["segments"] += int(segments)
            m["first_ts"] = min(m["first_ts"], first)
            m["last_ts"] = max(m["last_ts"], last)
    return sorted(out.values(), key=lambda m: (-m["last_ts"], m["model"]))


def _bucket_seconds(span: float, buckets: int) -> int:
    for s in NICE_SECONDS:
        if s * buckets >= span:
            return s
    return int(math.ceil(span / buckets))


def _check_buckets(buckets: Any) -> int:
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidInput(
            f"buckets: expected a whole number from 1 to {MAX_BUCKETS}, got {buckets!r}"
        )
    return buckets


def _quantiles(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None, None
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def traffic(
    store: Store,
    model: str,
    *,
    since: Any = None,
    until: Any = None,
    buckets: int = 30,
) -> dict[str, Any]:
    """Requests and latency of each version of ``model`` over time, from the log.

    The window ``[since, until)`` (epoch seconds or datetimes; open ends: the first and the
    last logged prediction) is cut into at most ``buckets`` buckets of a round length
    (``bucket_s``: 1 s, 5 s, 1 min, 5 min, 1 h, 1 d, ...), aligned to multiples of it.

    Returns ``{"model", "since", "until", "bucket_s", "t": [bucket starts], "versions":
    {version: {"aliases", "requests", "rows", "req_per_s", "p50_ms", "p99_ms" (lists, one
    per bucket; None where it served nothing), "total": {"requests", "rows", "p50_ms",
    "p99_ms", "first_ts", "last_ts"}}}, "moves": [alias moves in the window]}``. Latency is
    per request (a request's rows share it); a request counts in the bucket it arrived in.
    """
    from keel import registry

    buckets = _check_buckets(buckets)
    lo, hi = _epoch(since, "since"), _epoch(until, "until")
    if lo is not None and hi is not None and not lo < hi:
        raise InvalidInput(f"until: expected a time after since ({lo}), got {hi}")
    cols = ["request_id", "ts", "version", "latency_ms"]
    parts = []
    for seg in _segments(store, model, since=lo, until=hi):
        t = _load_segment(store, seg.sha, columns=cols)
        if lo is not None:
            t = t.filter(pc.greater_equal(t["ts"], lo))
        if hi is not None:
            t = t.filter(pc.less(t["ts"], hi))
        if t.num_rows:
            parts.append(t)
    out: dict[str, Any] = {"model": model, "since": lo, "until": hi, "bucket_s": None,
                           "t": [], "versions": {}, "moves": []}  # fmt: skip
    if not parts:
        return out
    frame = pa.concat_tables(parts).to_pandas()
    first = float(frame["ts"].min()) if lo is None else lo
    last = float(frame["ts"].max()) if hi is None else hi
    size = _bucket_seconds(max(last - first, 1.0), buckets)
    start = math.floor(first / size) * size
    n = max(1, int(math.floor((last - start) / size)) + (1 if hi is None else 0))
    if hi is not None and start + n * size < hi:
        n += 1
    frame["bucket"] = ((frame["ts"] - start) // size).astype(int).clip(0, n - 1)
    out.update(since=lo, until=hi, bucket_s=size, t=[start + i * size for i in range(n)])
    for v, part in frame.groupby("version", sort=True):
        out["versions"][str(int(v))] = _version_series(part, n, size)
    names = {}
    for v in out["versions"]:
        try:
            names[v] = list(registry.get_version(store, f"{model}/{v}").aliases)
        except Exception:  # a version since deleted
            names[v] = []
        out["versions"][v]["aliases"] = names[v]
    t_lo, t_hi = first, last if hi is None else hi
    try:
        moves = registry.alias_history(store, model)
    except Exception:
        moves = []
    out["moves"] = [
        {k: m.get(k) for k in ("alias", "from_version", "to_version", "who", "at", "why")}
        for m in moves
        if t_lo <= (m.get("at") or 0) <= t_hi
    ]
    return out


def _version_series(part: Any, n: int, size: int) -> dict[str, Any]:
    per_request = part.drop_duplicates("request_id")
    rows = np.bincount(part["bucket"].to_numpy(), minlength=n)
    requests = np.bincount(per_request["bucket"].to_numpy(), minlength=n)
    p50: list[float | None] = [None] * n
    p99: list[float | None] = [None] * n
    lat = per_request["latency_ms"].to_numpy(dtype=float)
    idx = per_request["bucket"].to_numpy()
    for b in np.unique(idx):
        p50[b], p99[b] = _quantiles(lat[idx == b])
    t50, t99 = _quantiles(lat)
    return {
        "aliases": [],
        "requests": [int(x) for x in requests],
        "rows": [int(x) for x in rows],
        "req_per_s": [float(x) / size if x else None for x in requests],
        "p50_ms": p50,
        "p99_ms": p99,
        "total": {
            "requests": int(per_request.shape[0]),
            "rows": int(part.shape[0]),
            "p50_ms": t50,
            "p99_ms": t99,
            "first_ts": float(part["ts"].min()),
            "last_ts": float(part["ts"].max()),
        },
    }


def check_request_id(request_id: Any) -> str:
    """``request_id`` if it looks like one (:data:`REQUEST_ID`); InvalidInput naming it."""
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        shown = request_id[:60] if isinstance(request_id, str) else request_id
        raise InvalidInput(
            "request_id: expected 1 to 128 letters, digits, '.', '_', ':' or '-' (a request id "
            f"as the server gives it in x-request-id), got {shown!r}"
        )
    return request_id


def find_predictions(
    store: Store, request_id: str, *, model: str | None = None
) -> list[dict[str, Any]]:
    """The logged answers to request ``request_id`` (of ``model`` only, if given): one
    dict per row and version (a live answer and its shadow's are two), in time order, with
    ``request_id``, ``ts``, ``model``, ``version``, ``latency_ms``, ``inputs`` and
    ``outputs`` (decoded), ``label``, ``score``, ``prediction``, ``row`` (its position in
    the request), ``label_true`` (the latest ingested label, or None) and ``segment`` (the
    sha of the segment holding it: the lineage node ``("predictions", sha)``, which was
    ``predicted_by`` the model version). Only the request-id column of each segment is read
    until one matches. An empty list when none is logged."""
    from keel.serve._labels import read_labels

    check_request_id(request_id)
    found: list[dict[str, Any]] = []
    target = pa.scalar(request_id, pa.string())
    for seg in _segments(store, model):
        ids = _load_segment(store, seg.sha, columns=["request_id"])["request_id"]
        hits = pc.equal(ids, target)
        if not pc.any(hits).as_py():
            continue
        whole = _load_segment(store, seg.sha).filter(hits)
        for row, rec in enumerate(whole.to_pylist()):
            rec["inputs"] = _decode(rec["inputs"])
            rec["outputs"] = _decode(rec["outputs"])
            rec.update(row=row, segment=seg.sha, label_true=None)
            found.append(rec)
    if found:
        models = {r["model"] for r in found}
        for name in models:
            labels = read_labels(store, name)
            hit = labels.filter(pc.equal(labels["request_id"], target))
            if hit.num_rows:
                value = hit["label_true"][0].as_py()
                for r in found:
                    if r["model"] == name:
                        r["label_true"] = value
    found.sort(key=lambda r: (r["ts"], r["model"], r["version"], r["row"]))
    return found


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
