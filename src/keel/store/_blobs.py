"""Content-addressed blobs: sha256 names the bytes, the same bytes are stored once.

A blob is written to a temporary file in the same folder, flushed to disk, then renamed into
place, so a reader sees either no blob or the whole blob. Reading checks the name is a
sha256 hex digest, so no name can leave the blob folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from keel.errors import InvalidInput, NotFound, UnsafeArtifact
from keel.store import _s3
from keel.store._s3 import BlobInfo, S3BlobStore  # boto3 is imported on first use only

__all__ = [
    "SCHEMES",
    "BlobInfo",
    "FileBlobStore",
    "MemoryBlobStore",
    "open_blobs",
    "sha256_file",
]

_SHA = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
#: What a blob-store location may be, as the error for any other says.
SCHEMES = "a folder path, file:///PATH or s3://BUCKET/PREFIX"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/")


def open_blobs(
    location: str | Path | FileBlobStore | S3BlobStore, *, setting: str = "blob store"
) -> FileBlobStore | S3BlobStore:
    """The blob store at ``location``: a folder path or ``file://`` URL (a folder), or
    ``s3://bucket/prefix``; a store already made is returned as it is. Any other URL scheme
    is refused, naming the ones keel serves, rather than taken as a folder called ``gs:``.
    Nothing is opened or contacted yet."""
    if isinstance(location, FileBlobStore | S3BlobStore):
        return location
    if isinstance(location, Path):
        return FileBlobStore(location)
    text = str(location)
    match = _SCHEME.match(text)
    if match is None:
        return FileBlobStore(text)
    scheme = match.group(1).lower()
    if scheme == "s3":
        return S3BlobStore(text)
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise InvalidInput(
                f"{setting}: expected file:///ABSOLUTE/PATH (no host, query or fragment), "
                f"got {text!r}"
            )
        return FileBlobStore(unquote(parts.path))
    raise InvalidInput(
        f"{setting}: URL scheme {scheme + '://'!r} is not one keel serves; expected {SCHEMES}, "
        f"got {text!r}"
    )


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise InvalidInput(f"blob id: expected 64 lowercase hex digits (sha256), got {sha!r}")
    return sha


def sha256_file(path: str | Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """Blobs in a folder: ``root/ab/cdef…`` (first two hex digits as a sub-folder)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        """Where the blobs are, as ``open_blobs`` takes it."""
        return str(self.root)

    def size(self, sha: str) -> int:
        """The stored size of blob ``sha`` in bytes."""
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {sha[:12]}… is not in the store") from None

    def path(self, sha: str) -> Path:
        _check_sha(sha)
        return self.root / sha[:2] / sha[2:]

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every blob stored (sha, size, modification time), in no set order. Files that
        are not blobs (temporary files of a write in progress, anything else) are skipped."""
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for f in sub.iterdir():
                sha = sub.name + f.name
                if _SHA.fullmatch(sha) and f.is_file():
                    st = f.stat()
                    yield BlobInfo(sha, st.st_size, st.st_mtime)

    def delete(self, sha: str) -> None:
        """Remove blob ``sha``; nothing happens if it is not there."""
        path = self.path(sha)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def _have(self, sha: str) -> bool:
        """Whether blob ``sha`` is stored; a stored one older than ``TOUCH_AFTER_S`` (in _s3)
        is touched, so gc's grace period protects a blob a writer is about to name again."""
        path = self.path(sha)
        try:
            if time.time() - path.stat().st_mtime > _s3.TOUCH_AFTER_S:
                os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self._have(sha):
            self._write(sha, iter([data]))
        return sha

    def put_file(self, src: str | Path) -> str:
        sha, _ = sha256_file(src)
        if not self._have(sha):
            with open(src, "rb") as f:
                self._write(sha, iter(lambda: f.read(_CHUNK), b""))
        return sha

    def put_stream(self, stream: BinaryIO) -> str:
        """Store what a file object yields; the hash is computed while writing."""
        tmp, sha = self._spool(iter(lambda: stream.read(_CHUNK), b""))
        return self._commit(tmp, sha)

    def get_bytes(self, sha: str, *, verify: bool = True) -> bytes:
        try:
            data = self.path(sha).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {sha[:12]}… is not in the store") from None
        if verify and hashlib.sha256(data).hexdigest() != sha:
            raise UnsafeArtifact(
                f"blob {sha[:12]}… does not match its sha256: it was modified after it was "
                "stored; refusing to use it"
            )
        return data

    def _write(self, sha: str, chunks: Iterator[bytes]) -> None:
        tmp, got = self._spool(chunks)
        if got != sha:
            os.unlink(tmp)
            raise InvalidInput("file changed while it was being stored; try again")
        self._commit(tmp, sha)

    def _spool(self, chunks: Iterator[bytes]) -> tuple[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp, h.hexdigest()

    def _commit(self, tmp: str, sha: str) -> str:
        dest = self.path(sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)  # atomic; a concurrent writer of the same bytes is harmless
        _fsync_dir(dest.parent)
        return sha


class MemoryBlobStore:
    """The in-memory twin of :class:`FileBlobStore`, same interface, for tests."""

    location = "memory:"

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._times: dict[str, float] = {}

    def iter_blobs(self) -> Iterator[BlobInfo]:
        for sha, data in list(self._blobs.items()):
            yield BlobInfo(sha, len(data), self._times[sha])

    def delete(self, sha: str) -> None:
        self._blobs.pop(_check_sha(sha), None)
        self._times.pop(sha, None)

    def size(self, sha: str) -> int:
        try:
            return len(self._blobs[_check_sha(sha)])
        except KeyError:
            raise NotFound(f"blob {sha[:12]}… is not in the store") from None

    def exists(self, sha: str) -> bool:
        return _check_sha(sha) in self._blobs

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if sha not in self._blobs:
            self._blobs[sha] = bytes(data)
            self._times[sha] = time.time()
        return sha

    def put_file(self, src: str | Path) -> str:
        return self.put_bytes(Path(src).read_bytes())

    def put_stream(self, stream: BinaryIO) -> str:
        return self.put_bytes(stream.read())

    def get_bytes(self, sha: str, *, verify: bool = True) -> bytes:
        try:
            return self._blobs[_check_sha(sha)]
        except KeyError:
            raise NotFound(f"blob {sha[:12]}… is not in the store") from None
