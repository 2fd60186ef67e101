"""Copying a store's blobs into another (the blob half of keel store migrate): a local folder
into S3 (SeaweedFS) and back, resumable, every hash checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from keel.errors import UnsafeArtifact
from keel.store import FileBlobStore, copy_blobs
from tests.store.conftest import BUCKET, Seaweed
from tests.store.test_s3 import s3_store


def _fill(blobs: Any) -> dict[str, bytes]:
    data = [b"", b"small", os.urandom(1000), os.urandom(17 << 20)]  # the last in 3 parts on S3
    return {blobs.put_bytes(d): d for d in data}


@pytest.mark.parametrize("direction", ["folder->s3", "s3->folder"])
def test_copy_is_resumable_and_checks_hashes(
    direction: str, seaweed: Seaweed, tmp_path: Path
) -> None:
    folder, s3 = FileBlobStore(tmp_path / "blobs"), s3_store(seaweed)
    src, dst = (folder, s3) if direction == "folder->s3" else (s3, folder)
    stored = _fill(src)

    seen: list[str] = []

    def stop_after_two(info: Any, copied: bool) -> None:
        assert copied
        seen.append(info.sha)
        if len(seen) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C half-way

    with pytest.raises(KeyboardInterrupt):
        copy_blobs(src, dst, progress=stop_after_two)
    assert sum(dst.exists(sha) for sha in stored) == 2

    report = copy_blobs(src, dst)
    assert (report.copied, report.already_there) == (2, 2)
    assert report.bytes_copied == sum(len(d) for sha, d in stored.items() if sha not in seen)
    for sha, data in stored.items():
        assert dst.get_bytes(sha) == data
    assert copy_blobs(src, dst).to_dict() == {"copied": 0, "already_there": 4, "bytes_copied": 0}


def test_a_tampered_source_blob_is_not_copied(seaweed: Seaweed, tmp_path: Path) -> None:
    folder, s3 = FileBlobStore(tmp_path / "blobs"), s3_store(seaweed)
    sha = folder.put_bytes(b"weights v1")
    folder.path(sha).write_bytes(b"weights v1 with a backdoor")
    with pytest.raises(UnsafeArtifact, match=sha[:12]):
        copy_blobs(folder, s3)
    assert not s3.exists(sha)
    # and the other way: S3's copy tampered with, read with its hash checked
    sha2 = s3.put_bytes(b"weights v2")
    seaweed.client().put_object(Bucket=BUCKET, Key=s3.key(sha2), Body=b"weights v2 evil")
    with pytest.raises(UnsafeArtifact, match=sha2[:12]):
        copy_blobs(s3, FileBlobStore(tmp_path / "other"))


def test_a_tampered_destination_copy_is_found(seaweed: Seaweed, tmp_path: Path) -> None:
    folder, s3 = FileBlobStore(tmp_path / "blobs"), s3_store(seaweed)
    sha = folder.put_bytes(b"data set bytes")
    seaweed.client().put_object(Bucket=BUCKET, Key=s3.key(sha), Body=b"something else")
    with pytest.raises(UnsafeArtifact, match=sha[:12]):
        copy_blobs(folder, s3)
    assert hashlib.sha256(b"data set bytes").hexdigest() == sha
