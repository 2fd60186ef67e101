"""Server CPU per request: ``keel serve`` (one worker) against the two ceilings of
bench_serve_workers.py, a minimal app that parses the same body and runs the same ONNX graph
and a bare ASGI app that parses the body and returns a constant, on ``POST /invocations``
with single-row and 100-row ``dataframe_records`` bodies.

req/s on a shared machine says as much about the other processes as about the server, so
this reads the CPU seconds the server's process group spent (``/proc/<pid>/stat``, every
thread: the event loop, the model's thread, the prediction log's flusher) before and after
a fixed ``wrk`` run and divides by the requests answered. Servers run one after another,
``--repeats`` rounds of all of them (interleaved, so a change in the machine's load falls
on each); the medians are reported with the load average. Ratios of CPU per request carry
across machines better than req/s; absolute figures belong to the CPU they came from.

    .venv/bin/python bench/bench_serve_cpu.py                 # writes bench/results/serve_cpu.json
    .venv/bin/python bench/bench_serve_cpu.py --duration 5 --repeats 2 --servers keel
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT, machine, median, table, write_results
from bench_serve import LUA, Server, build_keel, free_port, wrk

BIN = Path(sys.executable).parent
PACKAGES = ("keel", "lightgbm", "onnxruntime", "uvicorn", "uvloop", "httptools", "orjson")
SERVERS = ("keel", "minimal ONNX app", "bare ASGI")
TICK = os.sysconf("SC_CLK_TCK")


def build(tmp: Path, batch_rows: int) -> dict[str, Any]:
    """keel's Adult LightGBM (as bench_serve.py builds it, without MLflow's twin), exported;
    its ONNX graph in a file for the minimal app; the bodies."""
    import keel.datasets

    _, _, graph = build_keel(tmp, export=True)
    assert graph is not None
    (tmp / "model.onnx").write_bytes(graph)
    test = keel.datasets.adult("test")
    rows = json.loads(test[[c for c in test.columns if c != "income"]].head(batch_rows).to_json(
        orient="records"
    ))  # fmt: skip
    bodies = {}
    for n in (1, batch_rows):
        bodies[n] = tmp / f"body-{n}.json"
        bodies[n].write_text(json.dumps({"dataframe_records": rows[:n]}))
    return {"proj": tmp / "proj", "graph": tmp / "model.onnx", "bodies": bodies}


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in the process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def start(name: str, built: dict[str, Any], tmp: Path, env: dict[str, str]) -> tuple[Server, str]:
    port = free_port()
    if name == "keel":
        argv = [str(BIN / "keel"), "serve", "adult", "--port", str(port), "-C", str(built["proj"])]
        ready, url = "/readyz", f"http://127.0.0.1:{port}/invocations"
    else:
        kind = "onnx" if name == "minimal ONNX app" else "bare"
        me = ROOT / "bench" / "bench_serve_workers.py"
        argv = [sys.executable, str(me), "--app", kind, str(port), str(built["graph"])]
        ready, url = "/", f"http://127.0.0.1:{port}/"
    server = Server(name, argv, tmp / f"{name.replace(' ', '-')}.log", env)
    server.wait_ready(f"http://127.0.0.1:{port}{ready}", 300)
    return server, url


def measure(server: Server, url: str, body: Path, conc: int, seconds: int) -> dict[str, Any]:
    before, load = group_cpu_s(server.proc.pid), os.getloadavg()[0]
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = wrk(url, body, conc, seconds)
    cpu = group_cpu_s(server.proc.pid) - before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - kids.ru_utime) + (after.ru_stime - kids.ru_stime)
    return {
        # cores the server kept busy, and the load generator's own CPU per request: on a
        # machine where both share the cores, N workers can at most reach
        # cores / (server + wrk CPU per request) requests a second
        "server_cores_busy": cpu / max(run["seconds"], 1e-9),
        "wrk_cpu_ms_per_request": wrk_cpu / max(run["requests"], 1) * 1000,
        "req_per_s": run["req_per_s"],
        "p99_ms": run["p99_ms"],
        "errors": run["errors"],
        "requests": run["requests"],
        "cpu_s": cpu,
        "cpu_ms_per_request": cpu / max(run["requests"], 1) * 1000,
        "load_1min": load,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each body")
    p.add_argument("--repeats", type=int, default=3, help="rounds over every server (median)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch-rows", type=int, default=100)
    a = p.parse_args(argv)
    if not LUA.is_file() or not (shutil.which("wrk") or Path("/usr/bin/wrk").exists()):
        print("bench_serve_cpu: needs wrk and bench/wrk_post.lua", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-cpu-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        print(f"building the model in {tmp} ...", flush=True)
        built = build(tmp, a.batch_rows)
        for round_ in range(a.repeats):
            for name in a.servers:
                server, url = start(name, built, tmp, env)
                try:
                    for n_rows, body in built["bodies"].items():
                        if a.warmup:
                            wrk(url, body, a.concurrency, a.warmup)
                        r = measure(server, url, body, a.concurrency, a.duration)
                        runs.setdefault((name, n_rows), []).append(r)
                        print(
                            f"  round {round_ + 1} {name}, {n_rows} row(s): "
                            f"{r['cpu_ms_per_request']:.3f} ms CPU/request, "
                            f"{r['req_per_s']:,.0f} req/s, load {r['load_1min']:.1f}",
                            flush=True,
                        )
                finally:
                    server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cells = []
    for (name, n_rows), rs in runs.items():
        cpu = median([r["cpu_ms_per_request"] for r in rs])
        cells.append(
            {
                "server": name,
                "body_rows": n_rows,
                "cpu_ms_per_request": cpu,
                "cpu_us_per_row": cpu * 1000 / n_rows,
                "req_per_s": median([r["req_per_s"] for r in rs]),
                "p99_ms": median([r["p99_ms"] for r in rs]),
                "errors": sum(r["errors"] for r in rs),
                "load_1min": [r["load_1min"] for r in rs],
                "server_cores_busy": median([r["server_cores_busy"] for r in rs]),
                "wrk_cpu_ms_per_request": median([r["wrk_cpu_ms_per_request"] for r in rs]),
                "runs": rs,
            }
        )
    by = {(c["server"], c["body_rows"]): c for c in cells}
    ratios: dict[str, float] = {}
    for other in ("minimal ONNX app", "bare ASGI"):
        for n_rows in built["bodies"]:
            if ("keel", n_rows) in by and (other, n_rows) in by:
                mine, theirs = by[("keel", n_rows)], by[(other, n_rows)]
                key = f"{other}/keel CPU per request, {n_rows} row(s)"
                ratios[key] = theirs["cpu_ms_per_request"] / mine["cpu_ms_per_request"]
    # the most a second worker can add on this machine: both workers and the load generator
    # share os.cpu_count() cores, so two workers reach at most
    # cores / (server + wrk CPU per request) requests a second, against one worker's rate
    cores = os.cpu_count() or 1
    bounds: dict[str, float] = {}
    for n_rows in built["bodies"]:
        k = by.get(("keel", n_rows))
        if k is not None:
            most = cores / ((k["cpu_ms_per_request"] + k["wrk_cpu_ms_per_request"]) / 1000)
            bounds[f"most 2 workers / 1 worker on {cores} shared cores, {n_rows} row(s)"] = (
                most / k["req_per_s"]
            )
    heads = ["server", "body rows", "CPU ms/req", "CPU µs/row", "cores busy", "wrk CPU ms/req",
             "req/s", "p99 ms", "errors"]  # fmt: skip
    print()
    print(
        table(
            heads,
            [
                [
                    c["server"],
                    c["body_rows"],
                    c["cpu_ms_per_request"],
                    c["cpu_us_per_row"],
                    c["server_cores_busy"],
                    c["wrk_cpu_ms_per_request"],
                    c["req_per_s"],
                    c["p99_ms"],
                    c["errors"],
                ]
                for c in cells
            ],
        )
    )
    print()
    for key, value in {**ratios, **bounds}.items():
        print(f"{key}: {value:.2f}")
    out = write_results(
        "serve_cpu",
        {
            "machine": machine(PACKAGES),
            "config": {
                "servers": a.servers,
                "duration_s": a.duration,
                "warmup_s": a.warmup,
                "repeats": a.repeats,
                "concurrency": a.concurrency,
                "body_rows": list(built["bodies"]),
                "route": "POST /invocations with {'dataframe_records': [...]} on every server",
                "cpu": "user+system CPU of the server's process group over the wrk run",
            },
            "results": cells,
            "ratios": ratios,
            "worker_scaling_bound": bounds,
        },
    )
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0 if all(c["errors"] == 0 for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
