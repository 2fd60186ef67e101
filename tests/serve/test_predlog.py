"""The prediction log: every recorded entry lands exactly once, in segments of bounded size,
sampled deterministically, without slowing the request path, and whole or not at all when the
process is killed."""

from __future__ import annotations

import io
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from keel.errors import Conflict, InvalidInput, StoreError
from keel.serve._predlog import SEGMENT_SCHEMA, PredictionLog, read_predictions
from keel.store import Store, _tables, lineage

T = _tables.prediction_segments


def entry(rid: str, *, model: str = "m", version: int = 1, ts: float | None = None) -> dict:
    e: dict[str, Any] = {
        "request_id": rid,
        "model": model,
        "version": version,
        "inputs": {"age": 39, "job": "clerk"},
        "outputs": {"label": ">50K", "probabilities": {"<=50K": 0.25, ">50K": 0.75}},
        "latency_ms": 1.5,
    }
    if ts is not None:
        e["ts"] = ts
    return e


def segments(store: Store) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(T).order_by(T.c.id)).all())


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- what a segment holds --------------------------------------------------------------------


def test_entries_round_trip_with_convenience_columns(any_store: Store) -> None:
    with PredictionLog(any_store) as plog:
        plog.record(
            [
                entry("a", ts=10.0),
                {
                    "request_id": "b",
                    "model": "m",
                    "version": 1,
                    "ts": 11.0,
                    "inputs": {"x": [1, 2]},
                    "outputs": {"label": 2, "probabilities": [0.1, 0.2, 0.7]},
                },
                {
                    "request_id": "c",
                    "model": "m",
                    "version": 1,
                    "ts": 12.0,
                    "outputs": {"prediction": 3.25},
                },
            ]
        )
    table = read_predictions(any_store, "m")
    assert table.schema.names == SEGMENT_SCHEMA.names
    assert table.schema.field("version").type == pa.int32()
    assert table.schema.field("latency_ms").type == pa.float32()
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["a", "b", "c"]
    assert json.loads(rows[0]["inputs"]) == {"age": 39, "job": "clerk"}
    assert json.loads(rows[0]["outputs"])["probabilities"] == {"<=50K": 0.25, ">50K": 0.75}
    assert (rows[0]["label"], rows[0]["score"], rows[0]["prediction"]) == (">50K", 0.75, None)
    assert (rows[1]["label"], rows[1]["score"]) == ("2", 0.7)  # top class of three
    assert (rows[2]["label"], rows[2]["score"], rows[2]["prediction"]) == (None, None, 3.25)
    assert rows[0]["latency_ms"] == 1.5 and rows[2]["latency_ms"] is None
    seg = segments(any_store)
    assert [(s.model, s.version, s.n_rows, s.ts_min, s.ts_max) for s in seg] == [
        ("m", 1, 3, 10.0, 12.0)
    ]
    parents = lineage(any_store, "predictions", seg[0].sha).parents
    assert [(p.kind, p.id, p.role) for p in parents] == [("model", "m/1", "predicted_by")]


def test_ts_defaults_to_when_recorded(store: Store) -> None:
    before = time.time()
    with PredictionLog(store) as plog:
        plog.record([entry("a")])
    (ts,) = read_predictions(store, "m")["ts"].to_pylist()
    assert before <= ts <= time.time()


def test_each_model_version_gets_its_own_segments(store: Store) -> None:
    with PredictionLog(store) as plog:
        plog.record([entry("a", version=1), entry("b", version=2), entry("c", model="n")])
    got = sorted((s.model, s.version, s.n_rows) for s in segments(store))
    assert got == [("m", 1, 1), ("m", 2, 1), ("n", 1, 1)]
    assert read_predictions(store, "m")["request_id"].to_pylist() == ["a", "b"]
    assert read_predictions(store, "m", version=2)["request_id"].to_pylist() == ["b"]
    assert read_predictions(store, "nobody").num_rows == 0


def test_empty_read_has_the_segment_columns(store: Store) -> None:
    table = read_predictions(store, "m")
    assert table.num_rows == 0 and table.schema.names == SEGMENT_SCHEMA.names


# -- flushing ----------------------------------------------------------------------------


def test_four_threads_every_entry_exactly_once(any_store: Store) -> None:
    per_thread, start = 2500, threading.Barrier(4)
    plog = PredictionLog(any_store, segment_rows=400, flush_seconds=0.01)

    def work(t: int) -> None:
        rng = random.Random(t)
        start.wait()
        i = 0
        while i < per_thread:
            n = min(rng.randint(1, 7), per_thread - i)
            plog.record([entry(f"t{t}-{i + k}") for k in range(n)])
            i += n

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    plog.close()
    ids = read_predictions(any_store, "m")["request_id"].to_pylist()
    expected = {f"t{t}-{i}" for t in range(4) for i in range(per_thread)}
    assert len(ids) == len(expected) and set(ids) == expected
    seg = segments(any_store)
    assert len(seg) > 1 and all(s.n_rows <= 400 for s in seg)
    assert sum(s.n_rows for s in seg) == len(expected)


def test_segments_roll_at_segment_rows(store: Store) -> None:
    plog = PredictionLog(store, segment_rows=100, flush_seconds=60)
    plog.record([entry(f"a{i}") for i in range(100)])
    wait_for(lambda: len(segments(store)) == 1)  # a full buffer flushes without the timer
    plog.record([entry(f"b{i}") for i in range(150)])
    plog.close()
    assert [s.n_rows for s in segments(store)] == [100, 100, 50]
    assert read_predictions(store, "m").num_rows == 250


def test_timer_flushes_a_small_buffer(store: Store) -> None:
    with PredictionLog(store, flush_seconds=0.05) as plog:
        plog.record([entry("a"), entry("b")])
        wait_for(lambda: len(segments(store)) == 1)
        assert segments(store)[0].n_rows == 2


def test_a_failed_flush_keeps_its_entries_for_the_next(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    plog = PredictionLog(store, flush_seconds=60)
    plog.record([entry("a"), entry("b")])
    real_write = store.write

    def failing_write():  # type: ignore[no-untyped-def]
        raise StoreError("store write failed: disk I/O error")

    monkeypatch.setattr(store, "write", failing_write)
    with pytest.raises(StoreError):
        plog.flush()
    assert segments(store) == []
    plog.record([entry("c")])
    monkeypatch.setattr(store, "write", real_write)
    plog.close()
    assert read_predictions(store, "m")["request_id"].to_pylist() == ["a", "b", "c"]


def test_record_stays_fast_while_a_flush_is_slow(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    real_put = store.blobs.put_bytes

    def slow_put(data: bytes) -> str:
        started.set()
        release.wait(20)
        try:
            return real_put(data)
        finally:
            finished.set()

    monkeypatch.setattr(store.blobs, "put_bytes", slow_put)
    plog = PredictionLog(store, segment_rows=1000, flush_seconds=60)
    plog.record([entry(f"a{i}") for i in range(1000)])  # a full segment: the flusher writes
    assert started.wait(10)
    t0 = time.perf_counter()
    for i in range(10_000):
        plog.record([entry(f"b{i}")])
    elapsed = time.perf_counter() - t0
    assert not finished.is_set(), "the flush was meant to be still writing"
    release.set()
    plog.close()
    assert elapsed < 1.0, f"10k record() calls took {elapsed:.2f}s during a flush"
    assert read_predictions(store, "m").num_rows == 11_000


def test_close_refuses_later_records_and_is_idempotent(store: Store) -> None:
    plog = PredictionLog(store)
    plog.record([entry("a")])
    plog.close()
    plog.close()
    with pytest.raises(Conflict, match="closed"):
        plog.record([entry("b")])
    assert read_predictions(store, "m").num_rows == 1


def test_a_full_buffer_drops_and_counts(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_put = store.blobs.put_bytes
    monkeypatch.setattr(store.blobs, "put_bytes", lambda d: (release.wait(20), real_put(d))[1])
    plog = PredictionLog(store, segment_rows=10, flush_seconds=60, max_buffer_rows=50)
    plog.record([entry(f"a{i}") for i in range(10)])
    wait_for(lambda: not plog._buffer)  # the flusher took them and is stuck writing
    plog.record([entry(f"b{i}") for i in range(80)])
    assert plog.dropped == 30
    release.set()
    plog.close()
    assert read_predictions(store, "m").num_rows == 60


# -- sampling --------------------------------------------------------------------------------


def _kept(store: Store, rate: float, seed: int | None, model: str) -> set[str]:
    with PredictionLog(store, sample_rate=rate, seed=seed) as plog:
        plog.record([entry(f"r{i}", model=model) for i in range(4000)])
    return set(read_predictions(store, model)["request_id"].to_pylist())


def test_sampling_keeps_a_quarter_deterministically(store: Store) -> None:
    first = _kept(store, 0.25, 7, "m1")
    assert 850 <= len(first) <= 1150
    assert _kept(store, 0.25, 7, "m2") == first  # same seed, same requests
    other = _kept(store, 0.25, 8, "m3")
    assert other != first and 850 <= len(other) <= 1150
    assert _kept(store, 0.0, 7, "m4") == set()
    assert len(_kept(store, 1.0, 7, "m5")) == 4000
    assert 700 <= len(_kept(store, 0.25, None, "m6")) <= 1300


# -- reading by time ---------------------------------------------------------------------


def test_time_window_reads(any_store: Store) -> None:
    with PredictionLog(any_store) as plog:
        for base in (1000, 1100, 1200):
            plog.record([entry(f"r{base + i}", ts=base + i) for i in range(100)])
            plog.flush()
        plog.record([entry("v2", version=2, ts=1150.5)])
    assert len(segments(any_store)) == 4

    def ts(**kw: Any) -> list[float]:
        return read_predictions(any_store, "m", **kw)["ts"].to_pylist()

    assert ts(since=1050, until=1150) == list(range(1050, 1150))
    assert ts(since=1290) == list(range(1290, 1300))
    assert ts(until=1002) == [1000, 1001]
    assert ts(since=1150, until=1151) == [1150, 1150.5]
    assert ts(version=2) == [1150.5]
    assert ts(limit=3) == [1297, 1298, 1299]
    assert ts(until=1101, limit=2) == [1099, 1100]
    assert ts(limit=0) == []
    when = datetime.fromtimestamp(1295, tz=UTC)
    assert ts(since=when) == list(range(1295, 1300))
    with pytest.raises(InvalidInput, match="since"):
        read_predictions(any_store, "m", since="yesterday")  # type: ignore[arg-type]


def test_limit_reads_older_segments_that_hold_newer_rows(store: Store) -> None:
    with PredictionLog(store) as plog:
        plog.record([entry("a", ts=1), entry("b", ts=2), entry("c", ts=1000)])
        plog.flush()
        plog.record([entry("d", ts=500), entry("e", ts=501)])
    got = read_predictions(store, "m", limit=3)["request_id"].to_pylist()
    assert got == ["d", "e", "c"]


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"model": "m", "version": 1}, "request_id"),
        ({"request_id": "", "model": "m", "version": 1}, "request_id"),
        ({"request_id": "a", "version": 1}, "model"),
        ({"request_id": "a", "model": "m", "version": "1"}, "version"),
        ({"request_id": "a", "model": "m", "version": 1, "ts": "now"}, "ts"),
        ("a", "dict"),
    ],
)
def test_bad_entries_are_refused(store: Store, bad: Any, match: str) -> None:
    with PredictionLog(store) as plog:
        with pytest.raises(InvalidInput, match=match):
            plog.record([bad])
    assert segments(store) == []


@pytest.mark.parametrize(
    "kw", [{"segment_rows": 0}, {"flush_seconds": 0}, {"sample_rate": 1.5}, {"sample_rate": -1}]
)
def test_bad_settings_are_refused(store: Store, kw: dict) -> None:
    with pytest.raises(InvalidInput, match=next(iter(kw))):
        PredictionLog(store, **kw)


# -- kill -9 ---------------------------------------------------------------------------------

CHILD = r"""
import sys
from keel.store import Store
from keel.serve._predlog import PredictionLog

url, blobs, prefix = sys.argv[1:4]
store = Store.open(url, blobs)
plog = PredictionLog(store, segment_rows=40, flush_seconds=0.005)
print("ready", flush=True)
i = 0
while True:
    plog.record([
        {"request_id": f"{prefix}-{i + k}", "model": "crash", "version": 1,
         "inputs": {"i": i + k}, "outputs": {"label": "1", "probabilities": [0.4, 0.6]}}
        for k in range(10)
    ])
    i += 10
    if i % 50 == 0:
        plog.flush()
        print(i, flush=True)  # every entry before i is committed
"""


@pytest.mark.slow
def test_kill_minus_nine_keeps_every_flushed_segment_whole(any_store: Store) -> None:
    rng = random.Random(20240611)
    for attempt in range(4):
        prefix = f"k{attempt}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-W",
                "error",
                "-c",
                CHILD,
                any_store.url,
                str(any_store.blobs.root),
                prefix,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
            assert proc.stdout.readline().strip().isdigit(), proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL and err == ""
        acked = max(int(x) for x in ["50", *out.split()])

        if any_store.dialect == "sqlite":
            db = any_store.engine.url.database
            conn = sqlite3.connect(db)
            try:
                assert [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]
            finally:
                conn.close()
        for seg in segments(any_store):  # every committed segment is readable and whole
            blob = pq.read_table(io.BytesIO(any_store.blobs.get_bytes(seg.sha)))
            assert blob.num_rows == seg.n_rows
            assert blob["model"].unique().to_pylist() == [seg.model]
            assert (pc.min(blob["ts"]).as_py(), pc.max(blob["ts"]).as_py()) == (
                seg.ts_min,
                seg.ts_max,
            )
        table = read_predictions(any_store, "crash")
        ids = [r for r in table["request_id"].to_pylist() if r.startswith(f"{prefix}-")]
        got = sorted(int(r.split("-")[1]) for r in ids)
        assert len(got) == len(set(got)), "an entry was logged twice"
        # what landed is what was recorded first: every acknowledged entry, and whatever
        # later flushes committed before the kill, never a gap
        assert got == list(range(len(got))) and len(got) >= acked, (attempt, acked, len(got))
    assert (
        sum(s.n_rows for s in segments(any_store)) == read_predictions(any_store, "crash").num_rows
    )
