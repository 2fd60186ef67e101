"""Fixtures shared by the whole test suite.

``store``
    A fresh SQLite :class:`keel.store.Store` in ``tmp_path`` (``store.db`` + ``blobs/``),
    closed after the test.
``pg_url``
    The URL (``postgresql://<user>@127.0.0.1:5432/keel_test_<random>``) of a fresh database
    on the local PostgreSQL server, dropped after the test. When no server answers the test
    is skipped with the reason, unless the environment variable ``CI`` is set: CI must never
    skip PostgreSQL tests, so there it fails.
``any_store``
    A fresh, open store on each back-end: parametrised ``sqlite`` and ``postgresql`` (the
    second carries the ``postgres`` marker), so a store test runs on both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keel.store import Store

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_USERS = ("postgres", "root")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    yield s
    s.close()


@pytest.fixture(scope="session")
def pg_admin_user() -> str:
    """A user that can create databases on the local server; skips (fails on CI) if none."""
    problems = []
    try:
        import psycopg
    except ImportError as exc:
        problems.append(f"psycopg is not installed ({exc})")
    else:
        for user in PG_ADMIN_USERS:
            try:
                with psycopg.connect(_admin_conninfo(user), connect_timeout=3):
                    return user
            except psycopg.Error as exc:
                problems.append(f"as {user}: {_first_line(exc)}")
    reason = f"no PostgreSQL server at {PG_HOST}:{PG_PORT}: {'; '.join(problems)}"
    if "CI" in os.environ:
        pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def pg_url(pg_admin_user: str) -> Iterator[str]:
    with fresh_pg_database(pg_admin_user) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
        yield s
        s.close()
        return
    with fresh_pg_database(request.getfixturevalue("pg_admin_user")) as url:
        s = Store.open(url, tmp_path / "blobs")
        yield s
        s.close()


@contextmanager
def fresh_pg_database(admin_user: str) -> Iterator[str]:
    """Create ``keel_test_<random>``, yield its URL, then drop it (ending its sessions)."""
    import psycopg
    from psycopg import sql

    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(admin_user), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://{admin_user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(_admin_conninfo(admin_user), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _admin_conninfo(user: str) -> str:
    return f"postgresql://{user}@{PG_HOST}:{PG_PORT}/postgres"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
