"""SQLite settings that make the default store safe with several processes: WAL, FULL sync,
a busy timeout, and write transactions that take the write lock at BEGIN."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from keel import config
from keel.errors import StoreError
from keel.store import Store, _tables


def add_run(conn, run_id: str) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        _tables.runs.insert().values(
            id=run_id,
            experiment="x",
            status="running",
            created_at=time.time(),
            env_json="{}",
            tags_json="{}",
            created_by="test",
        )
    )


def count_runs(store: Store) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(_tables.runs)).scalar_one()


def pragmas(conn) -> dict[str, object]:  # type: ignore[no-untyped-def]
    names = ["journal_mode", "synchronous", "busy_timeout", "foreign_keys"]
    return {n: conn.exec_driver_sql(f"PRAGMA {n}").scalar() for n in names}


def test_pragmas_in_force_on_read_and_write_connections(store: Store) -> None:
    expected = {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "busy_timeout": config.SETTINGS["KEEL_BUSY_TIMEOUT_MS"].default,
        "foreign_keys": 1,
    }
    with store.read() as conn:
        assert pragmas(conn) == expected
    with store.write() as conn:
        assert pragmas(conn) == expected


def test_busy_timeout_follows_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_BUSY_TIMEOUT_MS", "1234")
    store = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    try:
        with store.write() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        store.close()


def test_write_takes_the_write_lock_at_begin(store: Store) -> None:
    """BEGIN IMMEDIATE: the lock is held before the first statement, so two writers never
    both hold a read lock and then deadlock upgrading it."""
    other = sqlite3.connect(store.engine.url.database, timeout=0, isolation_level=None)
    try:
        with store.write():
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once the write is over
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_reads_do_not_take_the_write_lock(store: Store) -> None:
    other = sqlite3.connect(store.engine.url.database, timeout=0, isolation_level=None)
    try:
        with store.read() as conn:
            conn.execute(select(_tables.runs))
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        with store.write():  # and a write does not stop a reader (WAL)
            assert other.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    finally:
        other.close()


def test_second_writer_waits_then_succeeds(store: Store) -> None:
    hold = 0.4
    entered = threading.Event()
    errors: list[BaseException] = []
    waited: list[float] = []

    def first() -> None:
        try:
            with store.write() as conn:
                add_run(conn, "first")
                entered.set()
                time.sleep(hold)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            entered.set()

    def second() -> None:
        try:
            entered.wait()
            t0 = time.monotonic()
            with store.write() as conn:
                waited.append(time.monotonic() - t0)
                add_run(conn, "second")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert waited and waited[0] > hold / 2, "the second writer should have waited for the lock"
    assert count_runs(store) == 2


def test_writer_that_cannot_get_the_lock_gets_store_error(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_BUSY_TIMEOUT_MS", "150")
    impatient = Store.open(store.url, tmp_path / "blobs")
    try:
        with store.write() as conn:
            add_run(conn, "holder")
            t0 = time.monotonic()
            with pytest.raises(StoreError) as info:
                with impatient.write() as other:
                    add_run(other, "impatient")
            waited = time.monotonic() - t0
        assert not isinstance(info.value, (sqlite3.Error, SQLAlchemyError))
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert "locked" in str(info.value)
        assert 0.1 < waited < 5, f"waited {waited:.2f}s for a 150 ms busy timeout"
        assert count_runs(store) == 1  # the holder's write landed, the impatient one did not
        with impatient.write() as other:  # and the lock is free for it now
            add_run(other, "impatient")
        assert count_runs(store) == 2
    finally:
        impatient.close()
