"""The prediction log: what the model server answered, kept as Parquet segments in the store.

:class:`PredictionLog` takes entries from the request path without waiting on the disk:
:meth:`~PredictionLog.record` appends to an in-memory buffer under a lock and returns. A
background thread flushes the buffer when it holds ``segment_rows`` entries or every
``flush_seconds``: it swaps the buffer out under the lock, encodes it outside the lock, writes
each segment as a content-addressed blob, and only then records the segments'
``prediction_segments`` rows in one transaction. A segment is visible once its row is
committed, so a crash loses at most the entries not yet flushed, never part of a segment.
A flush that fails (the store is down) keeps its entries in the buffer and is retried.

An entry is a dict::

    {
        "request_id": "4f1c…",            # required, non-empty string
        "model": "adult",                 # required, non-empty string
        "version": 3,                     # required, integer
        "inputs": {"age": 39, …},         # the row the model saw
        "outputs": {"label": ">50K", "probabilities": {"<=50K": 0.2, ">50K": 0.8}},
        "ts": 1718000000.0,               # optional, epoch seconds; default: when recorded
        "latency_ms": 3.2,                # optional
    }

``outputs`` holds ``label`` and ``probabilities`` (a dict class → probability in the
model's class order, or a list) for a classifier, ``prediction`` for a regressor.

Each segment is one Parquet file of one model version with the columns of
:data:`SEGMENT_SCHEMA`; ``label``, ``score`` and ``prediction`` are null where the outputs
have no such value. ``score`` is the positive-class probability for two classes (the second
class, as in scikit-learn's ``classes_``) and the top-class probability otherwise.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import math
import random
import threading
import time
import weakref
from collections import defaultdict
from datetime import datetime
from itertools import groupby
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import insert, select

from keel.errors import Conflict, InvalidInput
from keel.serve._predblock import Block, block_table
from keel.store import Store, _tables

__all__ = ["SEGMENT_FORMAT", "SEGMENT_SCHEMA", "PredictionLog", "read_predictions"]

_log = logging.getLogger("keel.serve.predlog")

#: Version of the segment layout, written into each file's metadata (``keel.predlog``).
SEGMENT_FORMAT = 1

#: The columns of every prediction-log segment.
SEGMENT_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("ts", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float32()),
        pa.field("inputs", pa.string()),
        pa.field("outputs", pa.string()),
        pa.field("label", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("prediction", pa.float64()),
    ],
    metadata={b"keel.predlog": str(SEGMENT_FORMAT).encode()},
)

_t = _tables.prediction_segments
_open_logs: weakref.WeakSet[PredictionLog] = weakref.WeakSet()


class PredictionLog:
    """Buffered, sampled, crash-safe logging of predictions into ``store``.

    ``sample_rate`` is the share of entries kept; with a ``seed`` the choice is a hash of
    ``(seed, request_id)``, so the same request is kept or dropped every time and by every
    log with that seed (a shadow model and the live one sample the same requests). Without a
    seed it is random. When the flusher falls behind and the buffer holds
    ``max_buffer_rows`` entries, new entries are dropped and counted in :attr:`dropped`
    rather than making callers wait.

    Use it as a context manager, or call :meth:`close`; the thread starts on the first
    :meth:`record`. A log still open at interpreter exit is flushed then.
    """

    def __init__(
        self,
        store: Store,
        *,
        segment_rows: int = 5000,
        flush_seconds: float = 2.0,
        sample_rate: float = 1.0,
        seed: int | None = None,
        max_buffer_rows: int | None = None,
    ) -> None:
        if not isinstance(segment_rows, int) or segment_rows < 1:
            raise InvalidInput(f"segment_rows: expected an integer ≥ 1, got {segment_rows!r}")
        if not _is_number(flush_seconds) or not flush_seconds > 0:
            raise InvalidInput(f"flush_seconds: expected a number > 0, got {flush_seconds!r}")
        if not _is_number(sample_rate) or not 0.0 <= sample_rate <= 1.0:
            raise InvalidInput(f"sample_rate: expected a number in [0, 1], got {sample_rate!r}")
        if max_buffer_rows is None:
            max_buffer_rows = max(20 * segment_rows, 100_000)
        if not isinstance(max_buffer_rows, int) or max_buffer_rows < segment_rows:
            raise InvalidInput(
                f"max_buffer_rows: expected an integer ≥ segment_rows ({segment_rows}), "
                f"got {max_buffer_rows!r}"
            )
        self.store = store
        self.segment_rows = segment_rows
        self.flush_seconds = float(flush_seconds)
        self.sample_rate = float(sample_rate)
        self.seed = seed
        self.max_buffer_rows = max_buffer_rows
        self.dropped = 0
        """Entries dropped because the buffer was full (not those left out by sampling)."""
        self.last_error: str | None = None
        """The last flush failure, if any; its entries are kept and retried."""
        self._salt = None if seed is None else f"{seed}:".encode()
        self._rng = random.Random()
        self._buffer: list[dict[str, Any] | Block] = []
        self._buffered = 0  # rows in _buffer
        self._lock = threading.Lock()  # guards _buffer, _thread, _closed
        self._flush_lock = threading.Lock()  # one writer of segments at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the request path ------------------------------------------------------------------

    def record(self, entries: list[dict[str, Any]]) -> None:
        """Add ``entries`` to the buffer (those that the sample keeps) and return at once."""
        now = time.time()
        kept = []
        for e in entries:
            _check_entry(e)
            if self.sample_rate < 1.0 and not self._keep(e["request_id"]):
                continue
            if e.get("ts") is None:
                e = {**e, "ts": now}
            kept.append(e)
        if not kept:
            return
        with self._lock:
            self._open()
            room = self.max_buffer_rows - self._buffered
            if room < len(kept):
                self.dropped += len(kept) - max(room, 0)
                kept = kept[: max(room, 0)]
            self._buffer.extend(kept)
            self._buffered += len(kept)
            full = self._buffered >= self.segment_rows
        if full:
            self._wake.set()

    def record_block(self, block: Block) -> None:
        """Add a batch's predictions in columns (the server's fast path; see
        :mod:`keel.serve._predblock`), sampled by request id like :meth:`record`."""
        if self.sample_rate < 1.0:
            kept = block.keep([self._keep(r) for r in block.request_ids])
            if kept is None:
                return
            block = kept
        with self._lock:
            self._open()
            if self._buffered + block.n_rows > self.max_buffer_rows:
                self.dropped += block.n_rows
                return
            self._buffer.append(block)
            self._buffered += block.n_rows
            full = self._buffered >= self.segment_rows
        if full:
            self._wake.set()

    def _open(self) -> None:  # under self._lock
        if self._closed:
            raise Conflict("this prediction log is closed; open a new PredictionLog")
        if self._thread is None:
            self._start()

    def _keep(self, request_id: str) -> bool:
        if self._salt is None:
            return self._rng.random() < self.sample_rate
        h = hashlib.blake2b(self._salt + request_id.encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2**64 < self.sample_rate

    # -- flushing ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything recorded so far as committed segments; the rows written."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                rows, self._buffered = self._buffered, 0
            if not batch:
                return 0
            try:
                segments = _encode_segments(batch, self.segment_rows)
            except Exception:  # entries that cannot be encoded would fail every retry
                with self._lock:
                    self.dropped += rows
                raise
            try:
                _commit_segments(self.store, segments)
            except BaseException:
                with self._lock:  # keep the entries for the next try, oldest first
                    self._buffer[:0] = batch
                    self._buffered += rows
                raise
            return rows

    def close(self) -> None:
        """Flush what is buffered and stop the flusher; :meth:`record` refuses afterwards."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        _open_logs.discard(self)
        self.flush()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keel-predlog", daemon=True)
        self._thread.start()
        _open_logs.add(self)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return  # close() flushes
            try:
                self.flush()
                self.last_error = None
            except Exception as exc:  # the server must keep serving; retry on the next tick
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.error("prediction log flush failed, will retry: %s", self.last_error)
                self._stop.wait(self.flush_seconds)  # back off, even while the buffer is full

    def __repr__(self) -> str:
        return (
            f"PredictionLog(segment_rows={self.segment_rows}, flush_seconds="
            f"{self.flush_seconds}, sample_rate={self.sample_rate}, buffered={self._buffered})"
        )


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_entry(e: Any) -> None:
    if not isinstance(e, dict):
        raise InvalidInput(f"prediction log entry: expected a dict, got {type(e).__name__}")
    for key in ("request_id", "model"):
        value = e.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidInput(
                f"prediction log entry {key!r}: expected a non-empty string, got {value!r}"
            )
    version = e.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**31:
        raise InvalidInput(
            f"prediction log entry 'version' of request {e['request_id']!r}: expected an "
            f"integer ≥ 0, got {version!r}"
        )
    ts = e.get("ts")
    if ts is not None and not _is_number(ts):
        raise InvalidInput(
            f"prediction log entry 'ts' of request {e['request_id']!r}: expected epoch "
            f"seconds (a number), got {ts!r}"
        )


@atexit.register
def _close_open_logs() -> None:
    for plog in list(_open_logs):
        try:
            plog.close()
        except Exception as exc:  # pragma: no cover - best effort at exit
            _log.error("prediction log not flushed at exit: %s", exc)


# -- segments ----------------------------------------------------------------------------


def _encode_segments(
    entries: list[dict[str, Any] | Block], segment_rows: int
) -> list[tuple[dict[str, Any], bytes]]:
    """``entries`` (entry dicts and blocks) as segments, one model version each and at most
    ``segment_rows`` rows: (the segment's ``prediction_segments`` row less its sha, its
    Parquet bytes)."""
    groups: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for e in entries:
        key = (e.model, e.version) if isinstance(e, Block) else (e["model"], e["version"])
        groups[key].append(e)
    segments = []
    for (model, version), group in groups.items():
        # consecutive entries of one kind (dicts, blocks) become one table, in order
        parts = [
            _block_run(list(run)) if is_block else _to_table(list(run))
            for is_block, run in groupby(group, key=lambda e: isinstance(e, Block))
        ]
        whole = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        for start in range(0, whole.num_rows, segment_rows):
            table = whole.slice(start, segment_rows)
            ts = table["ts"]
            row = dict(
                model=model,
                version=version,
                n_rows=table.num_rows,
                ts_min=pc.min(ts).as_py(),
                ts_max=pc.max(ts).as_py(),
            )
            segments.append((row, _parquet_bytes(table)))
    return segments


def _block_run(blocks: list[Block]) -> pa.Table:
    return block_table(Block.concat(blocks), SEGMENT_SCHEMA)


def _commit_segments(store: Store, segments: list[tuple[dict[str, Any], bytes]]) -> None:
    """Blobs first, then every segment's row in one transaction: a segment is visible only
    once whole."""
    now = time.time()
    rows = [
        {**row, "sha": store.blobs.put_bytes(data), "created_at": now} for row, data in segments
    ]
    with store.write() as conn:
        conn.execute(insert(_t), rows)
        for r in rows:
            store.add_edge(
                conn,
                ("predictions", r["sha"]),
                ("model", f"{r['model']}/{r['version']}"),
                "predicted_by",
            )


def _to_table(entries: list[dict[str, Any]]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in SEGMENT_SCHEMA}
    for e in entries:
        outputs = e.get("outputs")
        label, score, prediction = _conveniences(outputs)
        cols["request_id"].append(e["request_id"])
        cols["ts"].append(float(e["ts"]))
        cols["model"].append(e["model"])
        cols["version"].append(e["version"])
        cols["latency_ms"].append(_float(e.get("latency_ms")))
        cols["inputs"].append(_json(e.get("inputs")))
        cols["outputs"].append(_json(outputs))
        cols["label"].append(label)
        cols["score"].append(score)
        cols["prediction"].append(prediction)
    return pa.table(cols, schema=SEGMENT_SCHEMA)


def _conveniences(outputs: Any) -> tuple[str | None, float | None, float | None]:
    if not isinstance(outputs, dict):
        return None, None, None
    label = outputs.get("label")
    probs = outputs.get("probabilities")
    values = list(probs.values()) if isinstance(probs, dict) else probs
    score = None
    if isinstance(values, list | tuple) and values:
        numbers = [x for x in map(_float, values) if x is not None]
        if len(numbers) == len(values):
            score = numbers[1] if len(numbers) == 2 else max(numbers)
    return (None if label is None else str(label)), score, _float(outputs.get("prediction"))


def _float(x: Any) -> float | None:
    try:
        return None if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None


def _json(x: Any) -> str | None:
    if x is None:
        return None
    try:
        return orjson.dumps(x, default=_json_default, option=_ORJSON).decode()
    except (TypeError, ValueError):  # cycles, huge ints: keep what it was, as text
        return orjson.dumps(repr(x)).decode()


# NaN and infinities become null (JSON has neither); NumPy values are written as numbers.
_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):  # numpy scalars and arrays orjson does not take natively
        return x.tolist()
    return str(x)


#: Row-group statistics for the columns a reader may filter on; the JSON columns' min/max
#: would say nothing and cost the writer a comparison per row.
_STATISTICS = [f.name for f in SEGMENT_SCHEMA if f.name not in ("inputs", "outputs")]


def _parquet_bytes(table: pa.Table) -> bytes:
    # Plain encoding: a dictionary pays off for none of these columns in a segment (ids and
    # JSON texts are nearly all distinct; zstd takes care of the repeated ones), and trying
    # one costs the writer a hash per value before it gives up.
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        store_schema=True,
        use_dictionary=False,
        write_statistics=_STATISTICS,
    )
    return buf.getvalue()


# -- reading -----------------------------------------------------------------------------


def _epoch(x: float | datetime | None, name: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, datetime):
        return x.timestamp()
    if _is_number(x):
        return float(x)
    raise InvalidInput(f"{name}: expected epoch seconds or a datetime, got {x!r}")


def _segments(
    store: Store,
    model: str | None,
    *,
    version: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Any]:
    """The ``prediction_segments`` rows that may hold predictions of ``model`` (all models
    when None) in ``[since, until)``, oldest first."""
    q = select(_t).order_by(_t.c.id)
    if model is not None:
        q = q.where(_t.c.model == model)
    if version is not None:
        q = q.where(_t.c.version == version)
    if since is not None:
        q = q.where(_t.c.ts_max >= since)
    if until is not None:
        q = q.where(_t.c.ts_min < until)
    with store.read() as conn:
        return list(conn.execute(q).all())


def _load_segment(store: Store, sha: str, columns: list[str] | None = None) -> pa.Table:
    """One segment's rows (its bytes are checked against their sha256)."""
    table = pq.read_table(io.BytesIO(store.blobs.get_bytes(sha)), columns=columns)
    return table.replace_schema_metadata(None)


def read_predictions(
    store: Store,
    model: str,
    *,
    version: int | None = None,
    since: float | datetime | None = None,
    until: float | datetime | None = None,
    limit: int | None = None,
) -> pa.Table:
    """The logged predictions of ``model`` (one ``version`` if given) with ``since <= ts <
    until``, in time order (ties in the order they were committed), as one table of
    :data:`SEGMENT_SCHEMA`. With ``limit``, the newest ``limit`` of them, still in time
    order; only the segments that can hold them are read."""
    lo, hi = _epoch(since, "since"), _epoch(until, "until")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise InvalidInput(f"limit: expected an integer ≥ 0, got {limit!r}")
    segments = _segments(store, model, version=version, since=lo, until=hi)
    if limit is not None:  # newest first, and stop once no older segment can make the cut
        segments.sort(key=lambda s: (s.ts_max, s.id), reverse=True)
    parts: list[tuple[int, pa.Table]] = []
    newest: list[float] = []
    for seg in segments:
        if (
            limit is not None
            and len(newest) >= limit
            and (limit == 0 or seg.ts_max < newest[-limit])
        ):
            break
        t = _load_segment(store, seg.sha)
        if lo is not None or hi is not None:
            t = t.filter(_window(t["ts"], lo, hi))
        parts.append((seg.id, t))
        if limit is not None:
            newest = sorted(newest + t["ts"].to_pylist())[-limit:] if limit else []
    parts.sort(key=lambda p: p[0])
    table = pa.concat_tables([t for _, t in parts]) if parts else _EMPTY.empty_table()
    table = table.take(pc.sort_indices(table["ts"]))  # a stable sort
    if limit is not None and table.num_rows > limit:
        table = table.slice(table.num_rows - limit)
    return table


_EMPTY = SEGMENT_SCHEMA.remove_metadata()


def _window(ts: pa.ChunkedArray, lo: float | None, hi: float | None) -> Any:
    mask = None
    if lo is not None:
        mask = pc.greater_equal(ts, lo)
    if hi is not None:
        upper = pc.less(ts, hi)
        mask = upper if mask is None else pc.and_(mask, upper)
    return mask
