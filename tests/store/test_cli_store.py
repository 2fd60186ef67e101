"""``keel gc`` and ``keel store migrate`` through the real command (issue 16 points 3 and 4):
on the project folder and on S3 (SeaweedFS), and from SQLite + folder to PostgreSQL + S3."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from keel.cli import main
from keel.store import FileBlobStore, _tables
from tests.store.conftest import BUCKET, Seaweed, fresh_prefix
from tests.store.test_s3 import objects, s3_store

DAY = 24 * 3600


def keel(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def keel_json(capsys: pytest.CaptureFixture[str], *args: Any) -> Any:
    code, out, err = keel(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def make_project(capsys: pytest.CaptureFixture[str], root: Path, n: int = 40) -> Path:
    code, _, err = keel(capsys, "init", root)
    assert code == 0, err
    rows = "".join(f"{20 + i},{['Oslo', 'Rome'][i % 2]},{i % 2}\n" for i in range(n))
    (root / "people.csv").write_text("age,city,label\n" + rows)
    keel_json(capsys, "ingest", root / "people.csv", "--name", "people", "-C", root)
    return root


def blob_files(root: Path) -> dict[str, int]:
    """Every blob file under ``root`` by its sha256 (the ab/cdef... layout), with its size."""
    return {p.parent.name + p.name: p.stat().st_size for p in root.rglob("*") if p.is_file()}


def counts(url: str) -> dict[str, int]:
    from keel.store import Store

    store = Store.open(url, "/nonexistent")
    try:
        with store.read() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in _tables.metadata.sorted_tables
            }
    finally:
        store.close()


def rows_of(root: Path) -> int:
    """The data set 'people' read back whole (its blobs fetched, hashes checked)."""
    from keel.data import load_table
    from keel.project import open_project

    with open_project(root) as proj:
        return int(load_table(proj.store, "people").num_rows)


# -- keel gc ----------------------------------------------------------------------------


def test_gc_on_the_folder_dry_run_then_yes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_project(capsys, tmp_path / "proj")
    blobs_dir = root / ".keel" / "blobs"
    blobs = FileBlobStore(blobs_dir)
    named = set(blob_files(blobs_dir))
    old = [blobs.put_bytes(f"left by a crashed run {i}".encode() * (i + 1)) for i in range(2)]
    young = blobs.put_bytes(b"an upload a writer is about to name")
    for sha in old:
        past = time.time() - 2 * DAY
        os.utime(blobs.path(sha), (past, past))
    old_bytes = sum(blobs.path(sha).stat().st_size for sha in old)
    before = blob_files(blobs_dir)

    dry = keel_json(capsys, "gc", "-C", root)
    assert dry["deleted"] is False
    assert dry["shas"] == sorted(old) and dry["garbage_blobs"] == 2
    assert dry["garbage_bytes"] == old_bytes
    assert dry["young_unnamed_blobs"] == 1 and dry["kept_blobs"] == len(named)
    assert blob_files(blobs_dir) == before  # a dry run deletes nothing

    code, out, _ = keel(capsys, "gc", "-C", root)
    assert code == 0 and "would delete 2" in out and "--yes" in out
    assert blob_files(blobs_dir) == before

    done = keel_json(capsys, "gc", "--yes", "-C", root)
    assert done["deleted"] is True and done["shas"] == sorted(old)
    after = blob_files(blobs_dir)
    assert set(before) - set(after) == set(old)
    assert sum(before.values()) - sum(after.values()) == done["garbage_bytes"] == old_bytes
    assert young in after and named <= set(after)
    # the data set still reads back whole
    assert rows_of(root) == 40

    # a shorter grace period takes the young one too; nothing named ever goes
    code, out, _ = keel(capsys, "gc", "--yes", "--grace-hours", "0", "-C", root)
    assert code == 0 and "deleted 1 unnamed blob(s)" in out
    assert set(blob_files(blobs_dir)) == named


def test_gc_on_s3(
    tmp_path: Path,
    s3_env: Seaweed,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = fresh_prefix()
    monkeypatch.setenv("KEEL_BLOBS", f"s3://{BUCKET}/{prefix}")
    root = make_project(capsys, tmp_path / "proj")
    assert not (root / ".keel" / "blobs").exists() or not any((root / ".keel" / "blobs").iterdir())
    named = objects(s3_env, prefix)
    assert named  # the ingested data set went to S3
    orphan_bytes = b"bytes no record names" * 100
    orphan = s3_store(s3_env, prefix).put_bytes(orphan_bytes)

    spared = keel_json(capsys, "gc", "--yes", "-C", root)  # default grace: 24 h
    assert spared["garbage_blobs"] == 0 and spared["young_unnamed_blobs"] == 1
    assert len(objects(s3_env, prefix)) == len(named) + 1

    dry = keel_json(capsys, "gc", "--grace-hours", "0", "-C", root)
    assert dry["shas"] == [orphan] and dry["garbage_bytes"] == len(orphan_bytes)
    assert dry["deleted"] is False and len(objects(s3_env, prefix)) == len(named) + 1

    done = keel_json(capsys, "gc", "--grace-hours", "0", "--yes", "-C", root)
    assert done["deleted"] is True and done["garbage_bytes"] == len(orphan_bytes)
    assert objects(s3_env, prefix) == named
    assert rows_of(root) == 40


# -- keel store migrate -----------------------------------------------------------------


def listings(capsys: pytest.CaptureFixture, root: Path) -> dict[str, Any]:
    return {
        "datasets": keel_json(capsys, "datasets", "-C", root),
        "runs": keel_json(capsys, "runs", "-C", root),
        "models": keel_json(capsys, "models", "-C", root),
        "versions": keel_json(capsys, "models", "people-model", "-C", root),
    }


@pytest.mark.postgres
def test_migrate_sqlite_folder_to_postgres_s3(
    tmp_path: Path,
    pg_url: str,
    s3_env: Seaweed,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = make_project(capsys, tmp_path / "proj")
    keel_json(
        capsys,
        *("train", "people", "-t", "label", "-m", "logistic_regression", "--executor", "inline"),
        *("--register", "people-model", "-C", root),
    )
    local = listings(capsys, root)
    assert local["models"] and local["runs"] and local["versions"]
    local_blobs = blob_files(root / ".keel" / "blobs")
    prefix = fresh_prefix()
    to = ("--to-store", pg_url, "--to-blobs", f"s3://{BUCKET}/{prefix}")

    first = keel_json(capsys, "store", "migrate", *to, "-C", root)
    assert first["blobs"]["copied"] == len(local_blobs)
    assert first["blobs"]["bytes_copied"] == sum(local_blobs.values())
    assert first["records_copied"]["runs"] == 1 and first["records_copied"]["model_versions"] == 1
    assert len(objects(s3_env, prefix)) == len(local_blobs)
    assert counts(pg_url) == counts(f"sqlite:///{root}/.keel/store.db")

    # the same project folder pointed at the team store lists the same
    monkeypatch.setenv("KEEL_STORE", pg_url)
    monkeypatch.setenv("KEEL_BLOBS", f"s3://{BUCKET}/{prefix}")
    assert listings(capsys, root) == local
    code, _, err = keel(capsys, "lineage", "people-model/1", "-C", root)
    assert code == 0, err
    monkeypatch.delenv("KEEL_STORE")
    monkeypatch.delenv("KEEL_BLOBS")

    # run again: nothing to copy, everything already there
    again = keel_json(capsys, "store", "migrate", *to, "-C", root)
    assert sum(again["records_copied"].values()) == 0
    assert again["records_already_there"] == first["records_copied"]
    assert again["blobs"] == {
        "copied": 0,
        "already_there": len(local_blobs),
        "bytes_copied": 0,
    }

    code, out, _ = keel(capsys, "store", "migrate", *to, "-C", root)
    assert code == 0 and "0 record(s) copied" in out and "0 blob(s) copied" in out


@pytest.mark.postgres
def test_migrate_refuses_a_conflicting_team_store_and_writes_nothing(
    tmp_path: Path,
    pg_url: str,
    s3_env: Seaweed,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = make_project(capsys, tmp_path / "proj", n=40)
    # someone else's project already put a different 'people' version 1 in the team store
    monkeypatch.setenv("KEEL_STORE", pg_url)
    make_project(capsys, tmp_path / "other", n=25)
    monkeypatch.delenv("KEEL_STORE")
    before = counts(pg_url)
    prefix = fresh_prefix()

    code, out, err = keel(
        capsys, "store", "migrate", "--to-store", pg_url, "--to-blobs", f"s3://{BUCKET}/{prefix}",
        "-C", root,
    )  # fmt: skip
    assert code != 0 and out == ""
    assert "Traceback" not in err and "datasets(" in err and "nothing was written" in err
    assert len(err.strip().splitlines()) == 1
    assert counts(pg_url) == before
    assert objects(s3_env, prefix) == []


def test_migrate_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(capsys, tmp_path / "proj")
    dest = tmp_path / "dest-blobs"
    cases = [
        (
            ["--to-store", f"sqlite:///{tmp_path}/x.db", "--to-blobs", "gs://team/keel"],
            "'gs://'",
            2,
        ),
        (["--to-store", "mysql://u@h/db", "--to-blobs", dest], "--to-store", 2),
        (
            ["--to-store", "postgresql://keel:s3cret@127.0.0.1:1/team", "--to-blobs", dest],
            "cannot open the store at postgresql://keel:***@127.0.0.1:1/team",
            1,
        ),
    ]
    for args, needle, want in cases:
        code, out, err = keel(capsys, "store", "migrate", *args, "-C", root)
        assert code == want, err
        assert needle in err and "Traceback" not in err and "s3cret" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert not dest.exists() and not (tmp_path / "x.db").exists()
    # the project's own store is not a destination
    code, _, err = keel(
        capsys, "store", "migrate", "--to-store", f"sqlite:///{root}/.keel/store.db",
        "--to-blobs", root / ".keel" / "blobs", "-C", root,
    )  # fmt: skip
    assert code == 2 and "this project's own store" in err

    # an S3 endpoint that does not answer: one line naming it, and no record written
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    team = f"sqlite:///{tmp_path}/team.db"
    code, out, err = keel(
        capsys, "store", "migrate", "--to-store", team, "--to-blobs", "s3://team-ml/keel",
        "-C", root,
    )  # fmt: skip
    assert code == 1 and "Traceback" not in err
    assert "http://127.0.0.1:1" in err and "team-ml" in err
    assert len(err.strip().splitlines()) == 1, err
    assert sum(counts(team).values()) == 0
