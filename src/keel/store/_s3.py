"""Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph, SeaweedFS, GCS's S3 layer).

``S3BlobStore("s3://bucket/prefix")`` keeps the blob ``sha`` at the key
``prefix/ab/cdef…``, the layout of :class:`~keel.store.FileBlobStore`'s folder. It has the
same interface and the same promises:

- a reader sees no blob or the whole blob: a small blob is one ``PutObject``, a large one a
  multipart upload that becomes visible only when it is completed (an interrupted one is
  aborted, or stays invisible to every read until the bucket's lifecycle rule or ``keel gc``
  clears it);
- ``put_*`` returns only once the object is stored, so a record written after it never names
  a missing object (keel writes blobs first, then the records that name them);
- every read checks the bytes against their sha256 and raises the same
  :class:`~keel.errors.UnsafeArtifact` as the folder store.

Client: boto3. It is AWS's own SDK, released weekly, and the S3 client the other S3 servers
test against; it reads the usual settings itself (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, profiles, instance
roles, ``AWS_MAX_ATTEMPTS``), and its ``standard`` retry mode retries throttling, 5xx answers
and dropped connections with jittered exponential backoff. s3fs would add an fsspec layer
keel does not need (and an asyncio loop in a thread); obstore is younger, and its errors and
multipart calls are less settled. boto3 is imported lazily: only ``s3://`` stores need it
(``pip install 'keel[s3]'``).

Failures of the service (wrong credentials, a missing bucket, an endpoint that does not
answer) raise :class:`~keel.errors.StoreError` with one line naming the endpoint and the
bucket, and leave no object behind.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

from keel.errors import InvalidInput, MissingExtra, NotFound, StoreError, UnsafeArtifact

__all__ = ["BlobInfo", "S3BlobStore"]

_SHA = re.compile(r"[0-9a-f]{64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CHUNK = 1 << 20
#: Blobs larger than this go up in parts of this size (S3 takes parts of 5 MiB to 5 GiB).
PART_SIZE = 8 << 20
_MIN_PART = 5 << 20
_READ_ATTEMPTS = 4
#: A put of bytes already stored refreshes the blob's time when it is older than this, so
#: the grace period of ``keel gc`` protects a blob that a writer is about to name again.
TOUCH_AFTER_S = 3600.0
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "403",
    "Forbidden",
}
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}


class BlobInfo(NamedTuple):
    """One stored blob, as a store's ``iter_blobs`` lists it."""

    sha: str
    size: int
    modified: float  # seconds since the epoch: when the blob was written


def _check_sha(sha: object) -> str:
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise InvalidInput(f"blob id: expected 64 lowercase hex digits (sha256), got {sha!r}")
    return sha


def _modules() -> tuple[Any, Any, Any]:
    """boto3, botocore.config and botocore.exceptions, or the install command."""
    try:
        boto3 = importlib.import_module("boto3")
        config = importlib.import_module("botocore.config")
        exceptions = importlib.import_module("botocore.exceptions")
    except ImportError:
        raise MissingExtra("an s3:// blob store needs boto3: pip install 'keel[s3]'") from None
    return boto3, config, exceptions


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``; the prefix has no leading or trailing
    slash. Credentials, queries and ``..`` segments are refused."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise InvalidInput(f"S3 blob store: expected s3://BUCKET/PREFIX, got {url!r}")
    if "@" in parts.netloc:
        raise InvalidInput(
            "S3 blob store URL: credentials do not belong in the URL (they would be logged); "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
        )
    if parts.query or parts.fragment or parts.port is not None:
        raise InvalidInput(
            f"S3 blob store URL: expected s3://BUCKET/PREFIX with no port, query or fragment "
            f"(the endpoint comes from AWS_ENDPOINT_URL), got {url!r}"
        )
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(
            f"S3 blob store URL {url!r}: bucket: expected 3-63 lowercase letters, digits, "
            f"dots or hyphens, got {bucket!r}"
        )
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise InvalidInput(f"S3 blob store URL {url!r}: prefix: '.' and '..' are not allowed")
    return bucket, "/".join(segments)


class S3BlobStore:
    """Content-addressed blobs under ``s3://bucket/prefix``.

    A blob larger than ``part_size`` goes up in parts, ``concurrency`` at a time.

    The constructor only stores configuration; the client is made, and the bucket checked
    once, on first use. ``endpoint_url``, ``region`` and the credentials default to what
    boto3 reads from the environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ...).
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        part_size: int = PART_SIZE,
        concurrency: int = 4,
        max_attempts: int | None = None,
    ) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if part_size < _MIN_PART:
            raise InvalidInput(f"part_size: expected at least {_MIN_PART} bytes, got {part_size}")
        self.part_size = part_size
        if concurrency < 1:
            raise InvalidInput(f"concurrency: expected at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._endpoint_url = endpoint_url
        self._region = region
        self._keys = (access_key, secret_key)
        self._max_attempts = max_attempts
        self._client: Any = None
        self._lock = threading.Lock()

    # -- the blob-store interface ---------------------------------------------------------

    def key(self, sha: str) -> str:
        _check_sha(sha)
        tail = f"{sha[:2]}/{sha[2:]}"
        return f"{self.prefix}/{tail}" if self.prefix else tail

    def exists(self, sha: str) -> bool:
        return self._head(sha) is not None

    def _head(self, sha: str) -> dict[str, Any] | None:
        key = self.key(sha)
        client, errors = self._connect()
        try:
            head: dict[str, Any] = client.head_object(Bucket=self.bucket, Key=key)
        except errors.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, f"checking blob {sha[:12]}…") from None
        except errors.BotoCoreError as exc:
            raise self._error(exc, f"checking blob {sha[:12]}…") from None
        return head

    def _have(self, sha: str) -> bool:
        """Whether blob ``sha`` is stored. A stored one older than TOUCH_AFTER_S is copied
        onto itself (a new upload time, no bytes sent), so ``keel gc``'s grace period
        protects a blob that a writer is about to name again."""
        head = self._head(sha)
        if head is None:
            return False
        if time.time() - head["LastModified"].timestamp() > TOUCH_AFTER_S:
            client, errors = self._connect()
            key = self.key(sha)
            try:
                client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                )
            except (errors.ClientError, errors.BotoCoreError):
                pass  # e.g. over 5 GiB; keel gc marks again right before it deletes
        return True

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every blob under the prefix (sha, size, upload time), a page of 1,000 keys at a
        time. Keys that are not blobs are skipped; incomplete multipart uploads are not
        objects, so never listed."""
        client, errors = self._connect()
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(start) :]  # ab/cdef…
                    sha = rest[:2] + rest[3:]
                    if rest[2:3] == "/" and _SHA.fullmatch(sha):
                        yield BlobInfo(sha, int(obj["Size"]), obj["LastModified"].timestamp())
        except (errors.ClientError, errors.BotoCoreError) as exc:
            raise self._error(exc, "listing blobs") from None

    def delete(self, sha: str) -> None:
        """Remove blob ``sha``; nothing happens if it is not there."""
        self._call("delete_object", sha, Key=self.key(sha), doing="deleting")

    def size(self, sha: str) -> int:
        """The stored size of blob ``sha`` in bytes."""
        key = self.key(sha)
        client, errors = self._connect()
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
        except errors.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(f"blob {sha[:12]}… is not in the store") from None
            raise self._error(exc, f"checking blob {sha[:12]}…") from None
        except errors.BotoCoreError as exc:
            raise self._error(exc, f"checking blob {sha[:12]}…") from None
        return int(head["ContentLength"])

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self._have(sha):
            self._upload(sha, io.BytesIO(data), len(data))
        return sha

    def put_file(self, src: str | Path) -> str:
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            sha = h.hexdigest()
            if not self._have(sha):
                size = f.seek(0, os.SEEK_END)
                f.seek(0)
                self._upload(sha, f, size)
        return sha

    def put_stream(self, stream: BinaryIO) -> str:
        """Store what a file object yields. Its sha256 names the object, so the bytes are
        spooled (in memory up to one part, then to a temporary file) while they are hashed,
        then uploaded."""
        h = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=self.part_size) as spool:
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
                spool.write(chunk)
            sha = h.hexdigest()
            if not self._have(sha):
                size = spool.tell()
                spool.seek(0)
                self._upload(sha, spool, size)
        return sha

    def get_bytes(self, sha: str, *, verify: bool = True) -> bytes:
        key = self.key(sha)
        client, errors = self._connect()
        for attempt in range(1, _READ_ATTEMPTS + 1):
            try:
                answer = client.get_object(Bucket=self.bucket, Key=key)
                data: bytes = answer["Body"].read()
                break
            except errors.ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                    raise NotFound(f"blob {sha[:12]}… is not in the store") from None
                raise self._error(exc, f"reading blob {sha[:12]}…") from None
            except errors.BotoCoreError as exc:
                # The client retried the request itself; a body cut off half-way is retried here.
                if attempt == _READ_ATTEMPTS or not _transient(exc, errors):
                    raise self._error(exc, f"reading blob {sha[:12]}…") from None
                time.sleep(min(2.0, 0.1 * 2**attempt))
        if verify and hashlib.sha256(data).hexdigest() != sha:
            raise UnsafeArtifact(
                f"blob {sha[:12]}… does not match its sha256: it was modified after it was "
                "stored; refusing to use it"
            )
        return data

    # -- writing --------------------------------------------------------------------------

    def _upload(self, sha: str, f: IO[bytes], size: int) -> None:
        """Upload ``size`` bytes of ``f`` as blob ``sha``, checking on the way that they hash
        to ``sha`` (a file changed while it was stored is refused, nothing is left)."""
        if size <= self.part_size:
            data = f.read()
            if hashlib.sha256(data).hexdigest() != sha:
                raise InvalidInput("file changed while it was being stored; try again")
            self._call("put_object", sha, Key=self.key(sha), Body=data)
            return
        key = self.key(sha)
        upload_id = self._call("create_multipart_upload", sha, Key=key)["UploadId"]
        try:
            h = hashlib.sha256()
            etags: dict[int, str] = {}
            # Parts go up ``concurrency`` at a time, read (and hashed) in order; at most that
            # many parts are held in memory.
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="keel-s3") as pool:
                inflight: deque[Future[tuple[int, str]]] = deque()
                number = 0
                while part := f.read(self.part_size):
                    h.update(part)
                    number += 1
                    inflight.append(pool.submit(self._part, sha, key, upload_id, number, part))
                    if len(inflight) >= self.concurrency:
                        etags.update([inflight.popleft().result()])
                while inflight:
                    etags.update([inflight.popleft().result()])
            if h.hexdigest() != sha:
                raise InvalidInput("file changed while it was being stored; try again")
            parts = [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]
            self._call(
                "complete_multipart_upload",
                sha,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _part(
        self, sha: str, key: str, upload_id: str, number: int, data: bytes
    ) -> tuple[int, str]:
        answer = self._call(
            "upload_part", sha, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return number, str(answer["ETag"])

    def _abort(self, key: str, upload_id: str) -> None:
        """Best effort: the parts of an upload that failed are dropped; if the server is gone
        they stay invisible to every read (no object exists until completion)."""
        client, errors = self._connect()
        try:
            client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (errors.ClientError, errors.BotoCoreError):
            pass

    def _call(self, op: str, sha: str, doing: str = "writing", **kwargs: Any) -> Any:
        client, errors = self._connect()
        try:
            return getattr(client, op)(Bucket=self.bucket, **kwargs)
        except (errors.ClientError, errors.BotoCoreError) as exc:
            raise self._error(exc, f"{doing} blob {sha[:12]}…") from None

    # -- the client and its errors --------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint the store talks to, for messages."""
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return self._endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"

    def _connect(self) -> tuple[Any, Any]:
        """The boto3 client, made and checked against the bucket (one HEAD) on first use."""
        boto3, config, errors = _modules()
        if self._client is not None:
            return self._client, errors
        with self._lock:
            if self._client is None:
                attempts = self._max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or 5)
                cfg = config.Config(
                    retries={"mode": "standard", "total_max_attempts": attempts},
                    connect_timeout=10,
                    read_timeout=60,
                    s3={"addressing_style": "path"}
                    if (self._endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
                    else {},
                )
                access, secret = self._keys
                try:
                    client = boto3.session.Session().client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region,
                        aws_access_key_id=access,
                        aws_secret_access_key=secret,
                        config=cfg,
                    )
                except (errors.BotoCoreError, ValueError) as exc:
                    raise StoreError(
                        f"S3 blob store {self.location} at {self.endpoint}: {_first_line(exc)}"
                    ) from None
                try:
                    client.head_bucket(Bucket=self.bucket)
                except errors.ClientError as exc:
                    # Refused: the identity may lack s3:ListBucket and still use the objects
                    # under its prefix; the first object call says whether the keys work.
                    if _code(exc) not in _DENIED:
                        raise self._error(exc, "opening the bucket", client) from None
                except errors.BotoCoreError as exc:
                    raise self._error(exc, "opening the bucket", client) from None
                self._client = client
        return self._client, errors

    def _error(self, exc: BaseException, doing: str, client: Any = None) -> StoreError:
        """One line naming the endpoint and the bucket, what failed and what to check."""
        _, _, errors = _modules()
        endpoint = client.meta.endpoint_url if client is not None else self.endpoint
        where = f"S3 endpoint {endpoint}, bucket {self.bucket!r}"
        if isinstance(exc, errors.ClientError):
            code = _code(exc)
            if code in _DENIED:
                return StoreError(
                    f"{where}: {doing}: the credentials were refused ({code}); check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that they may use the bucket"
                )
            if code == "NoSuchBucket" or (code in _NO_BUCKET and doing == "opening the bucket"):
                return StoreError(
                    f"{where}: the bucket does not exist; create it, or fix the bucket in "
                    "KEEL_BLOBS"
                )
            message = exc.response.get("Error", {}).get("Message") or ""
            return StoreError(f"{where}: {doing}: {code} {message}".rstrip())
        if isinstance(exc, errors.NoCredentialsError):
            return StoreError(
                f"{where}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if _transient(exc, errors):
            return StoreError(
                f"{where}: {doing}: the endpoint does not answer ({type(exc).__name__}); check "
                "AWS_ENDPOINT_URL and that the server is up"
            )
        return StoreError(f"{where}: {doing}: {_first_line(exc)}")

    def __repr__(self) -> str:
        return f"S3BlobStore({self.location!r})"


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


def _transient(exc: BaseException, errors: Any) -> bool:
    return isinstance(
        exc,
        (
            errors.EndpointConnectionError,
            errors.ConnectionError,
            errors.ConnectionClosedError,
            errors.ReadTimeoutError,
            errors.ConnectTimeoutError,
            errors.IncompleteReadError,
            errors.ResponseStreamingError,
        ),
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
