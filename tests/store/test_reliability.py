"""The store under many writer processes (SQLite and PostgreSQL), and SQLite under kill -9
at random moments."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from keel.store import Store, _tables

from ._workers import finish_killed, run_together, start, wait_ready

pytestmark = pytest.mark.slow

PROCESSES = 8
WRITES = 1_000
KILLS = 20
# PostgreSQL: the 16 concurrent writers; fewer writes each, as 2 cores run them all
PG_PROCESSES = 16
PG_WRITES = 400


def open_with_run(tmp_path: Path, run_id: str = "r1", url: str | None = None) -> Store:
    store = Store.open(url or f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    with store.write() as conn:
        conn.execute(
            _tables.runs.insert().values(
                id=run_id,
                experiment="reliability",
                status="running",
                created_at=time.time(),
                env_json="{}",
                tags_json="{}",
                created_by="test",
            )
        )
    return store


def integrity(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


@pytest.mark.parametrize(
    "backend",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def test_many_processes_each_write_every_row(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every process writes every row, each its own transaction: none lost, none twice."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    processes, writes = (PG_PROCESSES, PG_WRITES) if url else (PROCESSES, WRITES)
    store = open_with_run(tmp_path, url=url)
    try:
        results = run_together(
            "metrics",
            [(store.url, store.blobs.root, "r1", f"p{i}", writes) for i in range(processes)],
            timeout=100,
        )
        for rc, out, err in results:
            assert "locked" not in out + err
            assert (rc, out, err) == (0, f"{writes}\n", "")
        m = _tables.metrics
        with store.read() as conn:
            per_key = dict(conn.execute(select(m.c.key, func.count()).group_by(m.c.key)).all())
            distinct_steps = dict(
                conn.execute(
                    select(m.c.key, func.count(func.distinct(m.c.step))).group_by(m.c.key)
                ).all()
            )
        assert per_key == {f"p{i}": writes for i in range(processes)}
        assert distinct_steps == per_key  # steps 0 .. writes-1, each once
        if backend == "sqlite":
            assert integrity(store.engine.url.database) == ["ok"]
    finally:
        store.close()


def test_kill_minus_nine_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    store = open_with_run(tmp_path)
    db = store.engine.url.database
    rng = random.Random(20240611)
    acked_per_attempt: list[int] = []
    try:
        for attempt in range(KILLS):
            key = f"k{attempt}"
            proc = start("until_killed", store.url, store.blobs.root, "r1", key)
            wait_ready(proc)
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
            out, err = finish_killed(proc)
            assert proc.returncode == -signal.SIGKILL, err
            assert err == ""
            acked = {int(line) for line in out.splitlines(keepends=True) if line.endswith("\n")}

            assert integrity(db) == ["ok"], f"attempt {attempt}"
            with store.read() as conn:
                rows = conn.execute(
                    select(_tables.metrics.c.key, _tables.metrics.c.step).where(
                        _tables.metrics.c.key.like(f"{key}/%")
                    )
                ).all()
            loss = {step for k, step in rows if k == f"{key}/loss"}
            acc = {step for k, step in rows if k == f"{key}/acc"}
            assert len(rows) == len(loss) + len(acc), "a step was written twice"
            assert loss == acc, f"attempt {attempt}: a transaction landed half-way"
            assert acked <= loss, f"attempt {attempt}: acknowledged steps were lost"
            # what landed but was not acknowledged is at most the one write in flight
            assert len(loss - acked) <= 1
            assert loss == set(range(len(loss)))
            acked_per_attempt.append(len(acked))
        # the kills fell while the child was writing, not before it started
        assert sum(n > 0 for n in acked_per_attempt) >= KILLS // 4, acked_per_attempt
        with store.write() as conn:  # the store still takes writes after all that
            conn.execute(
                _tables.metrics.insert().values(run_id="r1", key="after", value=0.0, step=0, ts=0)
            )
    finally:
        store.close()
