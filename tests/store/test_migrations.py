"""Schema migrations: a fresh store is at head, matches the table definitions, and many
processes opening one fresh store at once migrate it exactly once."""

from __future__ import annotations

from pathlib import Path

import alembic.command
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from keel.store import Store, _engine, _tables

from ._workers import run_together

HEAD = _engine.head_revision()


def schema_diff(store: Store) -> list:
    """What autogenerate would change to make the database match ``_tables.metadata``."""
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(ctx, _tables.metadata)


def version_rows(store: Store) -> list[str]:
    with store.read() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_head_is_a_single_revision() -> None:
    assert HEAD and HEAD != "None"


def test_fresh_store_is_at_head(any_store: Store) -> None:
    assert any_store.schema_revision() == HEAD
    assert version_rows(any_store) == [HEAD]


def test_migrated_schema_equals_tables(any_store: Store) -> None:
    assert schema_diff(any_store) == []
    tables = set(inspect(any_store.engine).get_table_names())
    assert tables == set(_tables.metadata.tables) | {"alembic_version"}


def test_reopening_does_not_migrate(
    any_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_upgrade(*args: object, **kwargs: object) -> None:
        raise AssertionError("a store already at head was migrated again")

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    again = Store.open(any_store.url, tmp_path / "blobs")
    try:
        assert again.schema_revision() == HEAD
        assert version_rows(again) == [HEAD]
    finally:
        again.close()


def test_downgrade_to_base_and_back(any_store: Store) -> None:
    """The first migration's downgrade drops what its upgrade created, in a working order."""
    with any_store.write() as conn:
        alembic.command.downgrade(_engine._alembic_config(conn), "base")
    assert set(inspect(any_store.engine).get_table_names()) <= {"alembic_version"}
    assert any_store.schema_revision() is None
    _engine.upgrade(any_store.engine)
    assert any_store.schema_revision() == HEAD
    assert schema_diff(any_store) == []


def _open_concurrently(url: str, blob_root: Path, n: int = 8) -> None:
    results = run_together("open", [(url, blob_root)] * n)
    for rc, out, err in results:
        assert (rc, err) == (0, ""), f"a process failed to open the store:\n{err}"
        assert out.strip() == HEAD
    store = Store.open(url, blob_root)
    try:
        assert version_rows(store) == [HEAD]
        assert schema_diff(store) == []
    finally:
        store.close()


@pytest.mark.slow
def test_eight_processes_open_one_fresh_sqlite_store(tmp_path: Path) -> None:
    _open_concurrently(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_processes_open_one_fresh_postgres_store(pg_url: str, tmp_path: Path) -> None:
    _open_concurrently(pg_url, tmp_path / "blobs")
