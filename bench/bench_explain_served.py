"""A served explanation: ``POST /models/adult/predict`` with ``"explain": true`` for one Adult
row against ``keel serve`` (a subprocess on 127.0.0.1, keel's default 400-tree LightGBM),
one request at a time over a keep-alive connection; the same requests without ``explain``
alongside. Latency is measured by the client (send to last byte).

    .venv/bin/python bench/bench_explain_served.py      # writes bench/results/explain_served.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, write_results
from bench_serve import BIN, Server, free_port

PACKAGES = ("keel", "lightgbm", "onnxruntime", "uvicorn", "orjson")
GOAL_MS = 5.0


def build(tmp: Path) -> tuple[Path, list[dict[str, Any]]]:
    import keel.data
    import keel.datasets
    import keel.project
    import keel.registry
    import keel.train

    paths = keel.datasets.write_adult_csv(tmp / "data")
    proj = keel.project.init(tmp / "proj")
    ds = keel.data.ingest(proj.store, paths["train"], name="adult-train").dataset
    hold = keel.data.ingest(proj.store, paths["test"], name="adult-test").dataset
    res = keel.train.train(proj.store, ds.ref, "income", holdout=hold.ref)
    mv = res.register(proj.store, "adult")
    keel.registry.set_alias(proj.store, mv.ref, "production")
    proj.close()
    test = keel.datasets.adult("test")
    inputs = [c for c in test.columns if c != "income"]
    rows = json.loads(test[inputs].head(200).to_json(orient="records"))
    return tmp / "proj", rows


def latencies(port: int, bodies: list[bytes], n: int) -> np.ndarray:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = np.empty(n)
    headers = {"Content-Type": "application/json"}
    for i in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/models/adult/predict", bodies[i % len(bodies)], headers)
        resp = conn.getresponse()
        data = resp.read()
        out[i] = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}: {data[:300]!r}")
    conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-explain-"))
    proj, rows = build(tmp)
    port = free_port()
    argv_ = [str(BIN / "keel"), "serve", "adult", "--port", str(port), "-C", str(proj)]
    server = Server("keel", argv_, tmp / "keel.log", dict(os.environ))
    results: dict[str, Any] = {}
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/readyz", 300)
        plain = [json.dumps({"rows": [r]}).encode() for r in rows]
        explained = [json.dumps({"rows": [r], "explain": True}).encode() for r in rows]
        latencies(port, explained, 50)  # warm-up: the explainer loads on first use
        latencies(port, plain, 50)
        for name, bodies in (("predict", plain), ("predict + explain", explained)):
            ms = latencies(port, bodies, a.requests)
            results[name] = {
                "requests": a.requests,
                "median_ms": float(np.median(ms)),
                "p90_ms": float(np.percentile(ms, 90)),
                "p99_ms": float(np.percentile(ms, 99)),
            }
    finally:
        server.stop()
    one = results["predict + explain"]
    out = {
        "machine": machine(PACKAGES),
        "config": {
            "requests": a.requests,
            "distinct_rows": len(rows),
            "server": "keel serve adult (1 process), 127.0.0.1, one request at a time",
        },
        "results": results,
        "goals": {
            "served_explanation_at_most_5_ms": {
                "target_ms": GOAL_MS,
                "median_ms": one["median_ms"],
                "met": one["median_ms"] <= GOAL_MS,
                "p99_ms": one["p99_ms"],
                "p99_met": one["p99_ms"] <= GOAL_MS,
            }
        },
    }
    path = write_results("explain_served", out)
    for k, v in results.items():
        print(f"{k:20s} median {v['median_ms']:.2f} ms  p99 {v['p99_ms']:.2f} ms")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
