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
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, cpu_model, machine

BENCHMARKS = {
    "tracking": "bench/bench_tracking.py",
    "ingest": "bench/bench_ingest.py",
    "predict": "bench/bench_predict.py",
    "serve": "bench/bench_serve.py",
    "fairness": "bench/bench_fairness.py",
    "explain": "bench/bench_explain.py",
    "explain_served": "bench/bench_explain_served.py",
    "drift": "bench/bench_drift.py",
}
NAMES = tuple(BENCHMARKS)  # the order of snippet()'s arguments
COMMAND = "make bench  # = .venv/bin/python bench/run_all.py"


def run(name: str, script: str) -> tuple[bool, float]:
    print(f"\n=== {name}: {script} ===", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, script], cwd=ROOT, check=False).returncode
    seconds = time.perf_counter() - t0
    print(f"=== {name}: exit {rc} in {seconds:.0f} s ===", flush=True)
    return rc == 0, seconds


def record(outcomes: dict[str, tuple[bool, float]], path: Path | None = None) -> Path:
    """Write what this run of run_all did, and on which machine (CPU model, cores, load):
    ``outcomes`` maps a benchmark to (exited 0, seconds)."""
    path = path or RESULTS / "run_all.json"
    doc = {
        "machine": machine([]),
        "benchmarks": {n: {"ok": ok, "seconds": round(t, 1)} for n, (ok, t) in outcomes.items()},
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _s(x: float) -> str:
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _ms(x: float) -> str:
    return f"{x:.3g} ms" if x < 100 else f"{x:.0f} ms"


def snippet(
    tracking: dict[str, Any] | None,
    ingest: dict[str, Any] | None,
    predict: dict[str, Any] | None = None,
    serve: dict[str, Any] | None = None,
    fairness: dict[str, Any] | None = None,
    explain: dict[str, Any] | None = None,
    explain_served: dict[str, Any] | None = None,
    drift: dict[str, Any] | None = None,
) -> str:
    rows: list[str] = []
    notes: list[str] = []
    about = (tracking or ingest or predict or serve or fairness or explain or {}).get("machine", {})
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
    if predict:
        c, res, r = predict["config"], predict["results"], predict["ratios"]
        g1 = predict["goals"]["onnx_single_row_at_most_1_50_of_sklearn_pipeline"]
        g2 = predict["goals"]["onnx_single_row_within_1_5x_of_bare_booster"]
        v = predict["variants"]
        s = {k: x["single_median_ms"] for k, x in res.items()}
        b = {k: x["batch_median_ms"] for k, x in res.items()}
        n = f"{c['batch_rows']:,}"
        rows += [
            f"| Predict, one Adult row in-process: keel ONNX graph ({v['fp32']['booster_trees']}-"
            f"tree LightGBM, onnxruntime 1 thread); run alone / with `onnx_inputs` from the "
            f"DataFrame row | {_ms(s['onnx run'])} / {_ms(s['onnx feed+run'])} | sklearn "
            f"Pipeline `predict_proba` {_ms(s['sklearn pipeline'])} | "
            f"**{r['single_pipeline_over_onnx_run']:.0f}×** / "
            f"{r['single_pipeline_over_onnx_feed_run']:.0f}× |",
            f"| Predict, one row: as above, against the bare booster on a pre-encoded row | "
            f"{_ms(s['onnx run'])} / {_ms(s['onnx feed+run'])} | `booster.predict` "
            f"{_ms(s['booster'])} (`num_threads=1`: {_ms(s['booster num_threads=1'])}) | "
            f"**{g2['booster_ms'] / s['onnx run']:.2f}×** / "
            f"{g2['booster_ms'] / s['onnx feed+run']:.2f}× |",
            f"| Predict, {n} rows: as above | {_ms(b['onnx run'])} / "
            f"{_ms(b['onnx feed+run'])} | sklearn Pipeline {_ms(b['sklearn pipeline'])}; "
            f"booster {_ms(b['booster'])} (`num_threads=1`: "
            f"{_ms(b['booster num_threads=1'])}) | {r['batch_pipeline_over_onnx_run']:.1f}× / "
            f"{r['batch_pipeline_over_onnx_feed_run']:.1f}× vs pipeline |",
            f"| Predict, one row: smaller variants as ONNX, pruned "
            f"({v['pruned']['booster_trees']} trees) / distilled "
            f"({v['distilled']['booster_trees']} trees × {v['distilled']['detail']['leaves']} "
            f"leaves); run alone | {_ms(s['onnx pruned run'])} / "
            f"{_ms(s['onnx distilled run'])} | sklearn Pipeline (full model) "
            f"{_ms(s['sklearn pipeline'])} | {r['single_pipeline_over_onnx_pruned_run']:.0f}× / "
            f"{r['single_pipeline_over_onnx_distilled_run']:.0f}× |",
        ]
        yn = lambda ok: "met" if ok else "**not met**"  # noqa: E731
        notes.append(
            f"Predict: medians of {c['single_calls']:,} one-row calls ({c['single_pool_rows']} "
            f"distinct Adult test rows, order of methods rotated) and {c['batch_calls']} "
            f"{n}-row calls; every method checked to give the same probabilities (to "
            f"{c['tolerance']:g}). The booster gets rows encoded beforehand (not timed), the "
            f"ceiling for a user who hand-encodes; ratios against it use the faster of its "
            f"default call and `num_threads=1`. Goals for keel's ONNX graph, one row: ≤ 1/"
            f"{g1['target_speedup']:.0f} of the sklearn pipeline's latency: run alone "
            f"{yn(g1['run_only_met'])} ({g1['run_only']:.0f}×), with feed building "
            f"{yn(g1['feed_and_run_met'])} ({g1['feed_and_run']:.0f}×); within "
            f"{g2['target_ratio']:g}× of the bare booster: run alone {yn(g2['run_only_met'])} "
            f"({g2['run_only']:.2f}×), with feed building {yn(g2['feed_and_run_met'])} "
            f"({g2['feed_and_run']:.2f}×). Building the feed from a one-row DataFrame costs more "
            f"than running the graph."
        )
    parts = (
        (serve, _serve_rows),
        (fairness, _fairness_rows),
        (explain, _explain_rows),
        (explain_served, _explain_served_rows),
        (drift, _drift_rows),
    )
    for part, make in parts:
        if part:
            rows_, note = make(part)
            rows += rows_
            notes.append(note)
    reps = (tracking or ingest or predict or {}).get("config", {}).get("repeats", "?")
    parts_by_name = dict(
        zip(
            NAMES,
            (tracking, ingest, predict, serve, fairness, explain, explain_served, drift),
            strict=True,
        )
    )
    present = {n: d["machine"] for n, d in parts_by_name.items() if d and d.get("machine")}
    pk: dict[str, Any] = {}
    for one in (tracking, ingest, predict, serve, fairness, explain):
        pk.update((one or {}).get("machine", {}).get("packages", {}))
    versions = ", ".join(f"{n} {v}" for n, v in pk.items() if v and n in _SHOWN)
    cpus = sorted({str(m.get("cpu", "?")) for m in present.values()})
    where = (
        f"{about.get('cores', '?')} cores of one CPU, {cpus[0]} (its /proc/cpuinfo model name)"
        if len(cpus) == 1
        else "; ".join(
            f"{n} on {m.get('cores', '?')} cores of {m.get('cpu', '?')}" for n, m in present.items()
        )
    )
    head = (
        f"Measured {about.get('date', '?')[:10]} on {where}, Python "
        f"{about.get('python', '?')}, {versions}. Medians of {reps} repeats. The ratio leads: "
        f"keel and the other tool ran in the same process or on the same cores in the same "
        f"run, so the ratio is the figure to compare across machines. The absolute figures are "
        f"that CPU's at the load below; on another CPU they differ, so measure your own with "
        f"the command at the end."
    )
    loads = ", ".join(f"{n} {_load(m, 'start')} → {_load(m, 'end')}" for n, m in present.items())
    lines = [
        "## Benchmarks",
        "",
        head,
        "",
        f"| Workload | Ratio (keel ÷ other) | keel ({_cpu_short(cpus)}) | "
        f"Other tool ({_cpu_short(cpus)}) |",
        "|---|---:|---:|---:|",
        *[_ratio_first(r) for r in rows],
        "",
        f"- Load average (1 min) at the start → end of each benchmark: {loads}.",
        *[f"- {n}" for n in notes],
        "",
        f"Reproduce: `{COMMAND}`; raw numbers, machine and command in `bench/results/*.json`.",
    ]
    return "\n".join(lines)


def _load(m: dict[str, Any], when: str) -> str:
    la = m.get(f"loadavg_1_5_15_at_{when}") or ["?"]
    return f"{la[0]:g}" if isinstance(la[0], int | float) else "?"


def _cpu_short(cpus: list[str]) -> str:
    return cpus[0] if len(cpus) == 1 else "CPU per benchmark above"


def _ratio_first(row: str) -> str:
    """``| workload | keel | other | ratio |`` as ``| workload | ratio | keel | other |``."""
    cells = row.strip().removeprefix("| ").removesuffix(" |").split(" | ")
    if len(cells) != 4:
        raise ValueError(f"expected 4 cells in a README row, got {len(cells)}: {row}")
    work, keel, other, ratio = cells
    return f"| {work} | {ratio} | {keel} | {other} |"


def _serve_rows(serve: dict[str, Any]) -> tuple[list[str], str]:
    """README rows for bench_serve: one-row and batch req/s, keel vs MLflow, and the goals."""
    c, cells, g, m_ = serve["config"], serve["results"], serve["goals"], serve["machine"]

    def cell(server: str, route: str, conc: int, n: int) -> dict[str, Any]:
        for x in cells:
            if (x["server"], x["route"], x["concurrency"], x["body_rows"]) == (
                server,
                route,
                conc,
                n,
            ):
                return x
        raise KeyError((server, route, conc, n))

    batch = max(c["body_rows"])
    rows = []
    for conc in c["concurrency"]:
        k = cell("keel", "/invocations", conc, 1)
        ko = cell("keel", "/models/adult/predict", conc, 1)
        m = cell("mlflow", "/invocations", conc, 1)
        b = cell("bare ASGI", "/", conc, 1)
        rows.append(
            f"| Serve, one Adult row per request over HTTP, {conc} connections (wrk, "
            f"{c['duration_s']:g} s): `/invocations` / keel's own route | "
            f"{_n(k['req_per_s'])} / {_n(ko['req_per_s'])} req/s · p99 {_ms(k['p99_ms'])} / "
            f"{_ms(ko['p99_ms'])} | `mlflow models serve` {_n(m['req_per_s'])} req/s · p99 "
            f"{_ms(m['p99_ms'])} (bare ASGI app: {_n(b['req_per_s'])} req/s) | "
            f"**{k['req_per_s'] / m['req_per_s']:.0f}×** / "
            f"{ko['req_per_s'] / m['req_per_s']:.0f}× |"
        )
        kb = cell("keel", "/invocations", conc, batch)
        mb = cell("mlflow", "/invocations", conc, batch)
        rows.append(
            f"| Serve, {batch} rows per request, {conc} connections: `/invocations` | "
            f"{_n(kb['rows_per_s'])} rows/s · p99 {_ms(kb['p99_ms'])} | MLflow "
            f"{_n(mb['rows_per_s'])} rows/s · p99 {_ms(mb['p99_ms'])} | "
            f"{kb['rows_per_s'] / mb['rows_per_s']:.1f}× |"
        )
    yn = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    worst = min(g["checks"], key=lambda x: x["keel_over_mlflow_rps"])
    p99 = max(g["checks"], key=lambda x: x["keel_p99_over_mlflow_p99"])
    share = min(g["checks"], key=lambda x: x["keel_share_of_ceiling_rps"])
    errors = sum(x["errors"] for x in cells)
    note = (
        f"Serve: the same LightGBM model (labels checked equal on "
        f"{serve['correctness']['rows']} rows) behind `keel serve` and `mlflow models serve` "
        f"(local env, its defaults: 1 uvicorn worker; keel: 1 process), one server at a time "
        f"on 127.0.0.1, wrk on the same {m_['cores']} cores of the {m_['cpu']} (load average, "
        f"1 min: {_load(m_, 'start')} at the start, {_load(m_, 'end')} at the end); errors "
        f"(socket + non-2xx) in the whole run: "
        f"{errors}. Goals, one row, every route and concurrency: ≥ 50× MLflow's req/s "
        f"{yn(g['all_rps_met'])} (lowest {worst['keel_over_mlflow_rps']:.0f}×); p99 ≤ 1/20 of "
        f"MLflow's {yn(g['all_p99_met'])} (worst {p99['keel_p99_over_mlflow_p99']:.3f}); ≥ 50% "
        f"of a bare ASGI app that only parses the JSON (same uvicorn stack) "
        f"{yn(g['all_ceiling_met'])} (lowest {share['keel_share_of_ceiling_rps']:.0%})."
    )
    return rows, note


def _fairness_rows(fairness: dict[str, Any]) -> tuple[list[str], str]:
    """README row for bench_fairness: keel's group metrics against fairlearn's MetricFrame."""
    c, res = fairness["config"], fairness["results"]
    g = fairness["goals"]["keel_at_least_100x_metricframe"]
    k, m = res["keel group_metrics"], res["fairlearn MetricFrame"]
    enc = res["keel metrics_from_codes (groups encoded once)"]
    rep = res["keel fairness_report (sex, race, sex+race; n_boot=1000)"]
    rows = [
        f"| Fairness: per-group accuracy, selection rate, FPR, FNR of {c['rows']:,} predictions, "
        f"by sex and by race | {_ms(k['wall_median_s'] * 1e3)} (groups encoded once: "
        f"{_ms(enc['wall_median_s'] * 1e3)}) | fairlearn `MetricFrame` "
        f"{_s(m['wall_median_s'])} | **{fairness['ratios']['metricframe_over_keel']:,.0f}×** |"
    ]
    yn = "met" if g["met"] else "**not met**"
    note = (
        f"Fairness: synthetic, seeded, Adult-shaped predictions (sex and race in Adult's "
        f"proportions); keel's values checked equal to MetricFrame's for every group and metric "
        f"(max abs diff {fairness['max_abs_diff']:.2g}, limit {c['tolerance']:g}). keel: median "
        f"of {c['keel_repeats']} runs; MetricFrame: {c['fairlearn_repeats']} timed run (it takes "
        f"~{m['wall_median_s']:.0f} s). keel's whole fairness evidence (sex, race, sex+race, "
        f"every disparity with a 1,000-replicate bootstrap) takes "
        f"{_ms(rep['wall_median_s'] * 1e3)}. Goal ≥ {g['target_speedup']:.0f}× MetricFrame: "
        f"{yn} ({g['speedup']:,.0f}×)."
    )
    return rows, note


def _explain_rows(explain: dict[str, Any]) -> tuple[list[str], str]:
    """README rows for bench_explain: batch TreeSHAP vs shap.TreeExplainer, one-row latency."""
    c, res, r, g = explain["config"], explain["results"], explain["ratios"], explain["goals"]
    k, s, lg = res["keel attributions"], res["shap.TreeExplainer"], res["lightgbm pred_contrib"]
    k1, lg1 = res["keel attributions 1 thread"], res["lightgbm pred_contrib 1 thread"]
    one = res["keel explain_one"]
    rows = [
        f"| Explain {c['rows']:,} Adult rows: exact TreeSHAP of the {c['encoded_columns']}-column "
        f"one-hot LightGBM model, raw rows in, summed back to raw features | "
        f"{_s(k['median_s'])} · {_n(k['rows_per_s'])} rows/s | "
        f"`shap.TreeExplainer(booster).shap_values` {_s(s['median_s'])} (LightGBM "
        f"`pred_contrib` {_s(lg['median_s'])}) | **{r['batch_shap_over_keel']:.1f}×** |",
        f"| Explain, as above, one thread each | {_s(k1['median_s'])} | `pred_contrib` with "
        f"`num_threads=1` {_s(lg1['median_s'])} | "
        f"{r['batch_1thread_pred_contrib_over_keel']:.1f}× |",
        f"| Explain one row in-process: `Explainer.explain_one(dict)` → JSON-ready dict "
        f"({c['single_calls']:,} calls) | median {_ms(one['median_ms'])} · p99 "
        f"{_ms(one['p99_ms'])} | goal ≤ {g['single_row_at_most_5_ms']['target_ms']:g} ms | — |",
    ]
    yn = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    gb, gs = g["batch_no_slower_than_shap_tree_explainer"], g["single_row_at_most_5_ms"]
    note = (
        f"Explain: keel's values equal shap's on every encoded column (largest difference "
        f"{explain['correctness']['max_abs_diff_vs_shap_encoded_columns']:.1e}, goal 1e-6). "
        f"keel asks LightGBM's own `pred_contrib` for one row per cell of each tree's split "
        f"thresholds and copies the answer to the rows in that cell; its time includes the "
        f"feature transform and the sum back to raw features, which shap is spared (it gets "
        f"encoded rows). Medians of {c['repeats']} runs. Goals: batch no slower than "
        f"shap.TreeExplainer {yn(gb['met'])} ({gb['shap_over_keel']:.1f}×); one row ≤ "
        f"{gs['target_ms']:g} ms {yn(gs['met'])} (median {gs['median_ms']:.2f} ms; p99 "
        f"{gs['p99_ms']:.2f} ms {yn(gs['p99_met'])})."
    )
    return rows, note


def _explain_served_rows(served: dict[str, Any]) -> tuple[list[str], str]:
    """README row for bench_explain_served: one explained request over HTTP."""
    goals = served["goals"]
    g = goals.get("served_explanation_p99_at_most_5_ms") or goals["served_explanation_at_most_5_ms"]
    r = served["results"]
    n_requests = served["config"].get("requests_each") or served["config"].get("requests", 0)
    e, p = r["predict + explain"], r["predict"]
    rows = [
        f'| Serve one Adult row with `"explain": true` over HTTP, one request at a time '
        f"({n_requests:,} requests) | median {_ms(e['median_ms'])} · p99 "
        f"{_ms(e['p99_ms'])} (without explain: {_ms(p['median_ms'])} · {_ms(p['p99_ms'])}) "
        f"| goal ≤ {g['target_ms']:g} ms | — |"
    ]
    yn = "met" if g["met"] else "**not met**"
    note = (
        f"Served explanation: `keel serve` in its own process, client on the same cores, "
        f"keep-alive, plain and explained requests in alternating blocks after a warm-up; one "
        f"row is explained by a compiled TreeSHAP. Goal: a served explanation's p99 ≤ "
        f"{g['target_ms']:g} ms: {yn} (p99 {g['p99_ms']:.2f} ms; median {g['median_ms']:.2f} ms)."
    )
    return rows, note


def _drift_rows(drift: dict[str, Any]) -> tuple[list[str], str]:
    """README row for bench_drift: keel's drift_report against Evidently's DataDriftPreset."""
    c, res, f, g = drift["config"], drift["results"], drift["flags"], drift["goals"]
    k = res["keel Reference.from_frame + drift_report"]
    only = res["keel drift_report (reference prebuilt)"]
    e = res["evidently DataDriftPreset"]
    gs = g["keel_at_least_20x_evidently"]
    gm = g["keel_memory_beyond_data_at_most_quarter_of_evidently"]
    rows = [
        f"| Drift: {c['rows_reference']:,} reference vs {c['rows_current']:,} current Adult-shaped "
        f"rows, 14 columns, 3 shifted; reference built + every test per column (KS, "
        f"Wasserstein, PSI / chi-square, JS, PSI) | {_s(k['wall_median_s'])} · "
        f"{k['peak_beyond_data_mb']:.0f} MB beyond the data (report on a prebuilt reference: "
        f"{_ms(only['wall_median_s'] * 1e3)}) | Evidently `DataDriftPreset` "
        f"{_s(e['wall_median_s'])} · {e['peak_beyond_data_mb']:,.0f} MB | "
        f"**{drift['ratios']['evidently_over_keel_time']:.0f}×** |"
    ]
    yn = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    x = f["cross_check"]
    ev_versions = c["evidently_environment"]["versions"]
    note = (
        f"Drift: each tool in its own worker process on the same Parquet frames; memory is the "
        f"RSS high-water mark of a run above the RSS with both frames loaded and the library "
        f"warmed up. keel: median of {c['keel_repeats']} runs; Evidently "
        f"{ev_versions.get('evidently')} (on pandas {ev_versions.get('pandas')}: it does not "
        f"import under pandas 3): {c['evidently_repeats']} run. Flags: keel "
        f"{', '.join(f['keel']) or 'none'}; Evidently {', '.join(f['evidently']) or 'none'}. "
        f"Both flag on the same statistics: keel's Wasserstein / reference std equals "
        f"Evidently's normed Wasserstein (largest difference "
        f"{x['wasserstein_normed_max_abs_diff']:.1g}) and its base-2 JS distance times "
        f"√ln 2 equals Evidently's (largest difference "
        f"{x['jensenshannon_max_abs_diff_after_base_change']:.1g}). Goals: ≥ "
        f"{gs['target_speedup']:.0f}× faster {yn(gs['met'])} ({gs['speedup']:.0f}×); memory "
        f"beyond the data ≤ 1/4 of Evidently's {yn(gm['met'])} ({gm['keel_mb']:.0f} MB vs "
        f"{gm['evidently_mb']:,.0f} MB); the same flags on the shifted columns "
        f"{yn(g['same_flags_on_shifted_columns']['met'])}."
    )
    return rows, note


_SHOWN = (
    "keel",
    "mlflow",
    "pandas",
    "pyarrow",
    "sqlalchemy",
    "onnxruntime",
    "lightgbm",
    "scikit-learn",
    "uvicorn",
    "fairlearn",
    "shap",
    "evidently",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    p.add_argument("--snippet-only", action="store_true", help="don't run, reprint the snippet")
    a = p.parse_args(argv)

    here = cpu_model()
    print(f"this machine: {here}, {machine([])['cores']} cores", flush=True)
    ok = True
    if not a.snippet_only:
        outcomes = {name: run(name, BENCHMARKS[name]) for name in a.only or BENCHMARKS}
        ok = all(done for done, _ in outcomes.values())
        print(f"recorded in {record(outcomes).relative_to(ROOT)}", flush=True)
    results = [load(n) for n in NAMES]
    print("\n" + snippet(*results))
    measured = sorted({r["machine"].get("cpu", "?") for r in results if r and "machine" in r})
    if measured and measured != [here]:
        print(
            f"\nnote: these results were measured on {', '.join(measured)}; this machine: "
            f"{here}. Its absolute figures will differ: compare ratios, not absolute figures.",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
