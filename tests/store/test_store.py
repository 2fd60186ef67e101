"""The store on both back-ends: opening, all-or-nothing writes, events."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from keel.errors import Conflict, InvalidInput, StoreError
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


def row_counts(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in _tables.metadata.tables.items()
        }


# -- opening ----------------------------------------------------------------------------


def test_constructor_does_no_io(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path}/sub/store.db", tmp_path / "blobs")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "http://example.com"])
def test_unsupported_url_is_invalid_input(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="sqlite|postgresql"):
        Store.open(url, tmp_path / "blobs")


def test_unreachable_server_is_store_error_without_password(tmp_path: Path) -> None:
    url = "postgresql://keel:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError, match="cannot open the store") as info:
        Store.open(url, tmp_path / "blobs")
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1/nowhere" in str(info.value)
    assert "s3cret" not in repr(Store(url, tmp_path / "blobs"))


def test_close_is_idempotent_and_reconnects(store: Store) -> None:
    store.close()
    store.close()
    assert store.schema_revision() is not None  # the engine property reconnects


# -- all or nothing ---------------------------------------------------------------------


def test_write_commits(any_store: Store) -> None:
    with any_store.write() as conn:
        add_run(conn, "r1")
        any_store.add_event(conn, "run.started", "r1", {})
    assert row_counts(any_store)["runs"] == 1
    assert row_counts(any_store)["events"] == 1


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()])
def test_write_that_raises_leaves_nothing(any_store: Store, error: BaseException) -> None:
    before = row_counts(any_store)
    with pytest.raises(type(error)):
        with any_store.write() as conn:
            add_run(conn, "r1")
            conn.execute(
                _tables.metrics.insert().values(run_id="r1", key="k", value=1.0, step=0, ts=0.0)
            )
            any_store.add_event(conn, "run.started", "r1", {"a": 1})
            any_store.add_edge(conn, ("run", "r1"), ("dataset", "d:1"), "train")
            raise error
    assert row_counts(any_store) == before
    with any_store.write() as conn:  # the connection and lock were released
        add_run(conn, "r1")
    assert row_counts(any_store)["runs"] == 1


def test_failing_statement_undoes_the_earlier_ones(any_store: Store) -> None:
    with any_store.write() as conn:
        add_run(conn, "r1")
    with pytest.raises(Conflict):
        with any_store.write() as conn:
            add_run(conn, "r2")
            add_run(conn, "r1")  # duplicate primary key
    with any_store.read() as conn:
        assert conn.execute(select(_tables.runs.c.id)).scalars().all() == ["r1"]


def test_foreign_keys_are_enforced(any_store: Store) -> None:
    with pytest.raises(Conflict):
        with any_store.write() as conn:
            conn.execute(
                _tables.metrics.insert().values(
                    run_id="no-such-run", key="k", value=1.0, step=0, ts=0.0
                )
            )
    assert row_counts(any_store)["metrics"] == 0


# -- events -----------------------------------------------------------------------------


def test_events_round_trip(any_store: Store) -> None:
    t0 = time.time()
    with any_store.write() as conn:
        any_store.add_event(conn, "alias.moved", "churn@production", {"from": 1, "to": 2})
        any_store.add_event(conn, "run.started", "r1", {"note": "ünïcode ✓", "tags": [1, None]})
        any_store.add_event(conn, "alias.moved", "churn@candidate", {})
    events = any_store.events()
    assert [(e["kind"], e["subject"], e["payload"]) for e in events] == [
        ("alias.moved", "churn@production", {"from": 1, "to": 2}),
        ("run.started", "r1", {"note": "ünïcode ✓", "tags": [1, None]}),
        ("alias.moved", "churn@candidate", {}),
    ]
    assert all(t0 - 1 <= e["at"] <= time.time() + 1 for e in events)
    assert [e["subject"] for e in any_store.events("alias.moved")] == [
        "churn@production",
        "churn@candidate",
    ]
    assert any_store.events("no.such.kind") == []


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


def test_event_payload_round_trip_property(store: Store) -> None:
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(payload=st.dictionaries(st.text(), _json, max_size=5))
    def round_trip(payload: dict) -> None:
        with store.write() as conn:
            store.add_event(conn, "prop", "s", payload)
        assert store.events("prop")[-1]["payload"] == payload

    round_trip()


def test_append_is_one_transaction(any_store) -> None:
    """The tracking hot path: all rows of a batch land, or none of them."""
    import time as _time

    from sqlalchemy import func, select

    from keel.store import _tables

    with any_store.write() as conn:
        conn.execute(
            _tables.runs.insert().values(
                id="r1",
                experiment="e",
                status="running",
                created_at=_time.time(),
                env_json="{}",
                tags_json="{}",
                created_by="t",
            )
        )
    row = {"run_id": "r1", "key": "m", "value": 1.0, "step": 0, "ts": 0.0}
    any_store.append(_tables.metrics, [row, {**row, "step": 1}])
    bad = [{**row, "step": 2}, {**row, "step": 3, "run_id": "no-such-run"}]
    with pytest.raises(Conflict, match="store write refused"):
        any_store.append(_tables.metrics, bad)
    with any_store.read() as conn:
        steps = conn.execute(select(_tables.metrics.c.step).order_by("step")).scalars().all()
        assert steps == [0, 1]
        assert conn.execute(select(func.count()).select_from(_tables.metrics)).scalar() == 2
