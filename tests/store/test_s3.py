"""The S3 blob store against a real SeaweedFS server (tests/store/conftest.py), and the parts
of the blob-store contract every store keeps: a tampered object is refused, concurrent puts of
the same bytes agree, a large blob goes up in parts. ``check_blob_store`` itself runs on S3
from test_blobs.py."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keel.errors import InvalidInput, NotFound, StoreError, UnsafeArtifact
from keel.store import FileBlobStore, MemoryBlobStore, S3BlobStore, open_blobs
from tests.store.conftest import ACCESS, BUCKET, REGION, SECRET, Seaweed, fresh_prefix

BIG = 17 << 20  # over 16 MiB: three parts of 8 MiB on S3
PART = 5 << 20  # the smallest part S3 takes, so the concurrent test's blobs are multipart too


def s3_store(server: Seaweed, prefix: str | None = None, **kwargs: Any) -> S3BlobStore:
    args: dict[str, Any] = {
        "endpoint_url": server.endpoint,
        "access_key": ACCESS,
        "secret_key": SECRET,
        "region": REGION,
    }
    return S3BlobStore(f"s3://{BUCKET}/{prefix or fresh_prefix()}", **{**args, **kwargs})


def objects(server: Seaweed, prefix: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def pending_uploads(server: Seaweed, prefix: str) -> list[str]:
    listing = server.client().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/")
    return [u["Key"] for u in listing.get("Uploads", [])]


@dataclass
class Backend:
    blobs: Any
    tamper: Callable[[str, bytes], None]  # replace a stored blob's bytes behind keel's back
    stored: Callable[[], int]  # how many objects the store holds


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        blobs = FileBlobStore(tmp_path / "blobs")
        return Backend(
            blobs,
            lambda sha, data: blobs.path(sha).write_bytes(data),
            lambda: sum(1 for p in blobs.root.rglob("*") if p.is_file()),
        )
    server = request.getfixturevalue("seaweed")
    prefix = fresh_prefix()
    s3 = s3_store(server, prefix, part_size=PART)
    return Backend(
        s3,
        lambda sha, data: server.client().put_object(Bucket=BUCKET, Key=s3.key(sha), Body=data),
        lambda: len(objects(server, prefix)),
    )


# -- the contract, on the folder and on S3 ----------------------------------------------


def test_tampered_blob_is_refused_with_the_same_error(backend: Backend) -> None:
    sha = backend.blobs.put_bytes(b"weights v1")
    backend.tamper(sha, b"weights v1 with a backdoor")
    with pytest.raises(UnsafeArtifact) as caught:
        backend.blobs.get_bytes(sha)
    assert str(caught.value) == (
        f"blob {sha[:12]}… does not match its sha256: it was modified after it was stored; "
        "refusing to use it"
    )
    assert backend.blobs.get_bytes(sha, verify=False) == b"weights v1 with a backdoor"
    backend.tamper(sha, b"")  # truncated
    with pytest.raises(UnsafeArtifact):
        backend.blobs.get_bytes(sha)


def test_concurrent_puts_of_the_same_bytes(backend: Backend) -> None:
    data = os.urandom(12 << 20)  # multipart on S3 (three parts of 5 MiB)
    start = threading.Barrier(8)

    def put(_: int) -> str:
        start.wait()
        sha: str = backend.blobs.put_bytes(data)
        return sha

    with ThreadPoolExecutor(8) as pool:
        shas = set(pool.map(put, range(8)))
    assert shas == {hashlib.sha256(data).hexdigest()}
    (sha,) = shas
    assert backend.blobs.get_bytes(sha) == data
    assert backend.stored() == 1


def test_large_blob_every_way_in(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(BIG)
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    assert backend.blobs.put_file(src) == sha
    assert backend.blobs.get_bytes(sha) == data
    assert backend.blobs.size(sha) == BIG
    other = os.urandom(BIG)
    assert backend.blobs.put_stream(io.BytesIO(other)) == hashlib.sha256(other).hexdigest()
    assert backend.blobs.get_bytes(hashlib.sha256(other).hexdigest()) == other
    assert backend.stored() == 2


def test_missing_blob_size_is_not_found(backend: Backend) -> None:
    missing = hashlib.sha256(b"nothing").hexdigest()
    with pytest.raises(NotFound, match=missing[:12]):
        backend.blobs.size(missing)


# -- S3 only ----------------------------------------------------------------------------


def test_keys_are_content_addressed_under_the_prefix(seaweed: Seaweed) -> None:
    prefix = fresh_prefix()
    blobs = s3_store(seaweed, f"{prefix}/team/")
    sha = blobs.put_bytes(b"hello")
    assert objects(seaweed, prefix) == [f"{prefix}/team/{sha[:2]}/{sha[2:]}"]
    assert blobs.location == f"s3://{BUCKET}/{prefix}/team"


def test_large_blob_goes_up_in_parts(seaweed: Seaweed) -> None:
    prefix = fresh_prefix()
    blobs = s3_store(seaweed, prefix)
    data = os.urandom(BIG)
    sha = blobs.put_bytes(data)
    head = seaweed.client().head_object(Bucket=BUCKET, Key=blobs.key(sha))
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # a multipart ETag, 3 parts
    assert head["ContentLength"] == BIG
    assert pending_uploads(seaweed, prefix) == []


def test_a_file_changed_while_stored_leaves_nothing(seaweed: Seaweed) -> None:
    prefix = fresh_prefix()
    blobs = s3_store(seaweed, prefix, part_size=PART)

    class Changing(io.BytesIO):
        """Reads as different bytes the second time (hashing, then uploading)."""

        reads = 0

        def read(self, n: int | None = -1) -> bytes:
            out = super().read(n)
            if out:
                self.reads += 1
            return out if self.reads < 3 else out[::-1]

    data = os.urandom(BIG)
    with pytest.raises(InvalidInput, match="changed while it was being stored"):
        blobs._upload(hashlib.sha256(data).hexdigest(), Changing(data), BIG)
    assert objects(seaweed, prefix) == []
    assert pending_uploads(seaweed, prefix) == []


def test_environment_configures_the_store(s3_env: Seaweed) -> None:
    """AWS_ENDPOINT_URL, the keys and AWS_REGION, as a user sets them; nothing else."""
    prefix = fresh_prefix()
    blobs = open_blobs(f"s3://{BUCKET}/{prefix}")
    assert isinstance(blobs, S3BlobStore)
    sha = blobs.put_bytes(b"from the environment")
    assert objects(s3_env, prefix) == [blobs.key(sha)]
    assert blobs.endpoint == s3_env.endpoint


def _one_line(exc: BaseException, *needles: str) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


def test_wrong_credentials_one_line_and_nothing_written(seaweed: Seaweed) -> None:
    prefix = fresh_prefix()
    blobs = s3_store(seaweed, prefix, secret_key="not-the-secret", max_attempts=1)
    with pytest.raises(StoreError) as caught:
        blobs.put_bytes(b"never stored")
    text = _one_line(caught.value, seaweed.endpoint, repr(BUCKET), "AWS_SECRET_ACCESS_KEY")
    assert "credentials were refused" in text
    assert objects(seaweed, prefix) == []


def test_missing_bucket_one_line(seaweed: Seaweed) -> None:
    blobs = S3BlobStore(
        "s3://no-such-bucket/x",
        endpoint_url=seaweed.endpoint,
        access_key=ACCESS,
        secret_key=SECRET,
        region=REGION,
    )
    with pytest.raises(StoreError) as caught:
        blobs.put_bytes(b"never stored")
    text = _one_line(caught.value, seaweed.endpoint, "'no-such-bucket'")
    assert "does not exist" in text
    assert "no-such-bucket" not in {b["Name"] for b in seaweed.client().list_buckets()["Buckets"]}


def test_unreachable_endpoint_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    endpoint = f"http://127.0.0.1:{port}"
    blobs = S3BlobStore(
        f"s3://{BUCKET}/x",
        endpoint_url=endpoint,
        access_key=ACCESS,
        secret_key=SECRET,
        region=REGION,
        max_attempts=2,
    )
    with pytest.raises(StoreError) as caught:
        blobs.exists("0" * 64)
    text = _one_line(caught.value, endpoint, repr(BUCKET))
    assert "does not answer" in text and "AWS_ENDPOINT_URL" in text


# -- choosing a store from KEEL_BLOBS ---------------------------------------------------


@pytest.mark.parametrize(
    "location",
    ["gs://bucket/prefix", "http://host/blobs", "S3A://bucket/x", "azure://c/p", "ftp:/x"],
)
def test_unserved_schemes_are_refused(location: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        open_blobs(location, setting="KEEL_BLOBS")
    text = str(caught.value)
    assert text.startswith("KEEL_BLOBS: URL scheme") and repr(location) in text
    assert "a folder path, file:///PATH or s3://BUCKET/PREFIX" in text


def test_folder_locations(tmp_path: Path) -> None:
    for location in [str(tmp_path / "b"), f"file://{tmp_path / 'b'}", tmp_path / "b"]:
        blobs = open_blobs(location)
        assert isinstance(blobs, FileBlobStore) and blobs.root == tmp_path / "b"
    assert open_blobs("relative/s3:x").root == Path("relative/s3:x")  # no scheme: a folder
    made = FileBlobStore(tmp_path)
    assert open_blobs(made) is made
    with pytest.raises(InvalidInput, match="no host"):
        open_blobs("file://server/share")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("s3://", "bucket"),
        ("s3://UPPER/x", "bucket"),
        ("s3://ab/x", "bucket"),
        ("s3://b_c_d/x", "bucket"),
        ("s3://bucket/a/../b", "prefix"),
        ("s3://key:secret@bucket/x", "credentials"),
        ("s3://bucket:9000/x", "no port"),
        ("s3://bucket/x?region=eu", "no port, query"),
    ],
)
def test_bad_s3_urls_are_refused(url: str, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        open_blobs(url)


def test_nothing_is_contacted_until_first_use() -> None:
    blobs = open_blobs("s3://bucket-nobody-has/p")  # no endpoint, no credentials: no error yet
    assert isinstance(blobs, S3BlobStore) and blobs.bucket == "bucket-nobody-has"
    with pytest.raises(InvalidInput):
        blobs.exists("../etc/passwd")  # checked before any client is made


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from keel.project import init

    monkeypatch.delenv("KEEL_BLOBS", raising=False)
    root = tmp_path / "proj"
    init(root).close()
    rows = "".join(f"{20 + i},{['Oslo', 'Rome'][i % 2]},{i % 2}\n" for i in range(40))
    (root / "people.csv").write_text("age,city,label\n" + rows)
    yield root


def test_project_refuses_an_unserved_scheme(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from keel.cli import main

    monkeypatch.setenv("KEEL_BLOBS", "gs://team-bucket/keel")
    code = main(["ingest", str(project / "people.csv"), "--name", "people", "-C", str(project)])
    err = capsys.readouterr().err
    assert code == 2
    assert "gs://" in err and "s3://BUCKET/PREFIX" in err and "Traceback" not in err
    assert not (project / "gs:").exists()


def test_project_blobs_in_s3(
    project: Path, s3_env: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.data import ingest
    from keel.project import open_project

    prefix = fresh_prefix()
    monkeypatch.setenv("KEEL_BLOBS", f"s3://{BUCKET}/{prefix}")
    with open_project(project) as proj:
        assert isinstance(proj.store.blobs, S3BlobStore)
        result = ingest(proj.store, project / "people.csv", name="people")
        sha = result.dataset.sha
        assert proj.store.blobs.key(sha) in objects(s3_env, prefix)
    assert not any((project / ".keel" / "blobs").rglob("*")), "nothing in the local folder"


def test_cli_wrong_credentials_one_line(
    project: Path,
    s3_env: Seaweed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from keel.cli import main
    from keel.project import open_project

    prefix = fresh_prefix()
    monkeypatch.setenv("KEEL_BLOBS", f"s3://{BUCKET}/{prefix}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code = main(["ingest", str(project / "people.csv"), "--name", "people", "-C", str(project)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert s3_env.endpoint in err and repr(BUCKET) in err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with open_project(project) as proj, proj.store.read() as conn:
        from sqlalchemy import func, select

        from keel.store import _tables

        assert conn.execute(select(func.count()).select_from(_tables.datasets)).scalar() == 0
    assert objects(s3_env, prefix) == []


# -- the server stopped in the middle of an upload --------------------------------------


@pytest.mark.slow  # a second server, killed and restarted (~13 s to come back)
def test_server_killed_mid_upload_leaves_no_record(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.project import open_project
    from keel.train import get_run, start_run
    from tests.store.conftest import require_weed

    server = Seaweed(require_weed(), tmp_path / "own-server").start()
    try:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        prefix = fresh_prefix()
        monkeypatch.setenv("KEEL_BLOBS", f"s3://{BUCKET}/{prefix}")
        data = os.urandom(BIG)
        sha = hashlib.sha256(data).hexdigest()
        with open_project(project) as proj:
            blobs = proj.store.blobs
            assert isinstance(blobs, S3BlobStore)
            run = start_run(proj.store, "fault")
            client, _ = blobs._connect()
            parts = []

            def kill_after_first_part(**_: Any) -> None:
                parts.append(1)
                if len(parts) == 1:
                    server.kill()

            client.meta.events.register("after-call.s3.UploadPart", kill_after_first_part)
            with pytest.raises(StoreError) as caught:
                run.log_artifact("weights", data)
            _one_line(caught.value, server.endpoint, repr(BUCKET))
            client.meta.events.unregister("after-call.s3.UploadPart", kill_after_first_part)
            assert parts, "the server must die after the first part, mid-upload"
            assert get_run(proj.store, run.id)["artifacts"] == {}

            server.start()  # same folder and ports: the data it had is back
            assert not blobs.exists(sha), "no partial object is visible"
            assert run.log_artifact("weights", data) == sha
            assert get_run(proj.store, run.id)["artifacts"] == {
                "weights": {"sha": sha, "size": BIG}
            }
            assert blobs.get_bytes(sha) == data
    finally:
        server.kill()


# -- listing and deleting (what keel gc and keel store migrate walk) --------------------


@pytest.fixture(params=["file", "memory", "s3"])
def any_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "file":
        blobs = FileBlobStore(tmp_path / "blobs")
        blobs.root.mkdir()
        (blobs.root / ".tmp-abc").write_bytes(b"a write in progress")  # not a blob
        (blobs.root / "ab").mkdir()
        (blobs.root / "ab" / "not-a-digest").write_bytes(b"x")
        return blobs
    if request.param == "memory":
        return MemoryBlobStore()
    server = request.getfixturevalue("seaweed")
    blobs = s3_store(server)
    for stray in ["README", "ab/not-a-digest", "0" * 64]:  # not in the ab/cdef… layout
        server.client().put_object(Bucket=BUCKET, Key=f"{blobs.prefix}/{stray}", Body=b"x")
    return blobs


def test_iter_blobs_and_delete(any_blobs: Any) -> None:
    import time

    assert list(any_blobs.iter_blobs()) == []
    before = time.time() - 5
    data = {os.urandom(n) for n in (0, 10, 1000)}
    shas = {any_blobs.put_bytes(d): len(d) for d in data}
    listed = list(any_blobs.iter_blobs())
    assert {b.sha: b.size for b in listed} == shas and len(listed) == 3
    assert all(before < b.modified < time.time() + 5 for b in listed)
    gone = next(iter(shas))
    any_blobs.delete(gone)
    any_blobs.delete(gone)  # deleting what is not there does nothing
    assert not any_blobs.exists(gone)
    with pytest.raises(NotFound):
        any_blobs.get_bytes(gone)
    assert {b.sha for b in any_blobs.iter_blobs()} == set(shas) - {gone}
    for bad in ["..", "../" + "0" * 61, "A" * 64]:
        with pytest.raises(InvalidInput):
            any_blobs.delete(bad)
