"""keel tracking against MLflow tracking, both on SQLite, in one process.

Workloads, run for both tools against a fresh store in a temp dir each repeat:

  (a) RUNS runs, each: start, PARAMS params (one call), STEPS steps of one metric (one call
      per step), end;
  (b) CALLS single ``log_metric`` calls into one run (run creation not timed).

MLflow goes through its fluent API (``mlflow.start_run`` / ``log_params`` / ``log_metric``),
what a user writes; like keel's ``start_run`` it records the source and git commit. A small
side measurement times ``MlflowClient.log_metric`` too, MLflow's lower-level path. Nothing is
batched for either tool. Every written value is read back and counted afterwards.

    .venv/bin/python bench/bench_tracking.py            # writes bench/results/tracking.json
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _common import ROOT, machine, median, table, write_results

# MLflow chats on INFO and warns about things that don't matter here.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

PACKAGES = ("keel", "mlflow", "sqlalchemy", "alembic", "numpy", "pandas", "pyarrow")
# The brief's 10,000 single calls take MLflow about 7 ms each on the 2-core dev box: 3 repeats
# would be ~3.5 min for (b) alone. Both tools do this fixed, smaller count instead.
FULL_CALLS = 10_000
DEFAULT_CALLS = 10_000


def value(i: int, step: int) -> float:
    """A distinct, exactly representable-enough value per (run, step)."""
    return 1.0 / (1 + step) + i * 1e-3


def params_for(i: int, n: int) -> dict[str, Any]:
    return {f"p{j}": i * 100 + j for j in range(n)}


# -- keel ------------------------------------------------------------------------------


class Keel:
    name = "keel"

    def __init__(self, root: Path) -> None:
        from keel.store import Store

        self.store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
        self._warm_up()

    def _start(self, experiment: str) -> Any:
        from keel.train import start_run

        # The benchmark lives in keel's repo: like a user's project, start_run finds a commit.
        return start_run(self.store, experiment, project_root=ROOT)

    def _warm_up(self) -> None:
        run = self._start("warmup")
        run.log_params({"w": 1})
        run.log_metric("w", 0.0, step=0)
        run.end()

    def runs(self, n_runs: int, n_params: int, n_steps: int) -> tuple[float, float, list[str]]:
        """Workload (a): wall seconds, seconds spent inside start_run, the run ids."""
        ids, in_start = [], 0.0
        t0 = time.perf_counter()
        for i in range(n_runs):
            ts = time.perf_counter()
            run = self._start("bench")
            in_start += time.perf_counter() - ts
            run.log_params(params_for(i, n_params))
            for s in range(n_steps):
                run.log_metric("loss", value(i, s), step=s)
            run.end()
            ids.append(run.id)
        return time.perf_counter() - t0, in_start, ids

    def calls(self, n_calls: int) -> tuple[float, str]:
        """Workload (b): wall seconds of the calls alone, the run id."""
        run = self._start("calls")
        t0 = time.perf_counter()
        for s in range(n_calls):
            run.log_metric("loss", value(0, s), step=s)
        wall = time.perf_counter() - t0
        run.end()
        return wall, run.id

    def read_back(self, run_id: str) -> tuple[list[tuple[int, float]], int]:
        """(step, value) of the run's ``loss`` in step order, and its number of params."""
        from keel.train import get_run

        got = get_run(self.store, run_id)
        hist = [(int(s), float(v)) for s, v in got["metric_history"].get("loss", [])]
        return sorted(hist), len(got["params"])

    def git_commit(self, run_id: str) -> str | None:
        from keel.train import get_run

        return get_run(self.store, run_id)["git_commit"]

    def count_runs(self, experiment: str) -> int:
        from keel.train import list_runs

        return len(list_runs(self.store, experiment, limit=1_000_000))

    def close(self) -> None:
        self.store.close()


# -- MLflow ----------------------------------------------------------------------------


class MLflow:
    name = "mlflow"

    @staticmethod
    def template(root: Path) -> tuple[Path, float]:
        """An empty, fully migrated MLflow DB to copy for each fresh store, and its set-up time.
        (Migrating a new MLflow DB takes seconds; copying keeps the repeats short.)"""
        from mlflow import MlflowClient

        db = root / "template.db"
        t0 = time.perf_counter()
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        return db, time.perf_counter() - t0

    def __init__(self, root: Path, template: Path) -> None:
        import mlflow

        self.mlflow = mlflow
        self.db = root / "mlflow.db"
        shutil.copyfile(template, self.db)
        self.uri = f"sqlite:///{self.db}"
        mlflow.set_tracking_uri(self.uri)
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        self.artifacts = (root / "artifacts").as_uri()
        self._experiments: dict[str, str] = {}
        self._warm_up()

    def _use(self, experiment: str) -> str:
        if experiment not in self._experiments:
            self._experiments[experiment] = self.client.create_experiment(
                experiment, artifact_location=f"{self.artifacts}/{experiment}"
            )
        self.mlflow.set_experiment(experiment_id=self._experiments[experiment])
        return self._experiments[experiment]

    def _warm_up(self) -> None:
        self._use("warmup")
        with self.mlflow.start_run():
            self.mlflow.log_params({"w": 1})
            self.mlflow.log_metric("w", 0.0, step=0)
        self.client.log_metric(self.client.create_run(self._use("warmup")).info.run_id, "w", 0.0)

    def runs(self, n_runs: int, n_params: int, n_steps: int) -> tuple[float, float, list[str]]:
        mlflow = self.mlflow
        self._use("bench")
        ids, in_start = [], 0.0
        t0 = time.perf_counter()
        for i in range(n_runs):
            ts = time.perf_counter()
            run = mlflow.start_run()
            in_start += time.perf_counter() - ts
            mlflow.log_params(params_for(i, n_params))
            for s in range(n_steps):
                mlflow.log_metric("loss", value(i, s), step=s)
            mlflow.end_run()
            ids.append(run.info.run_id)
        return time.perf_counter() - t0, in_start, ids

    def calls(self, n_calls: int) -> tuple[float, str]:
        mlflow = self.mlflow
        self._use("calls")
        run = mlflow.start_run()
        t0 = time.perf_counter()
        for s in range(n_calls):
            mlflow.log_metric("loss", value(0, s), step=s)
        wall = time.perf_counter() - t0
        mlflow.end_run()
        return wall, run.info.run_id

    def client_calls(self, n_calls: int) -> tuple[float, str]:
        """Side measurement: the same single calls through ``MlflowClient.log_metric``."""
        run_id = self.client.create_run(self._use("client_calls")).info.run_id
        t0 = time.perf_counter()
        for s in range(n_calls):
            self.client.log_metric(run_id, "loss", value(0, s), step=s)
        wall = time.perf_counter() - t0
        self.client.set_terminated(run_id)
        return wall, run_id

    def read_back(self, run_id: str) -> tuple[list[tuple[int, float]], int]:
        hist = [
            (int(m.step), float(m.value)) for m in self.client.get_metric_history(run_id, "loss")
        ]
        return sorted(hist), len(self.client.get_run(run_id).data.params)

    def git_commit(self, run_id: str) -> str | None:
        return self.client.get_run(run_id).data.tags.get("mlflow.source.git.commit")

    def count_runs(self, experiment: str) -> int:
        exp = self._experiments[experiment]
        return len(self.client.search_runs([exp], max_results=50_000))

    def journal_mode(self) -> str:
        with sqlite3.connect(self.db) as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        if self.mlflow.active_run() is not None:
            self.mlflow.end_run()


# -- checks ----------------------------------------------------------------------------


def verify_runs(tool: Any, ids: list[str], n_params: int, n_steps: int) -> dict[str, int]:
    """Read every run back; every metric value and param must be there, in step order."""
    n_metrics = n_params_read = 0
    for i, run_id in enumerate(ids):
        hist, n_p = tool.read_back(run_id)
        expected = [(s, value(i, s)) for s in range(n_steps)]
        if hist != expected:
            raise AssertionError(
                f"{tool.name}: run {i} ({run_id}) read back {len(hist)} metric values, "
                f"expected {n_steps} equal to what was logged"
            )
        if n_p != n_params:
            raise AssertionError(f"{tool.name}: run {i} has {n_p} params, expected {n_params}")
        n_metrics += len(hist)
        n_params_read += n_p
    n_runs = tool.count_runs("bench")
    if n_runs != len(ids):
        raise AssertionError(f"{tool.name}: {n_runs} runs in the store, expected {len(ids)}")
    return {
        "runs": n_runs,
        "metric_values": n_metrics,
        "params": n_params_read,
        "git_commit_recorded": tool.git_commit(ids[0]) is not None,
    }


def verify_calls(tool: Any, run_id: str, n_calls: int) -> int:
    hist, _ = tool.read_back(run_id)
    if hist != [(s, value(0, s)) for s in range(n_calls)]:
        raise AssertionError(
            f"{tool.name}: read back {len(hist)} metric values of {n_calls} written"
        )
    return len(hist)


def per_call_ms(fn: Any, n: int = 20) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times) * 1e3


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--params", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    p.add_argument("--client-calls", type=int, default=1_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="tracking", help="results name: bench/results/<out>.json")
    a = p.parse_args(argv)

    import mlflow  # noqa: F401  (import time is not part of any measurement)

    from keel.train._tracking import environment, git_commit

    raw: dict[str, dict[str, list[Any]]] = {
        t: {k: [] for k in ("a_wall", "a_start", "b_wall", "client_wall", "verified")}
        for t in ("keel", "mlflow")
    }
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        template, template_s = MLflow.template(Path(tmp))
        print(f"MLflow: empty DB created and migrated in {template_s:.1f} s (not timed)")
        mlflow_journal = ""
        for rep in range(a.repeats):
            # Alternate which tool goes first, so neither always gets the warmer machine.
            order = [Keel, MLflow] if rep % 2 == 0 else [MLflow, Keel]
            for cls in order:
                d = Path(tempfile.mkdtemp(prefix=f"{cls.name}-{rep}-", dir=tmp))
                tool = cls(d) if cls is Keel else cls(d, template)
                r = raw[cls.name]
                wall, in_start, ids = tool.runs(a.runs, a.params, a.steps)
                r["a_wall"].append(wall)
                r["a_start"].append(in_start)
                b_wall, b_id = tool.calls(a.calls)
                r["b_wall"].append(b_wall)
                checked = verify_runs(tool, ids, a.params, a.steps)
                checked["calls_metric_values"] = verify_calls(tool, b_id, a.calls)
                if cls is MLflow:
                    c_wall, c_id = tool.client_calls(a.client_calls)
                    r["client_wall"].append(c_wall)
                    checked["client_metric_values"] = verify_calls(tool, c_id, a.client_calls)
                    mlflow_journal = tool.journal_mode()
                r["verified"].append(checked)
                tool.close()
                print(
                    f"  repeat {rep + 1}/{a.repeats} {cls.name:6s}: (a) {wall:6.2f} s  "
                    f"(b) {b_wall:6.2f} s  read back {checked}",
                    flush=True,
                )
    git_ms = per_call_ms(lambda: git_commit(ROOT))
    env_ms = per_call_ms(environment)
    total_s = time.perf_counter() - t_begin

    n_a = a.runs * a.steps
    res: dict[str, Any] = {}
    for t, r in raw.items():
        a_med, b_med = median(r["a_wall"]), median(r["b_wall"])
        res[t] = {
            "a_wall_s": r["a_wall"],
            "a_wall_median_s": a_med,
            "a_runs_per_s": a.runs / a_med,
            "a_metric_writes_per_s": n_a / a_med,
            "a_ms_per_run": a_med / a.runs * 1e3,
            "a_start_run_ms_median": median(r["a_start"]) / a.runs * 1e3,
            "b_wall_s": r["b_wall"],
            "b_wall_median_s": b_med,
            "b_metric_writes_per_s": a.calls / b_med,
            "b_ms_per_call": b_med / a.calls * 1e3,
            "read_back": r["verified"],
        }
    client_med = median(raw["mlflow"]["client_wall"])
    res["mlflow"]["client_calls_wall_s"] = raw["mlflow"]["client_wall"]
    res["mlflow"]["client_metric_writes_per_s"] = a.client_calls / client_med
    res["mlflow"]["client_ms_per_call"] = client_med / a.client_calls * 1e3
    k, m = res["keel"], res["mlflow"]
    ratios = {
        "a_keel_over_mlflow_throughput": k["a_metric_writes_per_s"] / m["a_metric_writes_per_s"],
        "b_keel_over_mlflow_throughput": k["b_metric_writes_per_s"] / m["b_metric_writes_per_s"],
        "b_keel_over_mlflow_client_throughput": (
            k["b_metric_writes_per_s"] / m["client_metric_writes_per_s"]
        ),
    }
    breakdown = {
        "git_rev_parse_ms": git_ms,
        "environment_ms": env_ms,
        "start_run_ms": k["a_start_run_ms_median"],
        "run_ms": k["a_ms_per_run"],
        "git_share_of_start_run": git_ms / k["a_start_run_ms_median"],
        "git_share_of_run": git_ms / k["a_ms_per_run"],
    }
    reduced = a.calls < FULL_CALLS
    results = {
        "benchmark": "tracking",
        "machine": machine(PACKAGES),
        "config": {
            "runs": a.runs,
            "params": a.params,
            "steps": a.steps,
            "calls": a.calls,
            "calls_requested": FULL_CALLS,
            "calls_reduced": reduced,
            "client_calls": a.client_calls,
            "repeats": a.repeats,
            "store": "SQLite file in a fresh temp dir per tool and repeat",
            "keel_sqlite": "journal_mode=WAL, synchronous=FULL (keel's defaults)",
            "mlflow_sqlite": f"journal_mode={mlflow_journal}, synchronous=FULL (SQLite default)",
            "mlflow_api": "fluent (mlflow.start_run/log_params/log_metric/end_run)",
        },
        "results": res,
        "ratios": ratios,
        "keel_start_run_breakdown": breakdown,
        "total_seconds": total_s,
    }
    path = write_results(a.out, results)

    print()
    print(
        f"Tracking, SQLite, median of {a.repeats} (fresh store each); "
        f"ratio = keel throughput / MLflow throughput"
    )
    print(
        table(
            ["workload", "keel", "MLflow", "keel/MLflow"],
            [
                [
                    f"(a) {a.runs} runs x ({a.params} params + {a.steps} steps): wall s",
                    k["a_wall_median_s"],
                    m["a_wall_median_s"],
                    "",
                ],
                [
                    "(a) metric writes/s",
                    k["a_metric_writes_per_s"],
                    m["a_metric_writes_per_s"],
                    f"{ratios['a_keel_over_mlflow_throughput']:.1f}x",
                ],
                [
                    f"(b) {a.calls:,} single log_metric calls: wall s",
                    k["b_wall_median_s"],
                    m["b_wall_median_s"],
                    "",
                ],
                [
                    "(b) metric writes/s",
                    k["b_metric_writes_per_s"],
                    m["b_metric_writes_per_s"],
                    f"{ratios['b_keel_over_mlflow_throughput']:.1f}x",
                ],
                [
                    f"(b') MlflowClient.log_metric, {a.client_calls:,} calls: writes/s",
                    "",
                    m["client_metric_writes_per_s"],
                    f"{ratios['b_keel_over_mlflow_client_throughput']:.1f}x",
                ],
                [
                    "start_run, ms per run",
                    k["a_start_run_ms_median"],
                    m["a_start_run_ms_median"],
                    "",
                ],
            ],
        )
    )
    if reduced:
        full_s = m["b_ms_per_call"] * FULL_CALLS / 1e3
        print(
            f"\n(b) reduced from {FULL_CALLS:,} to {a.calls:,} calls for both tools: MLflow takes "
            f"{m['b_ms_per_call']:.1f} ms per call here, ~{full_s:.0f} s per repeat at "
            f"{FULL_CALLS:,} (x{a.repeats} repeats)."
        )
    print(
        f"\nkeel start_run: {k['a_start_run_ms_median']:.2f} ms, of which the git-commit lookup "
        f"~{git_ms:.2f} ms ({breakdown['git_share_of_start_run']:.0%}) and the environment "
        f"(package versions) ~{env_ms:.2f} ms; git is {breakdown['git_share_of_run']:.0%} of a "
        f"whole (a) run ({k['a_ms_per_run']:.1f} ms)."
    )
    print("Read back and counted: every metric value and param, both tools, every repeat.")
    print(f"Wrote {path.relative_to(ROOT)} ({total_s:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
