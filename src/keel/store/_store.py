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

from sqlalchemy import Engine, Table, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

from keel import config
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

    On PostgreSQL a lost connection (the server restarted, crashed or is briefly unreachable)
    is retried with backoff for ``KEEL_STORE_RETRY_SECONDS``: opening the connection of any
    :meth:`read` or :meth:`write`, and the whole of an :meth:`append` (see there for a commit
    whose acknowledgement was lost). A :meth:`write` whose connection drops after its body
    began cannot be replayed by the store (the body is the caller's code): it fails with one
    line saying whether nothing was committed or the commit's outcome is unknown.
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
        committing = False
        try:
            with self._connect(keel_write=True) as conn:
                with conn.begin():
                    yield conn
                    committing = True  # what fails from here on failed in COMMIT
        except DBAPIError as exc:
            error = self._write_error(exc, committing)
            if error is exc:
                raise
            raise error from None

    def _write_error(self, exc: DBAPIError, committing: bool) -> Exception:
        """The one-line error for a failed write (``committing``: it failed in COMMIT), or
        ``exc`` itself when keel has nothing to add."""
        if isinstance(exc, IntegrityError):
            return Conflict(f"store write refused: {_short(exc)}")
        if self.dialect == "postgresql" and _lost_connection(exc):
            outcome = (
                "the commit's outcome is unknown (it may have landed)"
                if committing
                else "nothing of this write was committed"
            )
            return StoreError(
                f"store write failed: the connection to {self.safe_url} was lost "
                f"({_short(exc)}); {outcome}"
            )
        if isinstance(exc, OperationalError):
            return StoreError(f"store write failed: {_short(exc)}")
        if isinstance(exc, ProgrammingError) and getattr(exc.orig, "sqlstate", None) == "42501":
            return StoreError(  # insufficient_privilege
                f"store write refused: {_short(exc)}; the database role "
                f"{self.engine.url.username or '(default)'!r} may not change the store "
                "(a read-only role reads only)"
            )
        return exc

    def append(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` into ``table`` in one write transaction: the tracking hot path.

        On SQLite it skips SQLAlchemy's per-statement machinery and drives the driver
        directly (same pragmas, ``BEGIN IMMEDIATE``, ``synchronous=FULL``), on a connection
        kept per thread. On PostgreSQL it is one transaction that is retried whole when the
        connection is lost (see :meth:`_append_pg`).
        """
        if not rows:
            return
        if self.dialect != "sqlite":
            self._append_pg(table, rows)
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

    def _append_pg(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` in one transaction, retried whole while the connection is lost.

        The rows are plain data, so a transaction that did not commit can be sent again. The
        hard case is a connection lost *in* COMMIT: the server may have committed and only
        the acknowledgement was lost, and sending the rows again would write them twice. So
        the insert returns the transaction's id (``txid_current()``), and after such a
        loss keel reconnects and asks the server: ``txid_status`` (PostgreSQL's answer to
        exactly this question) says committed, aborted or still in progress (then keel asks
        again). Committed counts only if the first row is there with that transaction as its
        ``xmin`` too: after a crash that lost the commit record, the server may hand the
        same id to another transaction. Committed: done, nothing is sent again. Otherwise
        the rows are sent again. When ``KEEL_STORE_RETRY_SECONDS`` runs out, one line says
        so and whether the last attempt may have landed.
        """
        retry = _Retry(self)
        while True:
            xid: int | None = None
            committing = False
            try:
                with self._connect_once(keel_write=True) as conn:
                    with conn.begin():
                        # the transaction's id comes back with the insert: no extra round trip
                        done = conn.execute(insert(table).returning(func.txid_current()), rows)
                        xid = int(done.scalars().all()[0])
                        committing = True
            except DBAPIError as exc:
                if not _lost_connection(exc):
                    error = self._write_error(exc, committing=False)
                    if error is exc:
                        raise
                    raise error from None
                if committing and xid is not None:
                    if self._landed(table, rows[0], xid, retry, exc):
                        return
                retry.wait(exc)
                continue
            return

    def _landed(
        self, table: Table, first: dict[str, Any], xid: int, retry: _Retry, lost: DBAPIError
    ) -> bool:
        """Whether transaction ``xid``, whose COMMIT lost its connection, committed."""
        while True:
            try:
                with self._connect_once() as conn:
                    try:
                        status = conn.execute(
                            text("SELECT txid_status(:x)"), {"x": xid}
                        ).scalar_one()
                    except DBAPIError as exc:
                        if getattr(exc.orig, "sqlstate", None) != "22023":
                            raise
                        return False  # "in the future": the crash lost it, the id is unused
                    if status == "in progress":  # the old session is still finishing
                        raise _StillInProgress
                    if status not in ("committed", None):
                        return False  # aborted
                    # committed (or too old to tell): our first row, written by xid?
                    where = [table.c[k] == v for k, v in first.items()]
                    mine = text("xmin::text = :x32").bindparams(x32=str(xid & 0xFFFFFFFF))
                    found = conn.execute(select(text("1")).select_from(table).where(*where, mine))
                    return found.first() is not None
            except _StillInProgress:
                retry.wait(lost, landed="maybe")
            except DBAPIError as exc:
                if not _lost_connection(exc):
                    raise
                retry.wait(exc, landed="maybe")

    @contextmanager
    def _connect(self, keel_write: bool = False) -> Iterator[Connection]:
        """A connection, waiting (PostgreSQL) while the server cannot be reached."""
        if self.dialect != "postgresql":
            with self._connect_once(keel_write) as conn:
                yield conn
            return
        retry = _Retry(self)
        while True:
            try:
                conn = self._connect_once(keel_write)
                break
            except DBAPIError as exc:
                if not _lost_connection(exc):
                    raise
                retry.wait(exc, what="store connection")
        with conn:
            yield conn

    def _connect_once(self, keel_write: bool = False) -> Connection:
        conn = self.engine.connect()
        return conn.execution_options(keel_write=True) if keel_write else conn

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
        with self._connect() as conn:
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


class _StillInProgress(Exception):
    """The transaction asked about has not finished yet."""


#: PostgreSQL error codes of a connection that is gone: connection exceptions (08xxx) and the
#: server going down or not yet up (admin_shutdown, crash_shutdown, cannot_connect_now).
_LOST_STATES = ("57P01", "57P02", "57P03")


def _lost_connection(exc: DBAPIError) -> bool:
    """Whether ``exc`` (from PostgreSQL) means the connection is gone or could not be made,
    so nothing of the work in flight went further than its COMMIT, if it got that far."""
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:  # no answer from a server at all: refused, reset, closed
        return isinstance(exc, OperationalError)
    return bool(state.startswith("08") or state in _LOST_STATES)


class _Retry:
    """Backoff (50 ms doubling to 1 s) until ``KEEL_STORE_RETRY_SECONDS`` have passed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.budget = config.get_int("KEEL_STORE_RETRY_SECONDS")
        self.deadline = time.monotonic() + self.budget
        self.delay = 0.05

    def wait(self, exc: DBAPIError, what: str = "store write", landed: str = "no") -> None:
        """Sleep before the next try, or raise the one-line error when time is up."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            outcome = {
                "no": "nothing of it was committed",
                "maybe": "its last commit's outcome is unknown (it may have landed)",
            }[landed]
            raise StoreError(
                f"{what} failed: the connection to {self.store.safe_url} was lost and did not "
                f"come back within KEEL_STORE_RETRY_SECONDS={self.budget} s ({_short(exc)}); "
                f"{outcome}"
            ) from None
        time.sleep(min(self.delay, remaining))  # the last try falls at the deadline
        self.delay = min(self.delay * 2, 1.0)


def _short(exc: BaseException) -> str:
    """The driver's message without SQL text or parameters."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
