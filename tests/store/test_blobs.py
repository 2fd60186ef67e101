"""Blob stores: the shared conformance check, then what only the folder-backed store promises.

``check_blob_store`` is written to move into ``keel.testing`` as it is: it takes any object
with the blob-store interface (``put_bytes``, ``put_file``, ``put_stream``, ``get_bytes``,
``exists``) and depends only on keel, Hypothesis and the standard library.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.errors import InvalidInput, NotFound, UnsafeArtifact
from keel.store import FileBlobStore, MemoryBlobStore

# -- conformance check ------------------------------------------------------------------

_VALID_ID = re.compile(r"[0-9a-f]{64}")
_HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

#: Ids a path-traversal attempt would use: ``..`` under the encodings a server, a shell or a
#: filesystem might decode, absolute paths, and valid digests with something appended.
TRICKY_IDS = [
    "",
    ".",
    "..",
    "../",
    "../" * 8 + "etc/passwd",
    "..\\..\\windows",
    "/etc/passwd",
    "%2e%2e",
    "%2e%2e%2f",
    "..%2f..%2f",
    "%252e%252e",
    "..%c0%af",
    "%c0%ae%c0%ae",
    "\u2024\u2024",  # one-dot leaders
    "\uff0e\uff0e",  # full-width full stops
    "..\x00",
    "ab/../../" + "0" * 55,
    "0" * 63,
    "0" * 65,
    "0" * 64 + "\n",
    "0" * 64 + "/..",
    "\n" + "0" * 64,
    "A" * 64,
    "0" * 62 + "..",
    "../" + "0" * 61,
]

_BAD_IDS = st.one_of(
    st.sampled_from(TRICKY_IDS),
    st.text(),
    st.text(alphabet="0123456789abcdef./\\%\n\x00", max_size=80),
    st.builds(lambda h, s: h + s, _HEX64, st.text(min_size=1, max_size=4)),
    st.builds(lambda s, h: s + h, st.text(min_size=1, max_size=4), _HEX64),
    st.builds(str.upper, _HEX64),
).filter(lambda s: not _VALID_ID.fullmatch(s))

_FILE_EVENTS = ("open", "os.", "shutil.", "tempfile.")
_fs_events: list[tuple[str, tuple[Any, ...]]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _fs_events is not None and event.startswith(_FILE_EVENTS):
        _fs_events.append((event, args))


sys.addaudithook(_audit)  # permanent once added, so it records only inside _no_file_access


@contextmanager
def _no_file_access() -> Iterator[None]:
    """Fail if the block opens, lists, creates, moves or removes any file or folder."""
    global _fs_events
    _fs_events = []
    try:
        yield
        seen = _fs_events
    finally:
        _fs_events = None
    assert not seen, f"touched the file system: {seen}"


def check_blob_store(blobs: Any) -> None:
    """Check that ``blobs`` behaves as a keel blob store. Raises AssertionError if not.

    Content addressing (the id is the sha256 of the bytes, the same bytes get one id, every
    way in agrees), byte-exact round trips for arbitrary bytes, NotFound for a missing blob,
    and InvalidInput, before any file access, for an id that is not a sha256 hex digest.
    """
    _check_ids_are_sha256(blobs)
    _check_round_trip(blobs)
    _check_missing(blobs)
    _check_bad_ids(blobs)


def _check_ids_are_sha256(blobs: Any) -> None:
    data = b"keel blob\n" * 1000
    sha = hashlib.sha256(data).hexdigest()
    assert blobs.put_bytes(data) == sha
    assert blobs.put_bytes(data) == sha, "the same bytes must get the same id"
    assert blobs.exists(sha)
    assert blobs.put_stream(io.BytesIO(data)) == sha
    big = os.urandom(2_621_440)  # over two 1 MiB chunks, so chunked paths are exercised
    big_sha = hashlib.sha256(big).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.bin"
        path.write_bytes(data)
        assert blobs.put_file(path) == sha
        path.write_bytes(big)
        assert blobs.put_file(path) == big_sha
    assert blobs.put_stream(io.BytesIO(big)) == big_sha
    assert blobs.put_bytes(big) == big_sha
    assert blobs.get_bytes(big_sha) == big
    assert blobs.put_bytes(b"") == hashlib.sha256(b"").hexdigest()
    assert blobs.get_bytes(hashlib.sha256(b"").hexdigest()) == b""


def _check_round_trip(blobs: Any) -> None:
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=4096))
    def round_trip(data: bytes) -> None:
        sha = blobs.put_bytes(data)
        assert sha == hashlib.sha256(data).hexdigest()
        assert blobs.exists(sha)
        assert blobs.get_bytes(sha) == data
        assert blobs.put_stream(io.BytesIO(data)) == sha

    round_trip()


def _check_missing(blobs: Any) -> None:
    missing = hashlib.sha256(b"never stored by check_blob_store \x00\xff").hexdigest()
    assert not blobs.exists(missing)
    try:
        blobs.get_bytes(missing)
    except NotFound as exc:
        assert isinstance(exc, LookupError)
        assert missing[:12] in str(exc), f"NotFound should name the blob: {exc}"
    else:
        raise AssertionError("get_bytes of a missing blob must raise NotFound")


def _check_bad_ids(blobs: Any) -> None:
    def assert_refused(bad: object) -> None:
        for method in (blobs.exists, blobs.get_bytes):
            with _no_file_access():
                try:
                    method(bad)
                except InvalidInput:
                    continue
            raise AssertionError(f"{method.__name__}({bad!r}) was not refused")

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_BAD_IDS)
    def refused(bad: str) -> None:
        assert_refused(bad)

    refused()
    for not_text in (None, b"..", 0, ["0" * 64]):
        assert_refused(not_text)


# -- the check on every blob store keel ships -------------------------------------------


@pytest.fixture(params=["file", "memory", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "s3":  # a real S3 server (SeaweedFS), tests/store/conftest.py
        from tests.store.test_s3 import s3_store

        return s3_store(request.getfixturevalue("seaweed"))
    return FileBlobStore(tmp_path / "blobs") if request.param == "file" else MemoryBlobStore()


def test_check_blob_store(blobs: Any) -> None:
    check_blob_store(blobs)


# -- FileBlobStore on disk --------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_same_bytes_are_one_file(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    data = b"the same bytes, three ways in"
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    shas = {blobs.put_bytes(data), blobs.put_file(src), blobs.put_stream(io.BytesIO(data))}
    assert shas == {hashlib.sha256(data).hexdigest()}
    (sha,) = shas
    assert _files(blobs.root) == [blobs.path(sha)]
    assert blobs.path(sha) == blobs.root / sha[:2] / sha[2:]


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    src = tmp_path / "src.bin"
    for i in range(5):
        data = os.urandom(1000 * i)
        src.write_bytes(data)
        blobs.put_bytes(data)
        blobs.put_file(src)
        blobs.put_stream(io.BytesIO(data))
    assert len(_files(blobs.root)) == 5
    assert not [p for p in blobs.root.rglob(".tmp-*")]


def test_a_failing_stream_leaves_nothing(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")

    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 10

    with pytest.raises(OSError, match="connection reset"):
        blobs.put_stream(Broken())
    assert _files(blobs.root) == []


def test_modified_blob_is_refused(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    sha = blobs.put_bytes(b"weights v1")
    blobs.path(sha).write_bytes(b"weights v1 with a backdoor")
    with pytest.raises(UnsafeArtifact, match=sha[:12]):
        blobs.get_bytes(sha)
    assert blobs.get_bytes(sha, verify=False) == b"weights v1 with a backdoor"


def test_truncated_blob_is_refused(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    sha = blobs.put_bytes(b"0123456789" * 100)
    blobs.path(sha).write_bytes(b"")
    with pytest.raises(UnsafeArtifact):
        blobs.get_bytes(sha)


@settings(max_examples=300, deadline=None)
@given(bad=_BAD_IDS)
def test_bad_id_never_names_a_path(bad: str) -> None:
    blobs = FileBlobStore("/nonexistent/keel-blobs")
    with _no_file_access(), pytest.raises(InvalidInput, match="sha256"):
        blobs.path(bad)


def test_bad_id_leaves_the_root_alone(tmp_path: Path) -> None:
    """A file one level above the root, where ``..`` would lead, is never read."""
    blobs = FileBlobStore(tmp_path / "blobs")
    blobs.put_bytes(b"inside")
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    for bad in ["../secret", "..", "%2e%2e/secret", "0" * 64 + "/../../secret"]:
        with _no_file_access():
            with pytest.raises(InvalidInput):
                blobs.get_bytes(bad)
            with pytest.raises(InvalidInput):
                blobs.exists(bad)
