"""keel ui against MLflow's UI on the same runs, both measured in the same headless Chromium.

The data (bench/_ui_stores.py, cached in a temp folder keyed by its format and size): 10,000
runs x 20 params x 10 metrics, of which 100 runs log 1,000 steps of each metric; written
through keel's Python API into a keel project and through ``MlflowClient.log_batch`` (up to
its limits) into MLflow's own SQLite store, the same values in both. Then ``keel ui`` and
``mlflow server`` (1 worker) each run in a process of their own on 127.0.0.1, and Playwright
drives Debian's chromium (``KEEL_CHROMIUM``, default /usr/bin/chromium; never a downloaded
browser) through three steps, in a fresh browser context (cold cache) each repeat:

  first rows  from navigating to the runs table of the experiment until its first row shows
              a run name (keel: ``/runs?experiment=bench-ui``; MLflow:
              ``#/experiments/<id>/runs`` in its "Model training" view);
  sort        from clicking "sort by roc_auc" (keel: the column header; MLflow: the Sort menu's
              roc_auc item, descending) until the first row is the run with the highest roc_auc;
  compare     from navigating to a comparison of the 100 runs with curves until it is drawn:
              keel: ``/compare?runs=...&metric=roc_auc`` until ``[data-testid=compare-ready]``
              (parallel coordinates, the 100 curves overlaid, the params diff); MLflow needs two
              pages for the same: its compare page (parallel coordinates, the params and
              metrics tables) until the parallel-coordinates plot is drawn, then its metric page
              for roc_auc until the 100 curves are drawn; its figure is the sum.

After each step the page's JS heap (DevTools ``Performance.getMetrics`` JSHeapUsedSize, no
forced GC). Repeats alternate which tool goes first; medians, keel/MLflow ratios (MLflow
time / keel time: how many times faster keel is) and the issue's goals are printed and
written with the machine to bench/results/ui.json.

    .venv/bin/python -m pip install -e '.[dev,bench]'
    .venv/bin/python bench/bench_ui.py                # writes bench/results/ui.json
    .venv/bin/python bench/bench_ui.py --runs 500 --curves 10 --repeats 2 --out ui_small
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _ui_stores as data
from _common import ROOT, machine, median, table, write_results

PACKAGES = ("keel", "mlflow", "playwright", "sqlalchemy", "uvicorn")
SORT_METRIC = "roc_auc"
GOALS = {"first_rows_s": 1.0, "sort_s": 0.5, "compare_s": 2.0}  # keel, and >= 5x MLflow
GOAL_RATIO = 5.0
STEP_TIMEOUT_MS = 180_000
VIEWPORT = {"width": 1600, "height": 1000}


# -- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextmanager
def server(cmd: list[str], probe: str, log: Path, env: dict[str, str] | None = None) -> Any:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            started = wait_http(probe, proc)
            yield started
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def keel_server(stores: data.Stores, port: int, log: Path) -> Any:
    keel = Path(sys.executable).with_name("keel")
    cmd = [str(keel), "ui", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--project", str(stores.keel_project)]
    return server(cmd, f"http://127.0.0.1:{port}/runs?limit=1", log)


def mlflow_server(stores: data.Stores, port: int, log: Path) -> Any:
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{stores.mlflow_db}", "--workers", "1"]
    cmd += ["--default-artifact-root", stores.mlflow_artifacts.as_uri()]
    env = {**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"}
    return server(cmd, f"http://127.0.0.1:{port}/health", log, env)


# -- what each UI is asked --------------------------------------------------------------


class Tool:
    """One UI: its URLs and how to tell that each step has finished."""

    name = ""

    def __init__(self, base: str, stores: data.Stores, expected: dict[str, str]) -> None:
        self.base, self.stores, self.expected = base, stores, expected

    def first_row_name(self, page: Any) -> str:
        raise NotImplementedError


class KeelUi(Tool):
    name = "keel"
    ROW = "[data-testid=runs-row][aria-rowindex='2']"

    def __init__(self, base: str, stores: data.Stores, expected: dict[str, str]) -> None:
        super().__init__(base, stores, expected)
        self.ids = keel_ids(stores)

    def first_rows(self, page: Any) -> None:
        page.goto(f"{self.base}/runs?experiment={data.EXPERIMENT}", wait_until="commit")
        page.locator(self.ROW).wait_for(state="visible")

    def first_row_name(self, page: Any) -> str:
        return str(page.locator(self.ROW).inner_text())

    def sort(self, page: Any) -> None:
        page.locator(f"[data-testid='sort-metrics.{SORT_METRIC}']").click()
        wait_first_row(page, self.ROW, self.expected["top"])

    def compare(self, page: Any, names: list[str]) -> dict[str, float]:
        ids = ",".join(self.ids[n] for n in names)
        t0 = time.perf_counter()
        page.goto(f"{self.base}/compare?runs={ids}&metric={SORT_METRIC}", wait_until="commit")
        page.locator("[data-testid=compare-ready]").wait_for(state="attached")
        return {"compare_s": time.perf_counter() - t0}


class MLflowUi(Tool):
    name = "mlflow"
    ROW = ".ag-row[row-index='0']"

    def __init__(self, base: str, stores: data.Stores, expected: dict[str, str]) -> None:
        super().__init__(base, stores, expected)
        self.exp = stores.mlflow_experiment_id
        self.ids = mlflow_ids(stores)

    def first_rows(self, page: Any) -> None:
        q = "workflowType=machine_learning"
        page.goto(f"{self.base}/#/experiments/{self.exp}/runs?{q}", wait_until="commit")
        page.wait_for_function(
            "sel => [...document.querySelectorAll(sel)].some(r => /run-\\d{5}/.test(r.innerText))",
            arg=self.ROW,
        )

    def first_row_name(self, page: Any) -> str:
        return " ".join(page.locator(self.ROW).all_inner_texts())

    def sort(self, page: Any) -> None:
        page.locator("[data-testid=sort-select-dropdown]").click()
        item = page.get_by_role("menuitemradio", name=SORT_METRIC, exact=True)
        if not item.count():
            item = page.get_by_text(SORT_METRIC, exact=True).last
        item.wait_for(state="visible")
        self._t_click = time.perf_counter()
        item.click()
        wait_first_row(page, self.ROW, self.expected["top"])

    def compare(self, page: Any, names: list[str]) -> dict[str, float]:
        ids = json.dumps([self.ids[n] for n in names])
        exps = json.dumps([self.exp])
        q = urllib.parse.urlencode({"runs": ids, "experiments": exps})
        t0 = time.perf_counter()
        page.goto(f"{self.base}/#/compare-runs?{q}", wait_until="commit")
        page.locator(".js-plotly-plot .parcoords").first.wait_for(state="attached")
        page.get_by_text(names[-1], exact=True).first.wait_for(state="attached")
        t_page = time.perf_counter() - t0
        q = urllib.parse.urlencode(
            {
                "runs": ids,
                "metric": json.dumps(SORT_METRIC),
                "experiments": exps,
                "plot_metric_keys": json.dumps([SORT_METRIC]),
                "plot_layout": "{}",
                "x_axis": "step",
                "y_axis_scale": "linear",
                "line_smoothness": "1",
                "show_point": "false",
                "deselected_curves": "[]",
                "last_linear_y_axis_range": "[]",
            }
        )
        t1 = time.perf_counter()
        page.goto(f"{self.base}/#/metric?{q}", wait_until="commit")
        page.wait_for_function(
            "n => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= n",
            arg=len(names),
        )
        t_curves = time.perf_counter() - t1
        return {
            "compare_s": t_page + t_curves,
            "compare_page_s": t_page,
            "curves_page_s": t_curves,
        }


def wait_first_row(page: Any, selector: str, name: str) -> None:
    page.wait_for_function(
        "([sel, name]) => [...document.querySelectorAll(sel)]"
        ".some(r => r.innerText.includes(name))",
        arg=[selector, name],
    )


def keel_ids(stores: data.Stores) -> dict[str, str]:
    """Run name -> id in the keel project (one query of its store)."""
    from sqlalchemy import select

    from keel.project import open_project
    from keel.store import _tables

    runs = _tables.runs
    q = select(runs.c.id, runs.c.tags_json).where(runs.c.experiment == data.EXPERIMENT)
    with open_project(stores.keel_project) as proj, proj.store.read() as conn:
        return {json.loads(tags)["name"]: rid for rid, tags in conn.execute(q)}


def mlflow_ids(stores: data.Stores) -> dict[str, str]:
    with sqlite3.connect(f"file:{stores.mlflow_db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT name, run_uuid FROM runs").fetchall())


# -- one measurement --------------------------------------------------------------------


def heap(cdp: Any) -> int:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))


def measure(browser: Any, tool: Any, compare_names: list[str]) -> dict[str, Any]:
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(STEP_TIMEOUT_MS)
    errors: list[str] = []
    try:
        page = ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)[:200]))
        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")
        out: dict[str, Any] = {}
        t0 = time.perf_counter()
        tool.first_rows(page)
        out["first_rows_s"] = time.perf_counter() - t0
        out["first_rows_heap"] = heap(cdp)
        out["first_row"] = tool.first_row_name(page)[:80]
        if isinstance(tool, MLflowUi):
            tool.sort(page)  # the click on the menu item starts the clock
            out["sort_s"] = time.perf_counter() - tool._t_click
        else:
            t0 = time.perf_counter()
            tool.sort(page)
            out["sort_s"] = time.perf_counter() - t0
        out["sort_heap"] = heap(cdp)
        out["sorted_first_row"] = tool.first_row_name(page)[:80]
        out.update(tool.compare(page, compare_names))
        out["compare_heap"] = heap(cdp)
        out["page_errors"] = errors
        return out
    finally:
        ctx.close()


def expected_values(stores: data.Stores) -> dict[str, Any]:
    values = data.Values(stores.spec)
    col = data.metric_names(stores.spec).index(SORT_METRIC)
    top = int(values.finals[:, col].argmax())
    return {"top": values.name(top), "top_value": float(values.finals[top, col])}


# -- main --------------------------------------------------------------------------------

STEPS = ("first_rows_s", "sort_s", "compare_s")
HEAPS = ("first_rows_heap", "sort_heap", "compare_heap")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--params", type=int, default=20)
    p.add_argument("--metrics", type=int, default=10)
    p.add_argument("--curves", type=int, default=100, help="runs with curves (and compared)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", choices=("keel", "mlflow"), help="measure one tool")
    p.add_argument("--chromium", default=os.environ.get("KEEL_CHROMIUM") or "/usr/bin/chromium")
    p.add_argument("--out", default="ui", help="results name: bench/results/<out>.json")
    a = p.parse_args(argv)

    spec = data.Spec(a.runs, a.params, a.metrics, a.curves, a.steps)
    if SORT_METRIC not in data.metric_names(spec):
        p.error(f"--metrics must be at least 1 (the sort is by {SORT_METRIC})")
    chromium = shutil.which(a.chromium)
    if not chromium:
        p.error(f"no Chromium at {a.chromium} (apt-get install chromium, or --chromium PATH)")
    from playwright.sync_api import sync_playwright

    t_begin = time.perf_counter()
    stores = data.build(spec)
    expected = expected_values(stores)
    names = [data.Values(spec).name(i) for i in spec.curve_runs()]
    tools = [t for t in ("keel", "mlflow") if a.only in (None, t)]
    logs = Path(stores.root) / "logs"
    logs.mkdir(exist_ok=True)
    raw: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    started: dict[str, float] = {}
    k_port, m_port = free_port(), free_port()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        with (
            keel_server(stores, k_port, logs / "keel.log") as k_start,
            mlflow_server(stores, m_port, logs / "mlflow.log") as m_start,
        ):
            started = {"keel": k_start, "mlflow": m_start}
            ui = {
                "keel": KeelUi(f"http://127.0.0.1:{k_port}", stores, expected),
                "mlflow": MLflowUi(f"http://127.0.0.1:{m_port}", stores, expected),
            }
            for t in tools:  # warm-up: each server's first request and caches, not timed
                measure(browser, ui[t], names[:2])
            for rep in range(a.repeats):
                order = tools if rep % 2 == 0 else tools[::-1]
                for t in order:
                    r = measure(browser, ui[t], names)
                    raw[t].append(r)
                    print(
                        f"  repeat {rep + 1}/{a.repeats} {t:6s}: "
                        f"first rows {r['first_rows_s']:.2f} s"
                        f"  sort {r['sort_s']:.2f} s  compare-{len(names)} {r['compare_s']:.2f} s"
                        f"  heap {r['compare_heap'] / 2**20:.0f} MiB",
                        flush=True,
                    )
        browser_version = browser.version
        browser.close()

    res: dict[str, Any] = {}
    for t, rows in raw.items():
        res[t] = {k: [r[k] for r in rows] for k in rows[0]}
        for k in (*STEPS, *HEAPS, "compare_page_s", "curves_page_s"):
            if k in rows[0]:
                res[t][f"{k}_median"] = median([r[k] for r in rows])
        res[t]["server_start_s"] = started[t]
    ratios = {}
    if len(tools) == 2:
        ratios = {s: res["mlflow"][f"{s}_median"] / res["keel"][f"{s}_median"] for s in STEPS} | {
            h: res["keel"][f"{h}_median"] / res["mlflow"][f"{h}_median"] for h in HEAPS
        }
    goals = {}
    if "keel" in res:
        for s, limit in GOALS.items():
            goals[s] = {
                "keel_median_s": res["keel"][f"{s}_median"],
                "limit_s": limit,
                "met": res["keel"][f"{s}_median"] <= limit,
                "times_faster_than_mlflow": ratios.get(s),
                "ratio_met": None if s not in ratios else ratios[s] >= GOAL_RATIO,
            }
    results = {
        "benchmark": "ui",
        "machine": machine(PACKAGES) | {"chromium": browser_version},
        "config": {
            **data.describe(stores),
            "repeats": a.repeats,
            "compared_runs": len(names),
            "sort_metric": SORT_METRIC,
            "expected_top_run": expected,
            "viewport": VIEWPORT,
            "browser": "headless Chromium through Playwright, a fresh context per repeat",
            "heap": "DevTools Performance.getMetrics JSHeapUsedSize after each step, no GC",
            "mlflow_server": "mlflow server --workers 1, SQLite backend store",
            "keel_server": "keel ui (its own process)",
            "mlflow_compare": "compare-runs page (parallel coordinates drawn) + metric page "
            "(all curves drawn): the sum",
        },
        "results": res,
        "ratios_mlflow_time_over_keel_time": {s: ratios[s] for s in STEPS if s in ratios},
        "ratios_keel_heap_over_mlflow_heap": {h: ratios[h] for h in HEAPS if h in ratios},
        "goals": goals,
        "total_seconds": time.perf_counter() - t_begin,
    }
    path = write_results(a.out, results)

    print()
    print(
        f"UI, {spec.runs:,} runs ({spec.curves} with {spec.steps:,}-step curves), median of "
        f"{a.repeats}; ratio = MLflow time / keel time"
    )
    rows = []
    for s, label in zip(
        STEPS,
        ("first rows, s", "sort by a metric, s", f"compare {len(names)} runs, s"),
        strict=True,
    ):
        rows.append(
            [
                label,
                *(res[t][f"{s}_median"] for t in ("keel", "mlflow") if t in res),
                f"{ratios[s]:.1f}x" if s in ratios else "",
                f"<= {GOALS[s]:g} s: {'yes' if goals.get(s, {}).get('met') else 'no'}",
            ]
        )
    for h, label in zip(HEAPS, ("after first rows", "after sort", "after compare"), strict=True):
        rows.append(
            [
                f"JS heap {label}, MiB",
                *(res[t][f"{h}_median"] / 2**20 for t in ("keel", "mlflow") if t in res),
                "",
                "",
            ]
        )
    print(table(["step", *tools, "MLflow/keel", "goal"], rows))
    print(f"Wrote {path.relative_to(ROOT)} ({results['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
