"""The team store's metadata on PostgreSQL against SQLite: ``keel runs`` at 100,000 runs, and
16 concurrent writer processes, in one run.

Listing: each back-end gets ``--runs`` finished runs (10 experiments, created 1 s apart, the
environment JSON keel records, ``--params`` params and ``--metrics`` metrics of ``--steps``
steps each), written in bulk straight into keel's tables (SQLite: one ``executemany``
transaction, not ANALYZEd, as keel's own SQLite stores are not; PostgreSQL: ``COPY``, then
ANALYZE, as autovacuum would soon do). Timed, ``--repeats`` times each, median:
``keel.train.list_runs`` with the CLI's default limit (20), what ``keel runs`` calls; the
same filtered to one experiment; and the CLI itself, ``keel runs`` as a subprocess (Python
start-up and imports included). Then again with the two indexes proposed for migration 0006
(``runs (created_at)``, ``runs (experiment, created_at)``), which keel's schema lacks today.
Writers: ``--writers`` processes released together, each
``--writes`` ``Run.log_metric`` calls (one transaction each) into a fresh store; rows/s from
the go signal to the last exit, and rows lost (written by the store's count, not trusted
from the children). PostgreSQL is the server on 127.0.0.1:5432 (a fresh database, dropped
after), on the same machine as the clients.

    .venv/bin/python bench/bench_team_store.py      # writes bench/results/team_store.json
    .venv/bin/python bench/bench_team_store.py --runs 5000 --repeats 3 --writes 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import ROOT, machine, median, table, timed, write_results

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "store"))
from _workers import run_together_timed  # noqa: E402 - the store tests' writer processes
from tests.conftest import PG_ADMIN_USERS, fresh_pg_database  # noqa: E402

from keel.store import Store, _tables  # noqa: E402
from keel.train import list_runs  # noqa: E402
from keel.train._tracking import environment  # noqa: E402

PACKAGES = ("keel", "sqlalchemy", "psycopg", "alembic")
EXPERIMENTS = 10
CLI_LIMIT = 20  # keel runs --limit's default
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the first run; runs are 1 s apart


# -- the data -------------------------------------------------------------------------------


def rows(args: argparse.Namespace) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """(table, rows) in batches of 10,000 runs with their params and metrics."""
    rng = random.Random(0)
    env = json.dumps(environment())
    cols_runs = [c.name for c in _tables.runs.columns]
    for start in range(0, args.runs, 10_000):
        runs, params, metrics = [], [], []
        for i in range(start, min(start + 10_000, args.runs)):
            run_id = f"{i:032x}"
            created = T0 + i
            values = {
                "id": run_id,
                "experiment": f"exp-{i % EXPERIMENTS}",
                "status": "finished",
                "created_at": created,
                "ended_at": created + 0.5,
                "wall_time": 0.5,
                "seed": i,
                "git_commit": "0" * 40,
                "env_json": env,
                "tags_json": json.dumps({"model": "lightgbm"}),
                "created_by": "bench",
                "pid": None,
                "host": None,
                "heartbeat_at": created + 0.5,
                "status_reason": None,
            }
            runs.append(tuple(values[c] for c in cols_runs))
            for p in range(args.params):
                params.append((run_id, f"p{p}", json.dumps(round(rng.random(), 4))))
            for m in range(args.metrics):
                for step in range(args.steps):
                    metrics.append((run_id, f"m{m}", rng.random(), step, created + step))
        yield "runs", runs
        yield "params", params
        yield "metrics", metrics


METRIC_COLS = ("run_id", "key", "value", "step", "ts")


def columns(name: str) -> list[str]:
    if name == "metrics":
        return list(METRIC_COLS)
    return [c.name for c in _tables.metadata.tables[name].columns]


def fill_sqlite(store: Store, args: argparse.Namespace) -> None:
    conn = sqlite3.connect(store.engine.url.database or "", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for name, batch in rows(args):
            cols = columns(name)
            marks = ", ".join("?" * len(cols))
            sql = f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({marks})"
            conn.executemany(sql, batch)
        conn.execute("COMMIT")  # no ANALYZE: keel never runs it on a SQLite store
    finally:
        conn.close()


def fill_postgres(store: Store, args: argparse.Namespace) -> None:
    raw = store.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        with pg.cursor() as cur:
            for name, batch in rows(args):
                cols = ", ".join(columns(name))
                with cur.copy(f"COPY {name} ({cols}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
        pg.commit()
        pg.autocommit = True
        pg.execute("ANALYZE")
        pg.autocommit = False
    finally:
        raw.close()


# -- the stores -----------------------------------------------------------------------------


@contextmanager
def pg_database() -> Iterator[str]:
    import psycopg

    for user in PG_ADMIN_USERS:
        try:
            with psycopg.connect(f"postgresql://{user}@127.0.0.1:5432/postgres", connect_timeout=3):
                break
        except psycopg.Error:
            continue
    else:
        raise SystemExit("no PostgreSQL server at 127.0.0.1:5432 (as postgres or root)")
    with fresh_pg_database(user) as url:
        yield url


@contextmanager
def stores(tmp: Path) -> Iterator[dict[str, str]]:
    """A fresh store URL per back-end (each call: new ones)."""
    folder = Path(tempfile.mkdtemp(prefix="sqlite-", dir=tmp))
    with pg_database() as pg:
        yield {"sqlite": f"sqlite:///{folder}/store.db", "postgresql": pg}


# -- the figures ----------------------------------------------------------------------------


#: Indexes for the newest-first listing, proposed as migration 0006 (not in keel's schema yet:
#: without them both back-ends scan and sort every run). IF NOT EXISTS: a no-op once they are.
PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_runs_created_at ON runs (created_at)",
    "CREATE INDEX IF NOT EXISTS ix_runs_experiment_created_at ON runs (experiment, created_at)",
)


def listing(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The listing figures on a store of ``--runs`` runs: as keel's schema has it, then with
    :data:`PROPOSED_INDEXES` added."""
    store = Store.open(url, tmp / "blobs")
    project = tmp / "project"
    project.mkdir(parents=True)
    (project / "keel.yaml").write_text("name: bench\nformat_version: 1\n")
    env = {**os.environ, "KEEL_STORE": url, "KEEL_BLOBS": str(tmp / "blobs")}
    cmd = [sys.executable, "-m", "keel", "runs", "--project", str(project)]
    newest = f"{args.runs - 1:032x}"

    def cli() -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0 and newest[:12] in done.stdout, done

    def repeat(fn: Callable[[], Any]) -> float:
        fn()  # warm: connection pool, page cache, statement caches
        return round(median([timed(fn)[0] * 1000 for _ in range(args.repeats)]), 2)

    def figures() -> dict[str, float]:
        got = list_runs(store, None, CLI_LIMIT)
        assert len(got) == CLI_LIMIT and got[0]["id"] == newest, got[:1]
        assert len(got[0]["params"]) == args.params and len(got[0]["metrics"]) == args.metrics
        return {
            "list_runs_ms": repeat(lambda: list_runs(store, None, CLI_LIMIT)),
            "list_runs_one_experiment_ms": repeat(lambda: list_runs(store, "exp-3", CLI_LIMIT)),
            "cli_keel_runs_ms": repeat(cli),
        }

    try:
        fill = fill_sqlite if store.dialect == "sqlite" else fill_postgres
        build_s, _ = timed(lambda: fill(store, args))
        out: dict[str, Any] = {"build_s": round(build_s, 1), "as_shipped": figures()}
        with store.write() as conn:
            for ddl in PROPOSED_INDEXES:
                conn.exec_driver_sql(ddl)
            if store.dialect == "postgresql":
                conn.exec_driver_sql("ANALYZE runs")
        out["with_proposed_indexes"] = figures()
    finally:
        store.close()
    bare = [sys.executable, "-c", "import keel.cli"]
    out["python_start_import_keel_cli_ms"] = repeat(
        lambda: subprocess.run(bare, env=env, check=True, capture_output=True)
    )
    return out


def writers(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """One round: ``--writers`` processes, ``--writes`` metrics each, into a fresh store."""
    store = Store.open(url, tmp / "blobs")
    try:
        with store.write() as conn:
            conn.execute(
                _tables.runs.insert().values(
                    id="w",
                    experiment="writers",
                    status="running",
                    created_at=time.time(),
                    env_json="{}",
                    tags_json="{}",
                    created_by="bench",
                )
            )
        children = [(url, tmp / "blobs", "w", f"w{i}", args.writes) for i in range(args.writers)]
        results, seconds = run_together_timed("metrics", children, timeout=600)
        failed = [(rc, err[-300:]) for rc, _, err in results if rc != 0 or err]
        m = _tables.metrics
        from sqlalchemy import func, select

        with store.read() as conn:
            written = conn.execute(select(func.count()).where(m.c.run_id == "w")).scalar_one()
    finally:
        store.close()
    expected = args.writers * args.writes
    return {
        "rows_per_s": expected / seconds,
        "rows_lost": expected - int(written),
        "writers_failed": len(failed),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--params", type=int, default=4)
    ap.add_argument("--metrics", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--writes", type=int, default=200, help="metric writes per writer")
    ap.add_argument("--writer-rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"load average at start {os.getloadavg()}, cpu {machine([])['cpu']}", flush=True)
    results: dict[str, Any] = {"params": vars(args), "listing": {}, "writers": {}}
    with tempfile.TemporaryDirectory(prefix="keel-bench-team-") as name:
        tmp = Path(name)
        with stores(tmp) as urls:
            for backend, url in urls.items():
                results["listing"][backend] = listing(url, tmp / f"list-{backend}", args)
                print(backend, results["listing"][backend], flush=True)
        rounds: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
        for _ in range(args.writer_rounds):  # alternate, so load drifts hit both alike
            with stores(tmp) as urls:
                for backend, url in urls.items():
                    folder = tmp / f"w-{backend}-{len(rounds[backend])}"
                    rounds[backend].append(writers(url, folder, args))
                    print(backend, rounds[backend][-1], flush=True)
        for backend, rs in rounds.items():
            results["writers"][backend] = {
                "rows_per_s": round(median([r["rows_per_s"] for r in rs]), 1),
                "rows_lost_total": sum(int(r["rows_lost"]) for r in rs),
                "writers_failed_total": sum(int(r["writers_failed"]) for r in rs),
                "rounds": rs,
            }
    results["machine"] = machine(PACKAGES)
    lst, wr = results["listing"], results["writers"]
    both = ("sqlite", "postgresql")
    shipped = {b: lst[b]["as_shipped"] for b in both}
    indexed = {b: lst[b]["with_proposed_indexes"] for b in both}
    print(
        table(
            ["figure", "SQLite", "PostgreSQL"],
            [
                [f"list_runs, {args.runs:,} runs, limit {CLI_LIMIT} (ms)"]
                + [shipped[b]["list_runs_ms"] for b in both],
                ["  same, one experiment (ms)"]
                + [shipped[b]["list_runs_one_experiment_ms"] for b in both],
                ["keel runs, CLI subprocess (ms)"] + [shipped[b]["cli_keel_runs_ms"] for b in both],
                ["list_runs, with the proposed indexes (ms)"]
                + [indexed[b]["list_runs_ms"] for b in both],
                ["  same, one experiment (ms)"]
                + [indexed[b]["list_runs_one_experiment_ms"] for b in both],
                ["keel runs CLI, with the proposed indexes (ms)"]
                + [indexed[b]["cli_keel_runs_ms"] for b in both],
                [f"{args.writers} writers x {args.writes} metric writes, rows/s"]
                + [wr[b]["rows_per_s"] for b in both],
                [f"{args.writers} writers, rows lost ({args.writer_rounds} rounds)"]
                + [wr[b]["rows_lost_total"] for b in both],
            ],
        )
    )
    m = results["machine"]
    print(
        f"cpu {m['cpu']}, {m['cores']} cores, load average (1/5/15 min) "
        f"{m['loadavg_1_5_15_at_start']} at start, {m['loadavg_1_5_15_at_end']} at end"
    )
    print(f"wrote {write_results('team_store', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
