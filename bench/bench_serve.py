"""HTTP serving throughput: the same Adult LightGBM model behind ``keel serve`` and behind
``mlflow models serve``, plus the ceiling — a bare ASGI app (uvicorn, one worker, uvloop +
httptools like keel) that parses the JSON body and returns a constant.

All in one run: the models are built in a temp dir (keel: ingest, default 400-tree LightGBM,
register, alias ``production``; MLflow: an sklearn Pipeline of keel's feature transform +
``LGBMClassifier`` with the zoo's defaults, fitted on the same Adult train frame and logged with
``mlflow.sklearn.log_model`` into a temp SQLite tracking store). Then each server is started
alone (127.0.0.1 only, its own process group), waited on until ready, loaded with ``wrk`` at
each concurrency and body size for a fixed time (after a short warm-up), and stopped.
keel is loaded on its own route (``POST /models/adult/predict``, ``{"rows": [...]}``) and on
``POST /invocations`` with the very body MLflow gets (``{"dataframe_records": [...]}``).
Before timing, keel and MLflow must give the same labels for the same 100 test rows.

    .venv/bin/python bench/bench_serve.py              # writes bench/results/serve.json
    .venv/bin/python bench/bench_serve.py --duration 20 --concurrency 8 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _common import ROOT, machine, table, write_results

PACKAGES = (
    "keel",
    "mlflow",
    "lightgbm",
    "scikit-learn",
    "onnxruntime",
    "uvicorn",
    "uvloop",
    "httptools",
    "orjson",
    "pandas",
)
TRUSTED = [
    "collections.OrderedDict",
    "keel.features._transformers.NullToNaN",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "numpy.dtype",
]
LUA = ROOT / "bench" / "wrk_post.lua"
BIN = Path(sys.executable).parent


# --- the ceiling: parse the body, return a constant ------------------------------------------


async def lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan until shutdown (the ceiling apps have nothing to start)."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    return body


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    import orjson

    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    status, out = 200, b'{"predictions":["<=50K"]}'
    if scope["method"] == "POST":
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            status, out = 400, b'{"error":"bad json"}'
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def run_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(
        bare_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


# --- building the two models ------------------------------------------------------------------


def build_keel(tmp: Path, export: bool = False) -> tuple[Any, Any, bytes | None]:
    """keel's Adult LightGBM in a project at ``tmp/proj``: ingest, default 400-tree model,
    register, alias ``production``; with ``export``, its ONNX graph too. With the test
    split as holdout keel fits on the whole train frame, as the MLflow pipeline below does:
    the same model on both servers (by default keel holds out 20%)."""
    import keel.data
    import keel.datasets
    import keel.export
    import keel.project
    import keel.registry
    import keel.train

    paths = keel.datasets.write_adult_csv(tmp / "data")
    proj = keel.project.init(tmp / "proj")
    ds = keel.data.ingest(proj.store, paths["train"], name="adult-train").dataset
    hold = keel.data.ingest(proj.store, paths["test"], name="adult-test").dataset
    res = keel.train.train(proj.store, ds.ref, "income", holdout=hold.ref)
    res = res.final if hasattr(res, "final") else res
    mv = res.register(proj.store, "adult")
    keel.registry.set_alias(proj.store, mv.ref, "production")
    graph = None
    if export:
        keel.export.export(proj.store, mv.ref)
        graph, _ = keel.export.load_export(proj.store, mv.ref)
    if hasattr(proj.store, "close"):
        proj.store.close()
    return res, mv, graph


def build(tmp: Path) -> dict[str, Any]:
    import lightgbm
    import mlflow
    from sklearn.pipeline import Pipeline

    import keel.datasets
    import keel.train
    from keel.features import compile_spec
    from keel.train._train import _load_spec

    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    res, mv, _ = build_keel(tmp)
    info["keel_build_s"] = time.perf_counter() - t0
    info["keel_model"] = {"ref": str(mv.ref), "kind": res.model_kind, "params": res.params}

    t0 = time.perf_counter()
    train, test = keel.datasets.adult("train"), keel.datasets.adult("test")
    types = {c: ("int" if train[c].dtype.kind == "i" else "string") for c in train.columns}
    inputs = [c for c in train.columns if c != "income"]
    spec = _load_spec(None, types, "income")
    defaults = dict(keel.train.ZOO["lightgbm"].defaults)
    pipe = Pipeline(
        [
            ("features", compile_spec(spec, inputs)),
            ("model", lightgbm.LGBMClassifier(**defaults, random_state=0, verbose=-1)),
        ]
    )
    pipe.fit(train[inputs], train["income"].to_numpy().astype(str))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    # Artifacts next to the store, not in ./mlruns (MLflow's default for a SQLite store).
    art = (tmp / "mlartifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", artifact_location=art))
    with mlflow.start_run():
        # MLflow's default format (skops) refuses unlisted types; list the pipeline's.
        logged = mlflow.sklearn.log_model(
            pipe,
            name="model",
            input_example=train[inputs].head(5),
            skops_trusted_types=TRUSTED,
        )
    info["mlflow_build_s"] = time.perf_counter() - t0
    info["mlflow_model_uri"] = logged.model_uri
    info["lightgbm_defaults"] = defaults
    rows = json.loads(test[inputs].head(100).to_json(orient="records"))
    return {"proj": tmp / "proj", "model_uri": logged.model_uri, "rows": rows, "info": info}


# --- servers and load -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.fh = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, url: str, timeout: float) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready at {url} in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        self.fh.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Workers that outlived the parent are still in its group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.fh.close()


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def labels(out: Any) -> list[str]:
    """The predicted labels in a keel or MLflow response, as strings."""
    if isinstance(out, dict):
        for key in ("predictions", "outputs", "rows", "results"):
            if key in out:
                return labels(out[key])
        for key in ("label", "prediction", "predicted"):
            if key in out:
                return [str(out[key])]
        raise ValueError(f"no predictions in {str(out)[:300]}")
    if isinstance(out, list):
        flat: list[str] = []
        for x in out:
            flat += labels(x) if isinstance(x, (dict, list)) else [str(x)]
        return flat
    return [str(out)]


def wrk(url: str, body: Path, conns: int, seconds: float) -> dict[str, Any]:
    argv = [
        shutil.which("wrk") or "/usr/bin/wrk",
        f"-t{min(2, conns)}",
        f"-c{conns}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    env = {**os.environ, "WRK_BODY": str(body)}
    p = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-2000:]} {p.stderr[-2000:]}")
    r = json.loads(line.removeprefix("WRK_JSON "))
    secs = r["duration_us"] / 1e6
    errors = sum(r[k] for k in r if k.startswith("err_"))
    return {
        "wrk": r,
        "seconds": secs,
        "requests": r["requests"],
        "req_per_s": r["requests"] / secs,
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "errors": errors,
        "argv": argv[:-1] + ["<url>"],
    }


def load_server(
    server: str,
    routes: dict[str, str],
    bodies: dict[str, dict[int, Path]],
    conc: list[int],
    seconds: float,
    warmup: float,
) -> list[dict[str, Any]]:
    cells = []
    for route, url in routes.items():
        for n_rows, body in bodies[route].items():
            if warmup > 0:
                wrk(url, body, min(conc), warmup)
            for c in conc:
                r = wrk(url, body, c, seconds)
                r.update(server=server, route=route, concurrency=c, body_rows=n_rows)
                r["rows_per_s"] = r["req_per_s"] * n_rows
                cells.append(r)
                print(
                    f"  {server} {route} c={c} rows={n_rows}: {r['req_per_s']:,.0f} req/s "
                    f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms errors {r['errors']}",
                    flush=True,
                )
    return cells


def pick(cells: list[dict[str, Any]], server: str, route: str, c: int, n: int) -> dict[str, Any]:
    for x in cells:
        if (x["server"], x["route"], x["concurrency"], x["body_rows"]) == (server, route, c, n):
            return x
    raise KeyError((server, route, c, n))


def goals(cells: list[dict[str, Any]], conc: list[int], keel_routes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "keel_over_mlflow_single_row_rps_target": 50.0,
        "keel_p99_at_most_fraction_of_mlflow": 1 / 20,
        "keel_share_of_ceiling_rps_target": 0.5,
        "checks": [],
    }
    for route in keel_routes:
        for c in conc:
            k = pick(cells, "keel", route, c, 1)
            m = pick(cells, "mlflow", "/invocations", c, 1)
            b = pick(cells, "bare ASGI", "/", c, 1)
            speed = k["req_per_s"] / m["req_per_s"] if m["req_per_s"] else float("inf")
            p99 = k["p99_ms"] / m["p99_ms"] if m["p99_ms"] else float("inf")
            share = k["req_per_s"] / b["req_per_s"]
            out["checks"].append(
                {
                    "keel_route": route,
                    "concurrency": c,
                    "keel_over_mlflow_rps": speed,
                    "rps_met": speed >= 50.0,
                    "keel_p99_over_mlflow_p99": p99,
                    "p99_met": p99 <= 1 / 20,
                    "keel_share_of_ceiling_rps": share,
                    "ceiling_met": share >= 0.5,
                    "keel_or_mlflow_errors": k["errors"] + m["errors"],
                }
            )
    ch = out["checks"]
    out["all_rps_met"] = all(x["rps_met"] for x in ch)
    out["all_p99_met"] = all(x["p99_met"] for x in ch)
    out["all_ceiling_met"] = all(x["ceiling_met"] for x in ch)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds per wrk cell")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk before each body")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    p.add_argument("--batch-rows", type=int, default=100)
    p.add_argument("--bare-app", type=int, metavar="PORT", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.bare_app:
        run_bare(a.bare_app)
        return 0
    if not LUA.is_file() or not (shutil.which("wrk") or Path("/usr/bin/wrk").exists()):
        print("bench_serve: needs wrk and bench/wrk_post.lua", file=sys.stderr)
        return 2

    # A plain kill still stops the servers (the finally below); they have their own groups.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-serve-"))
    servers: list[Server] = []
    # As from an activated venv: `mlflow models serve` execs `uvicorn` from PATH.
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}
    try:
        print(f"building models in {tmp} ...", flush=True)
        built = build(tmp)
        env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
        rows = built["rows"]
        sizes = {1: rows[:1], a.batch_rows: rows[: a.batch_rows]}
        bodies_dir = tmp / "bodies"
        bodies_dir.mkdir()
        body_files: dict[str, dict[int, Path]] = {"own": {}, "mlflow": {}}
        for n, rs in sizes.items():
            for kind, payload in (("own", {"rows": rs}), ("mlflow", {"dataframe_records": rs})):
                f = bodies_dir / f"{kind}-{n}.json"
                f.write_text(json.dumps(payload))
                body_files[kind][n] = f
        cells: list[dict[str, Any]] = []
        ready: dict[str, float] = {}
        check: dict[str, Any] = {}

        # keel: one process, uvicorn with one worker (its only mode).
        port = free_port()
        keel_argv = [str(BIN / "keel"), "serve", "adult", "--port", str(port)]
        keel_argv += ["-C", str(built["proj"])]
        s = Server("keel", keel_argv, tmp / "keel.log", env)
        servers.append(s)
        base = f"http://127.0.0.1:{port}"
        ready["keel_s"] = s.wait_ready(base + "/readyz", 120)
        own = post(base + "/models/adult/predict", {"rows": rows})
        inv = post(base + "/invocations", {"dataframe_records": rows})
        check["keel_own_sample"] = str(own)[:300]
        check["keel_invocations_sample"] = str(inv)[:300]
        keel_own, keel_inv = labels(own), labels(inv)
        keel_routes = {"/models/adult/predict": base + "/models/adult/predict"}
        keel_routes["/invocations"] = base + "/invocations"
        print("loading keel ...", flush=True)
        cells += load_server(
            "keel",
            keel_routes,
            {"/models/adult/predict": body_files["own"], "/invocations": body_files["mlflow"]},
            a.concurrency,
            a.duration,
            a.warmup,
        )
        s.stop()

        # MLflow: its defaults (one uvicorn worker, per `mlflow models serve --help`).
        port = free_port()
        ml_argv = [str(BIN / "mlflow"), "models", "serve", "-m", built["model_uri"]]
        ml_argv += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
        s = Server("mlflow", ml_argv, tmp / "mlflow.log", env)
        servers.append(s)
        base = f"http://127.0.0.1:{port}"
        ready["mlflow_s"] = s.wait_ready(base + "/ping", 300)
        ml = post(base + "/invocations", {"dataframe_records": rows})
        check["mlflow_sample"] = str(ml)[:300]
        ml_labels = labels(ml)
        check["rows"] = len(rows)
        check["keel_own_equals_mlflow"] = keel_own == ml_labels
        check["keel_invocations_equals_mlflow"] = keel_inv == ml_labels
        check["agree_keel_own_mlflow"] = sum(
            x == y for x, y in zip(keel_own, ml_labels, strict=False)
        )
        if not (check["keel_own_equals_mlflow"] and check["keel_invocations_equals_mlflow"]):
            raise AssertionError(f"keel and MLflow disagree: {check}")
        print(f"labels agree on {len(rows)} rows; loading MLflow ...", flush=True)
        cells += load_server(
            "mlflow",
            {"/invocations": base + "/invocations"},
            {"/invocations": body_files["mlflow"]},
            a.concurrency,
            a.duration,
            a.warmup,
        )
        mlflow_log = s.tail(6000)
        s.stop()

        # The ceiling: same server stack as keel, no model.
        port = free_port()
        bare_argv = [sys.executable, str(Path(__file__).resolve()), "--bare-app", str(port)]
        s = Server("bare ASGI", bare_argv, tmp / "bare.log", env)
        servers.append(s)
        base = f"http://127.0.0.1:{port}"
        ready["bare_s"] = s.wait_ready(base + "/", 60)
        print("loading the bare ASGI app ...", flush=True)
        cells += load_server(
            "bare ASGI",
            {"/": base + "/"},
            {"/": body_files["mlflow"]},
            a.concurrency,
            a.duration,
            a.warmup,
        )
        s.stop()
    finally:
        for s in servers:
            s.stop()
        if sys.exc_info()[0] is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    g = goals(cells, a.concurrency, list(keel_routes))
    heads = [
        "server",
        "route",
        "conc",
        "body rows",
        "req/s",
        "rows/s",
        "p50 ms",
        "p99 ms",
        "errors",
    ]
    print()
    print(
        table(
            heads,
            [
                [
                    x["server"],
                    x["route"],
                    x["concurrency"],
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
    for x in g["checks"]:
        print(
            f"keel {x['keel_route']} c={x['concurrency']}, one row: "
            f"{x['keel_over_mlflow_rps']:.0f}× MLflow req/s (goal ≥ 50: "
            f"{'met' if x['rps_met'] else 'NOT met'}), p99 {x['keel_p99_over_mlflow_p99']:.4f} "
            f"of MLflow's (goal ≤ 0.05: {'met' if x['p99_met'] else 'NOT met'}), "
            f"{x['keel_share_of_ceiling_rps']:.0%} of the bare app (goal ≥ 50%: "
            f"{'met' if x['ceiling_met'] else 'NOT met'})"
        )
    shutil.rmtree(tmp, ignore_errors=True)
    workers_note = "1 (mlflow models serve default, see --help: 'default: 1')"
    results = {
        "machine": machine(PACKAGES),
        "config": {
            "duration_s": a.duration,
            "warmup_s": a.warmup,
            "concurrency": a.concurrency,
            "body_rows": sorted(sizes),
            "wrk_threads": "min(2, connections)",
            "wrk_timeout_s": 10,
            "workers": {"keel": 1, "mlflow": workers_note, "bare ASGI": 1},
            "keel_argv": keel_argv[:4] + ["<port>", "-C", "<proj>"],
            "mlflow_argv": ml_argv[:4] + ["<uri>"] + ml_argv[5:8] + ["<port>", "-h", "127.0.0.1"],
            "bare_app": "bench_serve.py --bare-app: uvicorn, 1 worker, uvloop + httptools, "
            "orjson.loads(body), constant JSON reply",
            "one_server_at_a_time": True,
            "errors": "wrk socket errors (connect, read, write, timeout) + non-2xx/3xx",
            "build": built["info"],
            "ready_s": ready,
        },
        "correctness": check,
        "results": cells,
        "goals": g,
        "mlflow_log_tail": mlflow_log[-2000:],
    }
    path = write_results("serve", results)
    print(f"\nwrote {path.relative_to(ROOT)}")
    ok = all(x["errors"] == 0 for x in cells)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
