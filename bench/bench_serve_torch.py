"""Serving a PyTorch image classifier: ``keel serve`` against ``mlflow models serve`` of the same
network, one image per request, in one run.

The network: keel's ``torch-cnn`` trained on the bundled 8x8 digits (ingested as a tensor
data set, 15 epochs, seed 0), registered and exported (keel's parity-checked ONNX graph), alias
``production``. MLflow gets the very same ``torch.nn.Module`` with the same weights, logged
with ``mlflow.pytorch.log_model`` (its PyTorch flavor) into a temp SQLite tracking store.
Before timing, both servers must give the same label for the same 50 held-out images.

Each server runs alone (127.0.0.1 only, its own process group, its defaults: one process),
is loaded with ``wrk`` for a fixed time per concurrency after a warm-up, and is stopped:

* keel: ``POST /v2/models/digits/infer`` (Open Inference Protocol v2, FP32 ``[1, 1, 8, 8]``);
* MLflow: ``POST /invocations`` with ``{"inputs": [[[[...]]]]}`` (a tensor input).

    /tmp/bv/bin/python bench/bench_serve_torch.py   # a venv with keel[torch] and mlflow
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, table, write_results
from bench_serve import BIN, Server, free_port, post, wrk

PACKAGES = ("keel", "mlflow", "torch", "onnxruntime", "uvicorn")
GOAL = 20.0  # issue 12: keel >= 20x MLflow's single-image req/s


def build(tmp: Path) -> dict[str, Any]:
    import mlflow
    import mlflow.pytorch

    import keel.data
    import keel.datasets
    import keel.export
    import keel.project
    import keel.registry
    import keel.train

    proj = keel.project.init(tmp / "proj")
    keel.data.ingest(proj.store, keel.datasets.write_digits_npz(tmp), name="digits")
    res = keel.train.train(
        proj.store, "digits", "y", model="torch-cnn", params={"epochs": 15}, seed=0
    )
    mv = res.register(proj.store, "digits")
    keel.export.export(proj.store, mv.ref)
    keel.registry.set_alias(proj.store, mv.ref, "production")
    net = res.model.net
    proj.store.close()

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    art = (tmp / "mlartifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", artifact_location=art))
    X, y = keel.datasets.digits()
    with mlflow.start_run():
        logged = mlflow.pytorch.log_model(net, name="model", input_example=X[:2])
    return {
        "proj": tmp / "proj",
        "model_uri": logged.model_uri,
        "images": X[-50:],
        "metrics": res.metrics,
    }


def _keel_body(img: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "X", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": img.ravel().tolist()}
        ]
    }


def _keel_label(out: dict[str, Any]) -> int:
    label = next(o for o in out["outputs"] if o["name"] == "label")
    return int(label["data"][0])


def _mlflow_label(out: dict[str, Any]) -> int:
    return int(np.argmax(np.asarray(out["predictions"])[0]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    a = p.parse_args(argv)
    if not shutil.which("wrk"):
        print("bench_serve_torch: needs wrk", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-serve-torch-"))
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}
    built = build(tmp)
    env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    images = built["images"]
    body_keel, body_ml = tmp / "keel.json", tmp / "mlflow.json"
    body_keel.write_text(json.dumps(_keel_body(images[0])))
    body_ml.write_text(json.dumps({"inputs": images[:1].tolist()}))
    cells: list[dict[str, Any]] = []
    answers: dict[str, list[int]] = {}
    servers = []
    try:
        for name in ("keel", "mlflow"):
            port = free_port()
            if name == "keel":
                argv_ = [str(BIN / "keel"), "serve", "digits", "--port", str(port)]
                argv_ += ["-C", str(built["proj"])]
                ready, url = f"http://127.0.0.1:{port}/readyz", "/v2/models/digits/infer"
            else:
                argv_ = [str(BIN / "mlflow"), "models", "serve", "-m", built["model_uri"]]
                argv_ += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
                ready, url = f"http://127.0.0.1:{port}/ping", "/invocations"
            s = Server(name, argv_, tmp / f"{name}.log", env)
            servers.append(s)
            s.wait_ready(ready, 180)
            full = f"http://127.0.0.1:{port}{url}"
            if name == "keel":
                answers[name] = [_keel_label(post(full, _keel_body(im))) for im in images]
            else:
                answers[name] = [
                    _mlflow_label(post(full, {"inputs": im[None].tolist()})) for im in images
                ]
            body = body_keel if name == "keel" else body_ml
            wrk(full, body, 1, a.warmup)
            for c in a.concurrency:
                r = wrk(full, body, c, a.duration)
                r.update(server=name, concurrency=c)
                cells.append(r)
                print(
                    f"  {name} c={c}: {r['req_per_s']:,.0f} req/s p99 {r['p99_ms']:.2f} ms "
                    f"errors {r['errors']}",
                    flush=True,
                )
            s.stop()
    finally:
        for s in servers:
            s.stop()
    agree = float(np.mean(np.asarray(answers["keel"]) == np.asarray(answers["mlflow"])))
    rows, ratios = [], {}
    for c in a.concurrency:
        k = next(x for x in cells if x["server"] == "keel" and x["concurrency"] == c)
        m = next(x for x in cells if x["server"] == "mlflow" and x["concurrency"] == c)
        ratios[c] = k["req_per_s"] / m["req_per_s"]
        rows.append(
            [
                c,
                f"{k['req_per_s']:,.0f}",
                f"{m['req_per_s']:,.0f}",
                f"{ratios[c]:.1f}x",
                f"{k['p99_ms']:.2f}",
                f"{m['p99_ms']:.2f}",
            ]
        )
    results = {
        "machine": machine(PACKAGES),
        "cells": cells,
        "label_agreement": agree,
        "ratios": {str(c): r for c, r in ratios.items()},
        "goal": GOAL,
        "meets_goal": all(r >= GOAL for r in ratios.values()),
        "model_metrics": built["metrics"],
        "duration_s": a.duration,
        "when": time.strftime("%Y-%m-%d"),
    }
    out = write_results("serve_torch", results)
    print(
        table(
            ["conns", "keel req/s", "MLflow req/s", "keel / MLflow", "keel p99 ms", "MLflow p99"],
            rows,
        )
    )
    print(f"labels agree on {agree:.0%} of 50 images; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
