"""The demo's fair release, measured where it counts: the ThresholdOptimizer version is
exported to one ONNX graph (parity checked), served on 127.0.0.1, sent the whole hold-out
set as 100-row requests with their own request ids, and its fairness and accuracy are
computed from the served answers, beside the same figures of the model in process.

The served decisions are drawn per request id and row (``keel.draw``), so a repeated
request gets the same decision; the figures are those of one draw of the policy, which
fairlearn's own randomised ``predict`` matches within sampling error (bench:
``bench/bench_mitigated_served.py``)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import numpy as np

__all__ = ["serve_fair_version"]

ROWS_PER_REQUEST = 100


def _post(url: str, route: str, rows: list[dict[str, Any]], request_id: str) -> list[Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        body = json.dumps({"rows": rows}).encode()
        headers = {"Content-Type": "application/json", "x-request-id": request_id}
        conn.request("POST", f"/models/{route}/predict", body, headers)
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"serving {route}: HTTP {resp.status}: {answer}")
    return [p["label"] for p in answer["predictions"]]


def _figures(decided: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    rates = {str(g): float(decided[groups == g].mean()) for g in sorted(set(groups))}
    return {
        "accuracy": float(np.mean(decided == y)),
        "dp_difference": max(rates.values()) - min(rates.values()),
        "selection_rate": rates,
    }


def serve_fair_version(
    store: Any,
    ref: str,
    frame: Any,
    target: str,
    sensitive: str,
    *,
    positive: Any,
    route: str,
) -> dict[str, Any]:
    """Export ``ref`` (a mitigated version), serve it as ``route`` on 127.0.0.1, send every
    row of ``frame`` (the hold-out set, with ``target``), and return the export's parity
    and the served and in-process accuracy, selection rate (of ``positive``) per
    ``sensitive`` group and demographic-parity difference."""
    from keel import registry
    from keel.export import export
    from keel.serve import start

    mv = registry.get_version(store, ref)
    cols = [c["name"] for c in mv.input_schema]
    X = frame[cols].reset_index(drop=True)
    y = frame[target].astype(str).to_numpy() == str(positive)
    groups = X[sensitive].astype(str).to_numpy()
    t0 = time.perf_counter()
    exported = export(store, ref)
    export_s = time.perf_counter() - t0
    records = json.loads(X.to_json(orient="records"))
    labels: list[Any] = []
    with start(store, [f"{route}={ref}"], max_request_rows=ROWS_PER_REQUEST) as server:
        t0 = time.perf_counter()
        for k in range(0, len(records), ROWS_PER_REQUEST):
            rows = records[k : k + ROWS_PER_REQUEST]
            labels += _post(server.url, route, rows, f"holdout-{k}")
        serve_s = time.perf_counter() - t0
        again = _post(server.url, route, records[:ROWS_PER_REQUEST], "holdout-0")
    served = np.asarray([str(v) for v in labels]) == str(positive)
    in_process = np.asarray(registry.load(store, ref).predict(X)).astype(str) == str(positive)
    return {
        "ref": ref,
        "route": route,
        "sensitive": sensitive,
        "rows": len(records),
        "requests": -(-len(records) // ROWS_PER_REQUEST),
        "export_seconds": export_s,
        "serve_seconds": serve_s,
        "onnx_bytes": exported.size_bytes,
        "parity": exported.parity.to_dict(),
        "repeat_same": [str(v) for v in again] == [str(v) for v in labels[:ROWS_PER_REQUEST]],
        "served": _figures(served, y, groups),
        "in_process": _figures(in_process, y, groups),
    }
