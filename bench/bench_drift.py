"""Data drift on 1M reference vs 1M current rows: keel's ``drift_report`` against Evidently's
``DataDriftPreset``, each tool in its own subprocess, in one run.

Data: the 14 feature columns of UCI Adult (train split, bundled with keel), resampled with
replacement (seeded) to ROWS reference rows and, independently, ROWS current rows; three
current columns are then shifted: ``age`` + 5 years, ``hours-per-week`` x 1.2 (rounded), and
40% of ``sex`` set to Female. Both frames are written once to Parquet in a temp folder and
each worker reads them back (keel's worker with this interpreter's pandas; Evidently's with
its own, see below).

What is timed, per tool, on the same two frames:

* ``keel``: ``Reference.from_frame(reference_df)`` (every row, no sample) then
  ``drift_report(reference, current_df)`` (KS, Wasserstein-1 and PSI per numeric column;
  chi-square, Jensen-Shannon and PSI per categorical one) — KEEL_REPEATS runs, median.
  The report alone on a prebuilt reference (the per-window cost) is timed too.
* ``evidently``: ``Report([DataDriftPreset()]).run(current_data=..., reference_data=...)``
  then ``snapshot.dict()`` — EVIDENTLY_REPEATS runs (it takes about a minute).

Memory "beyond the data": each worker imports its library, warms up on 1,000 rows, reads the
two frames, then per run resets the kernel's RSS high-water mark (``/proc/self/clear_refs``)
and records ``VmHWM - VmRSS before the run``: the peak resident memory the run added on top
of the loaded data (RSS high-water, not tracemalloc: it sees NumPy, Arrow and C allocations
alike). The largest over the runs is reported.

Flags: keel's ``report["drifted"]``; Evidently's columns whose ``ValueDrift`` value passes its
threshold (``>=`` for distances, ``<`` for p-values). Both use a distance at this size: keel
Wasserstein-1 / reference std (>= 0.1) and JS distance base 2 (>= 0.1); Evidently the same
normed Wasserstein (>= 0.1) and JS distance, natural base (>= 0.1).

Evidently 0.7.23 (the newest) does not import under pandas 3 (``infer_dtype_from_object`` is
gone), so its worker runs in a second environment with pandas 2.3: ``--evidently-python``
(default ``$KEEL_BENCH_EVIDENTLY_PYTHON``, else this interpreter if Evidently imports here,
else ``/tmp/bv-ev/bin/python``). Its frames therefore hold object strings, keel's Arrow ones;
each tool's memory is measured beyond its own loaded frames.

    /tmp/bv/bin/python bench/bench_drift.py        # writes bench/results/drift.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, median, table, write_results

PACKAGES = ("keel", "evidently", "numpy", "pandas", "pyarrow", "scipy")
SHIFTED = ["age", "hours-per-week", "sex"]
GOAL_SPEEDUP = 20.0  # issue 6: keel >= 20x Evidently
GOAL_MEMORY_SHARE = 0.25  # keel's memory beyond the data <= 1/4 of Evidently's
WARMUP_ROWS = 1_000


def make_data(rows: int, seed: int, folder: Path) -> dict[str, Any]:
    import numpy as np

    from keel.datasets import adult

    df = adult("train").drop(columns="income")
    rng = np.random.default_rng(seed)
    ref = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)
    cur = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)
    cur["age"] = cur["age"] + 5
    cur["hours-per-week"] = (cur["hours-per-week"] * 1.2).round().astype("int64")
    cur.loc[rng.random(rows) < 0.4, "sex"] = "Female"
    ref.to_parquet(folder / "reference.parquet", index=False)
    cur.to_parquet(folder / "current.parquet", index=False)
    return {
        "source": "keel.datasets.adult('train') without income (32,561 rows, 14 columns)",
        "columns": list(df.columns),
        "shifts": {
            "age": "+5 years",
            "hours-per-week": "x 1.2, rounded",
            "sex": "40% of rows set to Female",
        },
        "parquet_bytes": {p.name: p.stat().st_size for p in sorted(folder.glob("*.parquet"))},
    }


# -- workers (run as subprocesses) ------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measured(fn: Any) -> tuple[float, float, Any]:
    """Wall seconds, MB of RSS high-water above the RSS before the call, and the result."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    return wall, (peak - before) / 1024, out


def keel_worker(folder: Path, repeats: int) -> dict[str, Any]:
    import pandas as pd

    from keel.monitor.drift import Reference, drift_report

    def run(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
        return drift_report(Reference.from_frame(ref), cur)

    ref = pd.read_parquet(folder / "reference.parquet")
    cur = pd.read_parquet(folder / "current.parquet")
    run(ref.iloc[:WARMUP_ROWS], cur.iloc[:WARMUP_ROWS])
    gc.collect()
    data_mb = _status_kb("VmRSS") / 1024
    walls, mems, report = [], [], None
    for _ in range(repeats):
        wall, mem, report = _measured(lambda: run(ref, cur))
        walls.append(wall)
        mems.append(mem)
    build, build_mem, reference = _measured(lambda: Reference.from_frame(ref))
    only, only_mems = [], []
    for _ in range(repeats):
        wall, mem, _ = _measured(lambda: drift_report(reference, cur))
        only.append(wall)
        only_mems.append(mem)
    assert report is not None
    return {
        "wall_s": walls,
        "peak_beyond_data_mb": mems,
        "rss_with_data_mb": data_mb,
        "reference_build_s": build,
        "reference_build_peak_mb": build_mem,
        "report_only_wall_s": only,
        "report_only_peak_beyond_data_mb": only_mems,
        "drifted": sorted(report["drifted"]),
        "values": {
            name: f.get("normalized", f["statistic"]) for name, f in report["features"].items()
        },
        "tests": {name: f["test"] for name, f in report["features"].items()},
        "dtypes": {c: str(t) for c, t in ref.dtypes.items()},
    }


def evidently_worker(folder: Path, repeats: int) -> dict[str, Any]:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import warnings

    warnings.filterwarnings("ignore")
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    def run(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
        snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
        return snapshot.dict()

    ref = pd.read_parquet(folder / "reference.parquet")
    cur = pd.read_parquet(folder / "current.parquet")
    run(ref.iloc[:WARMUP_ROWS], cur.iloc[:WARMUP_ROWS])
    gc.collect()
    data_mb = _status_kb("VmRSS") / 1024
    walls, mems, doc = [], [], None
    for _ in range(repeats):
        wall, mem, doc = _measured(lambda: run(ref, cur))
        walls.append(wall)
        mems.append(mem)
    assert doc is not None
    values, methods, drifted = {}, {}, []
    for m in doc["metrics"]:
        cfg = m.get("config", {})
        if not str(cfg.get("type", "")).endswith("ValueDrift"):
            continue
        col, method, threshold = cfg["column"], cfg["method"], cfg["threshold"]
        value = float(m["value"])
        values[col], methods[col] = value, method
        is_p = "p_value" in method.lower() or "p-value" in method.lower()
        if (value < threshold) if is_p else (value >= threshold):
            drifted.append(col)
    return {
        "wall_s": walls,
        "peak_beyond_data_mb": mems,
        "rss_with_data_mb": data_mb,
        "drifted": sorted(drifted),
        "values": values,
        "tests": methods,
        "dtypes": {c: str(t) for c, t in ref.dtypes.items()},
    }


def worker_main(kind: str, folder: Path, repeats: int, out: Path) -> int:
    fn = keel_worker if kind == "keel" else evidently_worker
    res = fn(folder, repeats)
    res["versions"] = _versions()
    out.write_text(json.dumps(res))
    return 0


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    got: dict[str, str | None] = {}
    for name in ("keel", "evidently", "pandas", "numpy", "scipy", "pyarrow"):
        try:
            got[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            got[name] = None
    return got


# -- driver ------------------------------------------------------------------------------


def evidently_python(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("KEEL_BENCH_EVIDENTLY_PYTHON"):
        return os.environ["KEEL_BENCH_EVIDENTLY_PYTHON"]
    probe = subprocess.run(
        [sys.executable, "-c", "import evidently"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return sys.executable
    return "/tmp/bv-ev/bin/python"


def spawn(python: str, kind: str, folder: Path, repeats: int) -> dict[str, Any]:
    out = folder / f"{kind}.json"
    cmd = [python, __file__, "--worker", kind, "--data", str(folder), "--repeats", str(repeats)]
    print(f"  {kind}: {' '.join(cmd[:1])} ... ({repeats} run(s))", flush=True)
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--worker-out", str(out)], check=True)
    res = json.loads(out.read_text())
    res["process_s"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keel-repeats", type=int, default=5)
    p.add_argument("--evidently-repeats", type=int, default=1)
    p.add_argument("--evidently-python", default=None)
    p.add_argument("--out", default="drift", help="results file name under bench/results")
    p.add_argument("--worker", choices=["keel", "evidently"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker_main(a.worker, Path(a.data), a.repeats, Path(a.worker_out))
    if a.keel_repeats < 3:
        p.error("--keel-repeats: at least 3, so the median means something")
    t_begin = time.perf_counter()
    ev_python = evidently_python(a.evidently_python)

    with tempfile.TemporaryDirectory(prefix="keel-bench-drift-") as tmp:
        folder = Path(tmp)
        print(f"{a.rows:,} reference vs {a.rows:,} current rows; writing Parquet", flush=True)
        data = make_data(a.rows, a.seed, folder)
        keel = spawn(sys.executable, "keel", folder, a.keel_repeats)
        print(f"  keel median {median(keel['wall_s']):.2f} s", flush=True)
        ev = spawn(ev_python, "evidently", folder, a.evidently_repeats)
        print(f"  evidently median {median(ev['wall_s']):.1f} s", flush=True)
    total_s = time.perf_counter() - t_begin

    results, ratios, goals, agreement = summarize(keel, ev)
    out = {
        "benchmark": "drift",
        "machine": machine(PACKAGES),
        "config": {
            "rows_reference": a.rows,
            "rows_current": a.rows,
            "seed": a.seed,
            "keel_repeats": a.keel_repeats,
            "evidently_repeats": a.evidently_repeats,
            "repeats": f"keel {a.keel_repeats}, Evidently {a.evidently_repeats}",
            "data": data,
            "shifted_columns": SHIFTED,
            "keel": "Reference.from_frame(reference_df) + drift_report(reference, current_df)",
            "evidently": "Report([DataDriftPreset()]).run(current_data, reference_data).dict()",
            "memory": "RSS high-water mark (VmHWM, reset through /proc/self/clear_refs before "
            "each run) minus RSS before the run, in a worker that already holds both frames "
            "and has imported and warmed up its library on 1,000 rows; max over runs",
            "evidently_environment": {"python": ev_python, "versions": ev["versions"]},
            "keel_environment": {"python": sys.executable, "versions": keel["versions"]},
            "dtypes": {"keel": keel["dtypes"], "evidently": ev["dtypes"]},
        },
        "results": results,
        "flags": agreement,
        "ratios": ratios,
        "goals": goals,
        "total_seconds": total_s,
    }
    path = write_results(a.out, out)
    report(out)
    print(f"Wrote {path}")
    return 0


def summarize(keel: dict[str, Any], ev: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    k, e = median(keel["wall_s"]), median(ev["wall_s"])
    k_only = median(keel["report_only_wall_s"])
    k_mem, e_mem = max(keel["peak_beyond_data_mb"]), max(ev["peak_beyond_data_mb"])
    results = {
        "keel Reference.from_frame + drift_report": {
            "wall_s": keel["wall_s"],
            "wall_median_s": k,
            "peak_beyond_data_mb": k_mem,
            "peak_beyond_data_mb_runs": keel["peak_beyond_data_mb"],
            "rss_with_data_mb": keel["rss_with_data_mb"],
        },
        "keel drift_report (reference prebuilt)": {
            "wall_s": keel["report_only_wall_s"],
            "wall_median_s": k_only,
            "peak_beyond_data_mb": max(keel["report_only_peak_beyond_data_mb"]),
            "reference_build_s": keel["reference_build_s"],
            "reference_build_peak_mb": keel["reference_build_peak_mb"],
        },
        "evidently DataDriftPreset": {
            "wall_s": ev["wall_s"],
            "wall_median_s": e,
            "peak_beyond_data_mb": e_mem,
            "peak_beyond_data_mb_runs": ev["peak_beyond_data_mb"],
            "rss_with_data_mb": ev["rss_with_data_mb"],
        },
    }
    ratios = {
        "evidently_over_keel_time": e / k,
        "evidently_over_keel_report_only_time": e / k_only,
        "keel_over_evidently_memory": k_mem / e_mem if e_mem > 0 else None,
    }
    same_shifted = all((c in keel["drifted"]) == (c in ev["drifted"]) for c in SHIFTED)
    agreement = {
        "keel": keel["drifted"],
        "evidently": ev["drifted"],
        "same_flags_on_shifted": same_shifted,
        "same_flags_on_all": keel["drifted"] == ev["drifted"],
        "shifted_flagged_by_both": [
            c for c in SHIFTED if c in keel["drifted"] and c in ev["drifted"]
        ],
        "keel_values": keel["values"],
        "keel_tests": keel["tests"],
        "evidently_values": ev["values"],
        "evidently_tests": ev["tests"],
    }
    agreement["cross_check"] = cross_check(keel, ev)
    share = ratios["keel_over_evidently_memory"]
    goals = {
        "keel_at_least_20x_evidently": {
            "target_speedup": GOAL_SPEEDUP,
            "speedup": e / k,
            "met": e / k >= GOAL_SPEEDUP,
        },
        "keel_memory_beyond_data_at_most_quarter_of_evidently": {
            "target_share": GOAL_MEMORY_SHARE,
            "keel_mb": k_mem,
            "evidently_mb": e_mem,
            "share": share,
            "met": share is not None and share <= GOAL_MEMORY_SHARE,
        },
        "same_flags_on_shifted_columns": {
            "shifted": SHIFTED,
            "met": same_shifted and all(c in keel["drifted"] for c in SHIFTED),
        },
    }
    return results, ratios, goals, agreement


def cross_check(keel: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    """The statistic both tools flag on, per column: keel's Wasserstein-1 / reference std
    against Evidently's normed Wasserstein, and keel's JS distance (base 2) times sqrt(ln 2)
    against Evidently's (natural base)."""
    import math

    w, js = [], []
    for col, kv in keel["values"].items():
        ev_value, method = ev["values"].get(col), ev["tests"].get(col, "")
        if ev_value is None:
            continue
        if keel["tests"][col] == "wasserstein" and "Wasserstein" in method:
            w.append(abs(kv - ev_value))
        elif keel["tests"][col] == "jensenshannon" and "Jensen" in method:
            js.append(abs(kv * math.sqrt(math.log(2)) - ev_value))
    return {
        "wasserstein_normed_columns": len(w),
        "wasserstein_normed_max_abs_diff": max(w) if w else None,
        "jensenshannon_columns": len(js),
        "jensenshannon_max_abs_diff_after_base_change": max(js) if js else None,
    }


def report(out: dict[str, Any]) -> None:
    res, f = out["results"], out["flags"]
    rows = [
        [name, r["wall_median_s"], len(r["wall_s"]), r["peak_beyond_data_mb"]]
        for name, r in res.items()
    ]
    print()
    print(table(["method", "median s", "runs", "peak MB beyond data"], rows))
    print(f"\nFlags: keel {f['keel']}; Evidently {f['evidently']}")
    print(f"Same statistic as Evidently: {f['cross_check']}")
    for name, g in out["goals"].items():
        print(f"Goal {name}: {'met' if g['met'] else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
