"""Engines for the two metadata back-ends, and the schema migration that opens them.

SQLite (the default): WAL journal so readers never block the writer, a busy timeout so
writers queue instead of failing, ``synchronous=FULL`` so an acknowledged write survives a
crash, and ``BEGIN IMMEDIATE`` for write transactions so two writers never both hold a read
lock and deadlock on the upgrade. PostgreSQL: psycopg 3, with an advisory lock around
migrations, connections checked before use (``pool_pre_ping``, so a restarted server's dead
connections are replaced) and a 10 s connect timeout.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from keel import config
from keel.errors import InvalidInput

_MIGRATIONS = Path(__file__).parent / "_migrations"
_PG_LOCK_KEY = 0x6B65656C  # "keel"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``sqlite:///`` URLs; pick the drivers keel ships with."""
    try:
        parsed = make_url(url)
    except Exception:
        raise InvalidInput(
            f"KEEL_STORE: expected a URL such as sqlite:///path/store.db or "
            f"postgresql://user@host/db, got {url!r}"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return str(parsed.set(drivername="postgresql+psycopg").render_as_string(False))
    if backend == "sqlite":
        return url
    raise InvalidInput(f"KEEL_STORE: expected a sqlite or postgresql URL, got {backend!r}")


def create(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # A bounded connect: a server host that drops packets would otherwise hold each try for
    # the operating system's TCP timeout (minutes), past KEEL_STORE_RETRY_SECONDS.
    connect_args = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": 10}
    return create_engine(
        url, pool_pre_ping=True, pool_size=4, max_overflow=8, connect_args=connect_args
    )


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=NullPool if not path else None)
    timeout = config.get_int("KEEL_BUSY_TIMEOUT_MS")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # keel issues BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={timeout}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("keel_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _alembic_config(conn: Connection | None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest migration's revision, read from the version files' ``revision`` and
    ``down_revision`` lines: importing Alembic costs about 0.25 s, which every ``keel``
    command would pay to learn that its store is up to date. Anything but one head is left
    to Alembic's own reader (and its error); a test checks that both agree."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        if path.name == "__init__.py":  # Alembic skips it too
            continue
        found = dict(_REVISION_LINE.findall(path.read_text()))
        if "revision" not in found:
            return alembic_head_revision()
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else alembic_head_revision()


_REVISION_LINE = re.compile(r"""^((?:down_)?revision)\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def alembic_head_revision() -> str:
    """The newest migration's revision as Alembic reads it."""
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration); plain SQL on
    Alembic's version table, so checking an up-to-date store imports no Alembic."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:  # branches: Alembic's reader says what is wrong
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return str(rows[0]) if rows else None


_VERSION_TABLE = "alembic_version"


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe when many processes do it at once."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    from alembic import command

    with _migration_lock(engine):
        with engine.connect().execution_options(keel_write=True) as conn:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                command.upgrade(_alembic_config(conn), "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """A file lock beside a SQLite database (its DDL and the version row must not race)."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    fd = os.open(f"{path}.migrate.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
