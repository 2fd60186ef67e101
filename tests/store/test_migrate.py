"""keel store migrate's core (issue 16 point 3): a local project (SQLite + folder) moved to a
team store (PostgreSQL + S3 on SeaweedFS): every blob and record, hashes checked, resumable,
and refused, naming them, when the destination holds conflicting records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from keel.errors import Conflict
from keel.store import Store, _tables, migrate_store
from tests.store.conftest import Seaweed
from tests.store.test_s3 import s3_store

pytestmark = pytest.mark.postgres


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Store]:
    """A small project's store: two data set versions, a run with params, metrics and an
    artifact, events and lineage edges."""
    from keel.data import ingest
    from keel.train import start_run

    store = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    for n in (30, 40):
        rows = "".join(f"{20 + i},{['Oslo', 'Rome'][i % 2]},{i % 2}\n" for i in range(n))
        (tmp_path / "people.csv").write_text("age,city,label\n" + rows)
        ingest(store, tmp_path / "people.csv", name="people")
    run = start_run(store, "migrate", seed=3)
    run.log_params({"lr": 0.1})
    run.log_metrics({"auc": 0.9})
    run.log_metrics({"auc": 0.92})
    run.log_artifact("notes", b"what we tried")
    yield store
    store.close()


@pytest.fixture
def team(pg_url: str, seaweed: Seaweed) -> Iterator[Store]:
    store = Store.open(pg_url, "/nonexistent")
    store.blobs = s3_store(seaweed)  # type: ignore[assignment]
    yield store
    store.close()


def _counts(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in _tables.metadata.sorted_tables
        }


def test_migrate_copies_everything_and_resumes(local: Store, team: Store) -> None:
    from keel.data import get_dataset, ingest, load_table

    report = migrate_store(local, team)
    counts = _counts(local)
    assert _counts(team) == counts
    assert report.copied == counts and sum(counts.values()) > 10
    assert report.blobs.copied == len(list(local.blobs.iter_blobs()))
    assert load_table(team, "people").equals(load_table(local, "people"))
    assert get_dataset(team, "people/1").sha == get_dataset(local, "people/1").sha

    again = migrate_store(local, team)  # what is there is not copied twice
    assert sum(again.copied.values()) == 0 and again.already_there == counts
    assert again.blobs.copied == 0

    # the id sequences moved past the copied ids: new records in the team store land
    tmp = Path(str(local.url).removeprefix("sqlite:///")).parent
    (tmp / "more.csv").write_text("age,city,label\n" + "".join(f"{i},Oslo,1\n" for i in range(30)))
    assert ingest(team, tmp / "more.csv", name="people").dataset.version == 3


def test_interrupted_migration_is_resumed(local: Store, team: Store) -> None:
    seen: list[str] = []

    def stop_at_runs(table: str, rows: int) -> None:
        seen.append(table)
        if table == "runs":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_store(local, team, progress=stop_at_runs)
    assert _counts(team)["runs"] == 1 and _counts(team)["metrics"] == 0
    migrate_store(local, team)
    assert _counts(team) == _counts(local)


def test_conflicting_records_are_refused_by_name(local: Store, team: Store) -> None:
    migrate_store(local, team)
    with team.write() as conn:
        conn.execute(update(_tables.runs).values(experiment="someone-else"))
        conn.execute(
            update(_tables.datasets).where(_tables.datasets.c.version == 2).values(n_rows=1)
        )
    before = _counts(team)
    with pytest.raises(Conflict) as caught:
        migrate_store(local, team)
    text = str(caught.value)
    assert "2 record(s)" in text and "nothing was written" in text
    assert "runs(id=" in text and "datasets(id=" in text
    assert _counts(team) == before
