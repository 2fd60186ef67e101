"""Run every benchmark (each in its own process), then print a markdown snippet of the results
for the README.

    .venv/bin/python bench/run_all.py                  # what `make bench` runs
    .venv/bin/python bench/run_all.py --snippet-only   # reprint from bench/results/*.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from _common import RESULTS, ROOT

BENCHMARKS = {"tracking": "bench/bench_tracking.py", "ingest": "bench/bench_ingest.py"}
COMMAND = "make bench  # = .venv/bin/python bench/run_all.py"


def run(name: str, script: str) -> bool:
    print(f"\n=== {name}: {script} ===", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, script], cwd=ROOT, check=False).returncode
    print(f"=== {name}: exit {rc} in {time.perf_counter() - t0:.0f} s ===", flush=True)
    return rc == 0


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _s(x: float) -> str:
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def snippet(tracking: dict[str, Any] | None, ingest: dict[str, Any] | None) -> str:
    rows: list[str] = []
    notes: list[str] = []
    about = (tracking or ingest or {}).get("machine", {})
    if tracking:
        c, k, m = tracking["config"], tracking["results"]["keel"], tracking["results"]["mlflow"]
        r = tracking["ratios"]
        rows += [
            f"| Tracking (a): {c['runs']} runs × ({c['params']} params + {c['steps']} metric "
            f"steps), one call per step | {_s(k['a_wall_median_s'])} · "
            f"{_n(k['a_metric_writes_per_s'])} writes/s | MLflow {_s(m['a_wall_median_s'])} · "
            f"{_n(m['a_metric_writes_per_s'])} writes/s | "
            f"**{r['a_keel_over_mlflow_throughput']:.1f}×** |",
            f"| Tracking (b): {c['calls']:,} single `log_metric` calls into one run | "
            f"{_s(k['b_wall_median_s'])} · {_n(k['b_metric_writes_per_s'])} writes/s | "
            f"MLflow {_s(m['b_wall_median_s'])} · {_n(m['b_metric_writes_per_s'])} writes/s | "
            f"**{r['b_keel_over_mlflow_throughput']:.1f}×** |",
            f"| Tracking (b′): as (b), MLflow through `MlflowClient` ({c['client_calls']:,} "
            f"calls) | {_n(k['b_metric_writes_per_s'])} writes/s | "
            f"MLflow {_n(m['client_metric_writes_per_s'])} writes/s | "
            f"**{r['b_keel_over_mlflow_client_throughput']:.1f}×** |",
        ]
        notes.append(
            f"Tracking: SQLite for both (keel {c['keel_sqlite']}; MLflow {c['mlflow_sqlite']}), "
            f"MLflow via its fluent API; a fresh store per tool and repeat, created and warmed "
            f"up before timing; every metric value and param read back and counted afterwards."
        )
        if c.get("calls_reduced"):
            notes.append(
                f"(b) uses {c['calls']:,} calls rather than {c['calls_requested']:,}, for both "
                f"tools, to keep the run short: MLflow needs {m['b_ms_per_call']:.1f} ms a call "
                f"here."
            )
        b = tracking["keel_start_run_breakdown"]
        notes.append(
            f"keel's `start_run` costs {b['start_run_ms']:.1f} ms, of which the git-commit lookup "
            f"~{b['git_rev_parse_ms']:.1f} ms ({b['git_share_of_start_run']:.0%}); "
            f"a whole run of (a) costs {b['run_ms']:.1f} ms."
        )
    if ingest:
        c, res, r = ingest["config"], ingest["results"], ingest["ratios"]
        k = res["keel.data.ingest"]
        pd_, pa_ = res["pandas.read_csv"], res["pyarrow.csv.read_csv"]
        rows.append(
            f"| Ingest: {c['csv']['rows']:,}-row Adult-shaped CSV ({c['csv']['bytes'] / 1e6:.0f}"
            f" MB): read, infer schema, validate, profile, store as Parquet | "
            f"{_s(k['wall_median_s'])} · {_n(k['rows_per_s'])} rows/s | read only: "
            f"`pandas.read_csv` {_s(pd_['wall_median_s'])} · {_n(pd_['rows_per_s'])} rows/s; "
            f"`pyarrow.csv.read_csv` {_s(pa_['wall_median_s'])} · {_n(pa_['rows_per_s'])} "
            f"rows/s | {1 / r['keel_ingest_over_pandas_read_time']:.2f}× / "
            f"{1 / r['keel_ingest_over_pyarrow_read_time']:.2f}× |"
        )
        notes.append(
            "Ingest: the readers only parse the file; keel also validates every cell, profiles "
            "and writes Parquet + records, so its ratio is the cost of those guarantees, "
            "not a like-for-like race."
        )
    reps = (tracking or ingest or {}).get("config", {}).get("repeats", "?")
    pk = about.get("packages", {})
    versions = ", ".join(f"{n} {v}" for n, v in pk.items() if v and n in _SHOWN)
    head = (
        f"Measured {about.get('date', '?')[:10]} on {about.get('cores', '?')} cores "
        f"({about.get('cpu', '?')}), Python {about.get('python', '?')}, {versions}. "
        f"Medians of {reps} repeats; keel and the other tool in the same process, same run; "
        f"ratio = keel throughput ÷ the other's."
    )
    lines = [
        "### Benchmarks",
        "",
        head,
        "",
        "| Workload | keel | Other tool | Ratio (keel ÷ other) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        *[f"- {n}" for n in notes],
        "",
        f"Reproduce: `{COMMAND}`; raw numbers, machine and command in `bench/results/*.json`.",
    ]
    return "\n".join(lines)


_SHOWN = ("keel", "mlflow", "pandas", "pyarrow", "sqlalchemy")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    p.add_argument("--snippet-only", action="store_true", help="don't run, reprint the snippet")
    a = p.parse_args(argv)

    ok = True
    if not a.snippet_only:
        for name in a.only or BENCHMARKS:
            ok = run(name, BENCHMARKS[name]) and ok
    print("\n" + snippet(load("tracking"), load("ingest")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
