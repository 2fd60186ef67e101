"""The store: SQL metadata (SQLite or PostgreSQL) plus a content-addressed blob folder."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from keel.errors import Conflict, StoreError
from keel.store import _engine, _tables
from keel.store._blobs import FileBlobStore, open_blobs
from keel.store._s3 import S3BlobStore

__all__ = ["Store"]


class Store:
    """Metadata and blobs of one keel project.

    ``Store(url, blob_root)`` only stores configuration; :meth:`open` connects and migrates.
    Write through :meth:`write` (one transaction, ``BEGIN IMMEDIATE`` on SQLite), read through
    :meth:`read`.
    """

    def __init__(self, url: str, blob_root: str | Path | FileBlobStore | S3BlobStore) -> None:
        self.url = url
        self.settings: dict[str, Any] = {}
        self.project_root: Path | None = None  # the project folder, when opened through one
        """The project's settings (``keel.yaml``) when opened through a project; policies
        such as the audit gates read them."""
        # a folder, file:///PATH, s3://BUCKET/PREFIX, or a blob store already made
        self.blobs = open_blobs(blob_root)
        self._engine: Engine | None = None
        self._local = threading.local()
        self._raw_held: list[Any] = []
        self._insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}

    @classmethod
    def open(cls, url: str, blob_root: str | Path | FileBlobStore | S3BlobStore) -> Store:
        store = cls(url, blob_root)
        store.connect()
        return store

    def connect(self) -> Store:
        if self._engine is None:
            engine = _engine.create(self.url)
            try:
                _engine.upgrade(engine)
            except SQLAlchemyError as exc:
                engine.dispose()
                raise StoreError(
                    f"cannot open the store at {self.safe_url}: {_short(exc)}"
                ) from None
            self._engine = engine
        return self

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self.connect()
        assert self._engine is not None
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<store>"

    def close(self) -> None:
        for proxied in self._raw_held:
            proxied.close()
        self._raw_held.clear()
        self._local = threading.local()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: all of it lands, or none of it."""
        try:
            with self.engine.connect().execution_options(keel_write=True) as conn:
                with conn.begin():
                    yield conn
        except IntegrityError as exc:
            raise Conflict(f"store write refused: {_short(exc)}") from None
        except OperationalError as exc:
            raise StoreError(f"store write failed: {_short(exc)}") from None
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
                raise
            raise StoreError(
                f"store write refused: {_short(exc)}; the database role "
                f"{self.engine.url.username or '(default)'!r} may not change the store "
                "(a read-only role reads only)"
            ) from None

    def append(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` into ``table`` in one write transaction: the tracking hot path.

        On SQLite it skips SQLAlchemy's per-statement machinery and drives the driver
        directly (same pragmas, ``BEGIN IMMEDIATE``, ``synchronous=FULL``), on a connection
        kept per thread; on PostgreSQL it is an ordinary :meth:`write`.
        """
        if not rows:
            return
        if self.dialect != "sqlite":
            with self.write() as conn:
                conn.execute(insert(table), rows)
            return
        cols = list(rows[0])
        sql = self._insert_sql.get((table.name, tuple(cols)))
        if sql is None:
            marks = ", ".join("?" * len(cols))
            sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({marks})"
            self._insert_sql[(table.name, tuple(cols))] = sql
        raw = self._raw_connection()
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(sql, [tuple(r[c] for c in cols) for r in rows])
            raw.execute("COMMIT")
        except sqlite3.Error as exc:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            why = str(exc).splitlines()[0]
            if isinstance(exc, sqlite3.IntegrityError):
                raise Conflict(f"store write refused: {why}") from None
            raise StoreError(f"store write failed: {why}") from None

    def _raw_connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "raw", None)
        if conn is None:
            proxied = self.engine.raw_connection()  # pool connection: keel's pragmas applied
            self._raw_held.append(proxied)
            conn = proxied.driver_connection
            if not isinstance(conn, sqlite3.Connection):
                raise StoreError(f"expected a sqlite3 driver connection, got {type(conn).__name__}")
            self._local.raw = conn
        return conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def schema_revision(self) -> str | None:
        return _engine.current_revision(self.engine)

    # -- small shared records ------------------------------------------------------------

    def add_event(self, conn: Connection, kind: str, subject: str, payload: dict[str, Any]) -> None:
        conn.execute(
            insert(_tables.events).values(
                kind=kind, subject=subject, payload_json=json.dumps(payload), at=time.time()
            )
        )

    def add_edge(
        self,
        conn: Connection,
        child: tuple[str, str],
        parent: tuple[str, str],
        role: str,
    ) -> None:
        """A lineage edge: ``child`` (kind, id) was made from ``parent`` (kind, id).

        Adding an edge that exists does nothing, also when two writers add it at once.
        """
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            dialect_insert(_tables.lineage)
            .values(
                child_kind=child[0],
                child_id=child[1],
                parent_kind=parent[0],
                parent_id=parent[1],
                role=role,
            )
            .on_conflict_do_nothing()
        )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        t = _tables.events
        q = select(t).order_by(t.c.id)
        if kind:
            q = q.where(t.c.kind == kind)
        with self.read() as conn:
            return [
                {**dict(r._mapping), "payload": json.loads(r.payload_json)} for r in conn.execute(q)
            ]

    def __repr__(self) -> str:
        return f"Store({self.safe_url!r}, blobs={self.blobs.location!r})"


def _short(exc: BaseException) -> str:
    """The driver's message without SQL text or parameters."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
