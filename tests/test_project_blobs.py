"""keel.yaml's ``blobs:`` names the blob store as ``store:`` names the records: KEEL_BLOBS
first, then the setting, then the project's ``.keel/blobs`` folder."""

from __future__ import annotations

import pytest

from keel.data import ingest
from keel.errors import InvalidInput
from keel.project import init, open_project
from keel.store import FileBlobStore, S3BlobStore


def _with_blobs(root, value):
    init(root).close()
    cfg = root / "keel.yaml"
    cfg.write_text(cfg.read_text() + f"blobs: {value}\n")
    return open_project(root)


def _blob_files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_a_relative_folder_is_under_the_project_and_holds_the_bytes(tmp_path, monkeypatch):
    monkeypatch.delenv("KEEL_BLOBS", raising=False)
    root = tmp_path / "p"
    csv = tmp_path / "people.csv"
    csv.write_text("age,city\n31,Oslo\n42,Rome\n")
    with _with_blobs(root, "team-blobs") as proj:
        assert proj.blob_location == str(root.resolve() / "team-blobs")
        assert proj.blob_root == root.resolve() / "team-blobs"
        ingest(proj.store, csv, name="people")
    assert _blob_files(root / "team-blobs")  # the data set's bytes went there
    assert not (root / ".keel" / "blobs").exists() or not _blob_files(root / ".keel" / "blobs")


def test_an_absolute_folder_a_file_url_and_s3_are_taken_as_given(tmp_path, monkeypatch):
    monkeypatch.delenv("KEEL_BLOBS", raising=False)
    with _with_blobs(tmp_path / "a", str(tmp_path / "shared")) as proj:
        assert proj.blob_location == str(tmp_path / "shared")
    with _with_blobs(tmp_path / "b", f"file://{tmp_path}/viaurl") as proj:
        assert proj.blob_root == tmp_path / "viaurl"
    with _with_blobs(tmp_path / "c", "s3://team-ml/keel") as proj:
        assert proj.blob_location == "s3://team-ml/keel"
        blobs = proj.store.blobs  # nothing is contacted until a blob is read or written
        assert isinstance(blobs, S3BlobStore) and blobs.location == "s3://team-ml/keel"
        with pytest.raises(InvalidInput, match=r"^keel.yaml blobs: s3://team-ml/keel is not"):
            proj.blob_root  # noqa: B018


def test_keel_blobs_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_BLOBS", str(tmp_path / "from-env"))
    with _with_blobs(tmp_path / "p", "from-yaml") as proj:
        assert proj.blob_location == str(tmp_path / "from-env")
        assert isinstance(proj.store.blobs, FileBlobStore)
        assert proj.store.blobs.root == tmp_path / "from-env"


def test_without_either_the_project_folder_keeps_them(tmp_path, monkeypatch):
    monkeypatch.delenv("KEEL_BLOBS", raising=False)
    with init(tmp_path / "p") as proj:
        assert proj.blob_root == (tmp_path / "p" / ".keel" / "blobs").resolve()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "gs://bucket/keel",
            r"^keel.yaml blobs: URL scheme 'gs://' is not one keel serves; expected .*s3://",
        ),
        (
            "[a, b]",
            r"^keel.yaml blobs: expected a folder, file:///PATH or s3://BUCKET/PREFIX, "
            r"got list \['a', 'b'\]$",
        ),
        ("3", r"^keel.yaml blobs: expected a folder, .* got int 3$"),
    ],
)
def test_a_bad_setting_is_named(tmp_path, monkeypatch, value, message):
    monkeypatch.delenv("KEEL_BLOBS", raising=False)
    proj = _with_blobs(tmp_path / "p", value)
    with pytest.raises(InvalidInput, match=message):
        proj.store  # noqa: B018
