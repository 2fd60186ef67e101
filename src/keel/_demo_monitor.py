"""The demo's monitoring act, on the bundled bike-sharing year: train on winter and spring,
serve, replay summer as traffic, detect the seasonal drift, alert a local webhook receiver
(signed), retrain on recent months through a pipeline, pass the gates, and watch the new
model take the canary's share of traffic — without touching production."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MODEL", "post_rows", "run_monitor_act"]

MODEL = "bike-demand"
TRAIN_MONTHS = ["Jan", "Feb", "March", "April"]
RECENT_MONTHS = ["May", "June", "July"]
TRAFFIC_MONTHS = ["Aug"]
_LEAKS = ["casual", "registered"]  # their sum is the target


class _Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 that keeps the alerts whose signature verifies."""

    def __init__(self, secret: str) -> None:
        from keel.monitor import verify_signature

        received: list[dict[str, Any]] = []
        rejected: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if verify_signature(secret, body, self.headers):
                    received.append(json.loads(body))
                    self.send_response(204)
                else:
                    rejected.append(self.path)
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.received, self.rejected = received, rejected
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _csv(path: Path, months: list[str]) -> Path:
    from keel.datasets import bikeshare

    bikeshare(months).drop(columns=_LEAKS).to_csv(path, index=False)
    return path


def post_rows(url: str, model: str, rows: list[Any], keys: list[str]) -> list[tuple[str, int]]:
    """POST each row as a one-row request to ``/models/MODEL/predict`` over one keep-alive
    connection, sticky by its key; (request id, version that answered) for each."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    answers = []
    try:
        for row, key in zip(rows, keys, strict=True):
            body = json.dumps({"rows": [row]}).encode()
            headers = {"Content-Type": "application/json", "x-keel-key": key}
            conn.request("POST", f"/models/{model}/predict", body, headers)
            answer = json.loads(conn.getresponse().read())
            answers.append((answer["request_id"], answer["version"]))
    finally:
        conn.close()
    return answers


def run_monitor_act(root: Path, *, requests: int = 600, say: Any = print) -> dict[str, Any]:
    """Run the act in a new project at ``root``; ``say`` gets one line per step. Returns
    what happened at each step (for the CLI's JSON and the tests)."""
    import pandas as pd

    from keel import project, registry
    from keel.data import ingest
    from keel.monitor import monitor
    from keel.serve import PredictionLog, Release, ingest_labels, start
    from keel.train import train

    root.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    env_name = "KEEL_DEMO_WEBHOOK_SECRET"
    os.environ[env_name] = secret
    receiver = _Receiver(secret)
    project.init(root, name="bikes-demo").close()
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["audit"] = {"policy": ["performance.r2 >= 0.5"]}
    settings["monitor"] = {
        "allow_hosts": [f"127.0.0.1:{receiver.port}"],
        "notifiers": {
            "ops": {
                "type": "webhook",
                "url": f"http://127.0.0.1:{receiver.port}/keel",
                "secret_env": env_name,
            },
        },
        "alerts": [
            {
                "name": "seasonal-drift",
                "condition": "drift.share > 0.3",
                "notify": ["ops"],
                "pipeline": "retrain.yaml",
            },
        ],
    }
    cfg.write_text(yaml.safe_dump(settings, sort_keys=False))
    data = root / "data"
    data.mkdir(exist_ok=True)
    early = _csv(data / "bikes-early.csv", TRAIN_MONTHS)
    _csv(data / "bikes-recent.csv", RECENT_MONTHS)
    traffic = _csv(data / "bikes-traffic.csv", TRAFFIC_MONTHS)
    (root / "retrain.yaml").write_text(
        "name: retrain-bike-demand\n"
        "steps:\n"
        "  - {name: ingest, kind: ingest, params: {path: data/bikes-recent.csv, "
        "name: bikes-recent}}\n"
        "  - {name: train, kind: train, inputs: [ingest],\n"
        f"     params: {{target: bikers, register: {MODEL}}}}}\n"
        "  - {name: audit, kind: audit, inputs: [train], params: {sections: [performance]}}\n"
        "  - {name: gate, kind: gate, inputs: [audit]}\n"
        "  - {name: export, kind: export, inputs: [gate]}\n"
        "  - {name: release, kind: release, inputs: [export], params: {alias: candidate}}\n"
    )
    out: dict[str, Any] = {"project": str(root)}
    with project.open_project(root) as proj:
        store = proj.store
        ds = ingest(store, early, name="bikes-early").dataset
        mv = train(store, ds.ref, "bikers", seed=0).register(store, MODEL, "bike demand, Jan-Apr")
        from keel.audit import audit

        audit(store, mv.ref, sections=["performance"])
        registry.set_alias(store, mv.ref, "production", why="trained on Jan-April")
        registry.set_alias(store, mv.ref, "candidate", why="no challenger yet")
        out["trained"] = {
            "model": mv.ref,
            "months": TRAIN_MONTHS,
            "rows": ds.n_rows,
            "metrics": mv.metrics,
        }
        say(
            f"trained {mv.ref} on {', '.join(TRAIN_MONTHS)} ({ds.n_rows:,} hours): "
            + ", ".join(f"{k} {v:.3f}" for k, v in mv.metrics.items())
        )
        summer = pd.read_csv(traffic)
        rows = json.loads(summer.drop(columns=["bikers"]).head(requests).to_json(orient="records"))
        truth = summer["bikers"].head(requests).tolist()
        release = Release(MODEL, {"production": 90, "candidate": 10}, seed=0)
        with (
            PredictionLog(store) as log,
            start(store, [release], sink=log, watch_seconds=0.5) as server,
        ):
            answers = post_rows(server.url, MODEL, rows, [f"k{i}" for i in range(len(rows))])
            log.flush()
            say(
                f"served {len(answers):,} hours of {', '.join(TRAFFIC_MONTHS)} as traffic "
                f"(production 90 / candidate 10, both {mv.ref} so far)"
            )
            labels = pd.DataFrame({"request_id": [a[0] for a in answers], "y": truth})
            labels.to_csv(data / "labels.csv", index=False)
            ingest_labels(store, data / "labels.csv", label_col="y")
            res = monitor(store, MODEL, last=len(answers), min_labels=100)
            drift = res.values["drift"]
            drifted = [f for f, r in drift["features"].items() if r.get("drift")]
            perf = res.values["performance"]
            out["monitor"] = {
                "drift_share": drift["share"],
                "drifted": drifted,
                "r2": (perf.get("r2") or {}).get("value"),
                "alerts": [a["rule"] for a in res.alerts],
                "triggered": res.triggered,
            }
            r2 = out["monitor"]["r2"]
            say(
                f"monitor: {len(drifted)} of {drift['n_features']} inputs drifted "
                f"({', '.join(drifted)}); R² on labelled traffic "
                f"{'n/a' if r2 is None else f'{r2:.3f}'} (trained: {mv.metrics['r2']:.3f})"
            )
            say(
                f"alerts fired: {', '.join(out['monitor']['alerts']) or 'none'}; the webhook "
                f"receiver verified {len(receiver.received)} signed alert(s)"
            )
            for t in res.triggered:
                say(f"pipeline {t['pipeline']} ran ({t['status']}), run {t['run'][:12]}")
            cand = registry.get_version(store, f"{MODEL}@candidate")
            prod = registry.get_version(store, f"{MODEL}@production")
            out["candidate"], out["production"] = cand.ref, prod.ref
            say(
                f"candidate is now {cand.ref} (trained on {', '.join(RECENT_MONTHS)}); "
                f"production stays {prod.ref}"
            )
            deadline = 30.0
            import time

            t0 = time.monotonic()
            while time.monotonic() - t0 < deadline:  # the server's alias watch swaps it in
                slot = server.app.slots[MODEL].describe()
                if any(v["version"] == cand.version for v in slot["variants"]):
                    break
                time.sleep(0.2)
            keys = [f"k{len(rows) + i}" for i in range(len(rows))]
            again = post_rows(server.url, MODEL, rows, keys)
        served: dict[int, int] = {}
        for _, version in again:
            served[version] = served.get(version, 0) + 1
        out["after"] = dict(sorted(served.items()))
        say(
            "after the loop, traffic by version: "
            + ", ".join(f"v{v}: {n:,}" for v, n in sorted(served.items()))
        )
    out["webhook"] = {
        "received": len(receiver.received),
        "rejected": len(receiver.rejected),
        "digest": hashlib.sha256(secret.encode()).hexdigest()[:12],
    }
    receiver.shutdown()
    os.environ.pop(env_name, None)
    return out
