"""Serving past one process: ``keel serve --workers N`` against ``mlflow models serve
--workers N`` (N = 1, 2, 4), single-row and 100-row bodies, in one run; plus two ceilings
run as one process each: a minimal app that parses the same body and runs the same ONNX
graph (what keel's body codec, batching and prediction log cost on top of the model), and a
bare ASGI app that parses the body and returns a constant (what any Python server costs).

The models are built as in bench_serve.py (the same Adult LightGBM pipeline for keel and
MLflow; labels must agree on 100 test rows before timing). keel's version is exported, and
the minimal app loads that very ONNX graph. Each server is started alone on 127.0.0.1, in
its own process group, loaded by ``wrk`` (keep-alive connections, which SO_REUSEPORT spreads
over keel's workers) for ``--duration`` seconds after a warm-up, ``--repeats`` times per
cell; the medians are reported. wrk runs on the same machine (2 threads), so on a 2-core
box the servers share the CPUs with their load generator: ratios carry, absolute figures
belong to the CPU they came from.

    .venv/bin/pip install -e '.[dev,bench]'; apt-get install wrk
    .venv/bin/python bench/bench_serve_workers.py     # writes bench/results/serve_workers.json
    .venv/bin/python bench/bench_serve_workers.py --workers 1 2 --duration 5 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT, machine, median, table, write_results
from bench_serve import (
    LUA,
    PACKAGES,
    Server,
    build,
    free_port,
    labels,
    lifespan,
    post,
    read_body,
    wrk,
)

BIN = Path(sys.executable).parent


# --- the model ceiling: parse the body, run the same ONNX graph, answer the labels ---------


def onnx_app_factory(graph: str) -> Any:
    import numpy as np
    import onnxruntime as ort
    import orjson

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type == "tensor(string)") for i in sess.get_inputs()]
    label = sess.get_outputs()[0].name

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        status, out = 200, b'{"ok":true}'
        if scope["method"] == "POST":
            rows = orjson.loads(body)["dataframe_records"]
            feed = {
                name: (
                    np.array([[str(r[name])] for r in rows], dtype=object)
                    if is_str
                    else np.array([[r[name]] for r in rows], dtype=np.float32)
                )
                for name, is_str in inputs
            }
            got = sess.run([label], feed)[0]
            out = orjson.dumps({"predictions": got.tolist()})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


def run_app(kind: str, port: int, graph: str | None) -> None:
    import uvicorn
    from bench_serve import bare_app

    app = bare_app if kind == "bare" else onnx_app_factory(str(graph))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


# --- load ----------------------------------------------------------------------------------


def load_cells(
    server: str,
    workers: int,
    url: str,
    bodies: dict[int, Path],
    conc: int,
    seconds: float,
    warmup: float,
    repeats: int,
) -> list[dict[str, Any]]:
    cells = []
    for n_rows, body in bodies.items():
        if warmup > 0:
            wrk(url, body, conc, warmup)
        runs = [wrk(url, body, conc, seconds) for _ in range(repeats)]
        cell = {
            "server": server,
            "workers": workers,
            "body_rows": n_rows,
            "concurrency": conc,
            "req_per_s": median([r["req_per_s"] for r in runs]),
            "p50_ms": median([r["p50_ms"] for r in runs]),
            "p99_ms": median([r["p99_ms"] for r in runs]),
            "errors": sum(r["errors"] for r in runs),
            "runs": [{k: r[k] for k in ("req_per_s", "p50_ms", "p99_ms", "errors")} for r in runs],
        }
        cell["rows_per_s"] = cell["req_per_s"] * n_rows
        cells.append(cell)
        print(
            f"  {server} workers={workers} rows={n_rows}: {cell['req_per_s']:,.0f} req/s "
            f"p99 {cell['p99_ms']:.2f} ms errors {cell['errors']}",
            flush=True,
        )
    return cells


def cell(cells: list[dict[str, Any]], server: str, workers: int, rows: int) -> dict[str, Any]:
    for x in cells:
        if (x["server"], x["workers"], x["body_rows"]) == (server, workers, rows):
            return x
    raise KeyError((server, workers, rows))


def ratios(cells: list[dict[str, Any]], workers: list[int], batch: int) -> dict[str, Any]:
    def rps(server: str, w: int, rows: int) -> float:
        return float(cell(cells, server, w, rows)["req_per_s"])

    out: dict[str, Any] = {"keel_over_mlflow": [], "scaling": []}
    for w in workers:
        for rows in (1, batch):
            out["keel_over_mlflow"].append(
                {
                    "workers": w,
                    "body_rows": rows,
                    "ratio": rps("keel", w, rows) / rps("mlflow", w, rows),
                    "goal": 50.0 if rows == 1 else None,
                }
            )
    if 1 in workers:
        for w in workers:
            if w == 1:
                continue
            for rows in (1, batch):
                out["scaling"].append(
                    {
                        "workers": w,
                        "body_rows": rows,
                        "keel": rps("keel", w, rows) / rps("keel", 1, rows),
                        "mlflow": rps("mlflow", w, rows) / rps("mlflow", 1, rows),
                        "goal": 1.6 if (w == 2 and rows == 1) else None,
                    }
                )
        keel_rows = cell(cells, "keel", 1, batch)["rows_per_s"]
        onnx_rows = cell(cells, "minimal ONNX app", 1, batch)["rows_per_s"]
        out["keel_over_minimal_onnx_rows_per_s"] = {
            "body_rows": batch,
            "ratio": keel_rows / onnx_rows,
            "goal": 0.9,
        }
        out["keel_share_of_bare_asgi_single_row"] = {
            "ratio": rps("keel", 1, 1) / rps("bare ASGI", 1, 1),
            "goal": 0.5,
            # the ceiling of any server that runs this graph: the minimal app's own share
            "minimal_onnx_share": rps("minimal ONNX app", 1, 1) / rps("bare ASGI", 1, 1),
            "keel_over_minimal_onnx": rps("keel", 1, 1) / rps("minimal ONNX app", 1, 1),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk before each body")
    p.add_argument("--repeats", type=int, default=3, help="wrk runs per cell (median)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch-rows", type=int, default=100)
    p.add_argument("--app", nargs=3, metavar=("KIND", "PORT", "GRAPH"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.app:
        run_app(a.app[0], int(a.app[1]), a.app[2])
        return 0
    if not LUA.is_file() or not (shutil.which("wrk") or Path("/usr/bin/wrk").exists()):
        print("bench_serve_workers: needs wrk and bench/wrk_post.lua", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-workers-"))
    servers: list[Server] = []
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}
    cells: list[dict[str, Any]] = []
    check: dict[str, Any] = {}

    def start(name: str, argv: list[str], ready: str, timeout: float) -> tuple[Server, str]:
        port = free_port()
        argv = [x.replace("{port}", str(port)) for x in argv]
        s = Server(name, argv, tmp / f"{name.replace(' ', '-')}-{len(servers)}.log", env)
        servers.append(s)
        base = f"http://127.0.0.1:{port}"
        s.wait_ready(base + ready, timeout)
        return s, base

    try:
        print(f"building models in {tmp} ...", flush=True)
        built = build(tmp)
        env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
        import keel.export
        import keel.project

        with keel.project.open_project(built["proj"]) as proj:
            ref = built["info"]["keel_model"]["ref"]
            keel.export.export(proj.store, ref)
            graph, _ = keel.export.load_export(proj.store, ref)
        graph_file = tmp / "model.onnx"
        graph_file.write_bytes(graph)
        rows = built["rows"]
        bodies: dict[int, Path] = {}
        for n in (1, a.batch_rows):
            f = tmp / f"body-{n}.json"
            f.write_text(json.dumps({"dataframe_records": rows[:n]}))
            bodies[n] = f

        for w in a.workers:
            argv = [str(BIN / "keel"), "serve", "adult", "--port", "{port}"]
            argv += ["--workers", str(w), "-C", str(built["proj"])]
            s, base = start("keel", argv, "/readyz", 300)
            if w == a.workers[0]:
                check["keel"] = labels(post(base + "/invocations", {"dataframe_records": rows}))
            print(f"loading keel, {w} worker(s) ...", flush=True)
            cells += load_cells(
                "keel", w, base + "/invocations", bodies, a.concurrency, a.duration,
                a.warmup, a.repeats,
            )  # fmt: skip
            s.stop()

        for w in a.workers:
            argv = [str(BIN / "mlflow"), "models", "serve", "-m", built["model_uri"]]
            argv += ["--env-manager", "local", "-p", "{port}", "-h", "127.0.0.1"]
            argv += ["--workers", str(w)]
            s, base = start("mlflow", argv, "/ping", 300)
            if w == a.workers[0]:
                check["mlflow"] = labels(post(base + "/invocations", {"dataframe_records": rows}))
                if check["mlflow"] != check["keel"]:
                    raise AssertionError("keel and MLflow disagree on the 100 test rows")
            print(f"loading MLflow, {w} worker(s) ...", flush=True)
            cells += load_cells(
                "mlflow", w, base + "/invocations", bodies, a.concurrency, a.duration,
                a.warmup, a.repeats,
            )  # fmt: skip
            s.stop()

        me = [sys.executable, str(Path(__file__).resolve()), "--app"]
        for name, kind in (("minimal ONNX app", "onnx"), ("bare ASGI", "bare")):
            s, base = start(name, [*me, kind, "{port}", str(graph_file)], "/", 120)
            print(f"loading the {name} ...", flush=True)
            cells += load_cells(
                name, 1, base + "/", bodies, a.concurrency, a.duration, a.warmup, a.repeats
            )
            s.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    r = ratios(cells, a.workers, a.batch_rows)
    heads = ["server", "workers", "body rows", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"]
    print()
    print(
        table(
            heads,
            [
                [
                    x["server"],
                    x["workers"],
                    x["body_rows"],
                    x["req_per_s"],
                    x["rows_per_s"],
                    x["p50_ms"],
                    x["p99_ms"],
                    x["errors"],
                ]
                for x in cells
            ],
        )
    )
    print()
    for x in r["keel_over_mlflow"]:
        goal = f" (goal ≥ {x['goal']:g})" if x["goal"] else ""
        print(f"keel / MLflow req/s, {x['workers']} worker(s), {x['body_rows']} row(s): "
              f"{x['ratio']:.1f}×{goal}")  # fmt: skip
    for x in r["scaling"]:
        goal = f" (goal ≥ {x['goal']:g})" if x["goal"] else ""
        print(f"{x['workers']} workers / 1, {x['body_rows']} row(s): keel {x['keel']:.2f}×"
              f"{goal}, MLflow {x['mlflow']:.2f}×")  # fmt: skip
    if "keel_over_minimal_onnx_rows_per_s" in r:
        x = r["keel_over_minimal_onnx_rows_per_s"]
        print(f"keel rows/s / minimal ONNX app, {x['body_rows']}-row bodies: {x['ratio']:.2f}× "
              "(goal ≥ 0.9)")  # fmt: skip
        x = r["keel_share_of_bare_asgi_single_row"]
        print(f"keel (one worker) / bare ASGI req/s, one row: {x['ratio']:.0%} (goal ≥ 50%); "
              f"the minimal ONNX app, which runs the same graph and nothing else: "
              f"{x['minimal_onnx_share']:.0%}; keel / minimal ONNX app, one row: "
              f"{x['keel_over_minimal_onnx']:.2f}×")  # fmt: skip
    results = {
        "machine": machine(PACKAGES),
        "config": {
            "workers": a.workers,
            "duration_s": a.duration,
            "warmup_s": a.warmup,
            "repeats": a.repeats,
            "concurrency": a.concurrency,
            "body_rows": [1, a.batch_rows],
            "route": "POST /invocations with {'dataframe_records': [...]} on every server",
            "wrk_threads": 2,
            "load_average_at_end": os.getloadavg(),
        },
        "correctness": {"rows": len(rows), "keel_equals_mlflow": True},
        "results": cells,
        "ratios": r,
    }
    out = write_results("serve_workers", results)
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0 if all(x["errors"] == 0 for x in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
