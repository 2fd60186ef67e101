"""Blob garbage collection (issue 16 point 4, the store's half; the CLI is keel gc): blobs no
record names, older than the grace period, found by a dry run and deleted only when asked, on
the local folder and on S3 (SeaweedFS)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.errors import InvalidInput
from keel.store import FileBlobStore, Store, _s3, collect_garbage
from tests.store.test_s3 import s3_store

#: S3 times are whole seconds, and the box may be loaded: a blob just written must stay
#: younger than this through one gc, and one written GRACE_S + 1.5 s ago older.
GRACE_S = 3.0


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    if request.param == "s3":
        s.blobs = s3_store(request.getfixturevalue("seaweed"))  # type: ignore[assignment]
    yield s
    s.close()


def _named(store: Store, tmp_path: Path) -> dict[str, bytes]:
    """Blobs that records name: an ingested data set (and its profile), and a run artifact
    that is a manifest naming a component only inside its JSON."""
    from keel.data import ingest
    from keel.train import start_run

    rows = "".join(f"{20 + i},{['Oslo', 'Rome'][i % 2]},{i % 2}\n" for i in range(40))
    (tmp_path / "people.csv").write_text("age,city,label\n" + rows)
    ds = ingest(store, tmp_path / "people.csv", name="people").dataset
    component = store.blobs.put_bytes(b"booster bytes")
    manifest = json.dumps({"components": {"booster": {"sha": component}}}).encode()
    manifest_sha = store.blobs.put_bytes(manifest)
    run = start_run(store, "gc")
    run.link_artifact("model", manifest_sha, len(manifest))
    shas = [ds.sha, ds.profile_sha, component, manifest_sha]
    return {sha: store.blobs.get_bytes(sha) for sha in shas if sha}


def test_gc_dry_run_then_delete(store: Store, tmp_path: Path) -> None:
    named = _named(store, tmp_path)
    assert len(named) == 4
    old = store.blobs.put_bytes(b"left by an interrupted ingest")
    time.sleep(GRACE_S + 1.5)
    young = store.blobs.put_bytes(b"being written right now")

    dry = collect_garbage(store, grace_s=GRACE_S)
    assert [b.sha for b in dry.garbage] == [old]
    assert dry.bytes == len(b"left by an interrupted ingest")
    assert (dry.young, dry.kept, dry.deleted) == (1, 4, False)
    assert store.blobs.exists(old), "a dry run deletes nothing"

    done = collect_garbage(store, grace_s=GRACE_S, delete=True)
    assert [b.sha for b in done.garbage] == [old] and done.deleted
    assert not store.blobs.exists(old)
    assert store.blobs.exists(young)
    for sha, data in named.items():
        assert store.blobs.get_bytes(sha) == data
    again = collect_garbage(store, grace_s=GRACE_S, delete=True)
    assert again.garbage == [] and again.kept == 4


def test_gc_default_grace_keeps_recent_blobs(store: Store) -> None:
    store.blobs.put_bytes(b"an orphan of a minute ago")
    report = collect_garbage(store, delete=True)
    assert report.garbage == [] and report.young == 1


def test_bad_grace_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="grace period: expected seconds >= 0, got -1"):
        collect_garbage(store, grace_s=-1)


def test_put_of_stored_bytes_refreshes_an_old_blob(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer about to name a blob stored long ago puts its bytes first: that makes the
    blob young again, so gc's grace period spares it."""
    blobs: Any = store.blobs
    sha = blobs.put_bytes(b"stored long ago")
    if isinstance(blobs, FileBlobStore):
        past = time.time() - 3 * 24 * 3600
        os.utime(blobs.path(sha), (past, past))
    else:
        monkeypatch.setattr(_s3, "TOUCH_AFTER_S", 0.5)
        time.sleep(GRACE_S + 1.5)
    before = next(b.modified for b in blobs.iter_blobs() if b.sha == sha)
    assert collect_garbage(store, grace_s=GRACE_S).garbage != []
    blobs.put_bytes(b"stored long ago")
    after = next(b.modified for b in blobs.iter_blobs() if b.sha == sha)
    assert after > before
    assert collect_garbage(store, grace_s=GRACE_S, delete=True).garbage == []
    assert blobs.get_bytes(sha) == b"stored long ago"
