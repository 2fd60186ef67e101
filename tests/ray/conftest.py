"""A real local Ray cluster for the Ray tests: a head node and a worker node, each its own
``ray start`` process on 127.0.0.1, with small object stores.

Every node runs in its own session (``start_new_session``) and a private ``--temp-dir``, so
the cluster is stopped by killing exactly the processes of those sessions (never ``ray
stop``, which would stop every Ray on the machine), and ``ray.init()`` elsewhere on the
machine never finds it by accident.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = 100_000_000  # bytes per node


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1 (held open together, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


_PORT_FLAGS = (
    "--port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)


def _sessions_of(sids: set[int]) -> list[int]:
    """Every live process whose session id is one of ``sids`` (those this cluster made)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) in sids:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class LocalCluster:
    """``ray start --head`` and ``ray start --address`` processes on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ports = iter(free_ports(200))  # every port this cluster's nodes use, distinct
        self.port = next(self._ports)
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen[bytes]] = []
        self.env = dict(
            os.environ,
            RAY_USAGE_STATS_ENABLED="0",
            # token auth off: a ~/.ray/auth_token left by another Ray would turn it on
            RAY_AUTH_MODE="disabled",
            # Serve's proxy spreads requests over every node's replicas, not the head's alone
            RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING="0",
        )
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        cmd = [
            RAY,
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--object-store-memory={OBJECT_STORE}",
            "--disable-usage-stats",
            *[f"{flag}={next(self._ports)}" for flag in _PORT_FLAGS[2:]],
            *args,
        ]
        with open(self.root / log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.nodes.append(proc)
        return proc

    def start_head(self, cpus: int = 1) -> None:
        self._start(
            [
                "--head",
                f"--port={self.port}",
                f"--num-cpus={cpus}",
                "--include-dashboard=false",
                f"--temp-dir={self.root / 'ray'}",
                f"--ray-client-server-port={next(self._ports)}",
            ],
            "head.log",
        )
        self.wait_nodes(1)

    def add_worker(self, cpus: int = 1) -> subprocess.Popen[bytes]:
        before = self.alive_nodes()
        proc = self._start(
            [f"--address={self.address}", f"--num-cpus={cpus}"], f"worker{len(self.nodes)}.log"
        )
        self.wait_nodes(before + 1)
        return proc

    def alive_nodes(self) -> int:
        """Nodes alive, as the head sees them (this process is the cluster's driver, once the
        head's GCS port answers)."""
        import ray

        if not ray.is_initialized():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return 0
            ray.init(address=self.address, log_to_driver=False)
        return sum(bool(n["Alive"]) for n in ray.nodes())

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.nodes):
                raise RuntimeError(f"a ray node exited; see {self.root}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise TimeoutError(f"ray cluster: {n} nodes not alive within {timeout} s; see {self.root}")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a node and everything it started (the node leaves without notice)."""
        for pid in _sessions_of({proc.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(30)

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(p.poll() is None for p in self.nodes):
            time.sleep(0.2)
        sids = {p.pid for p in self.nodes}
        for _ in range(3):
            left = _sessions_of(sids)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        for p in self.nodes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[LocalCluster]:
    """A head node and one worker node (1 CPU each) for the tests in tests/ray; gone (and
    this process disconnected from it) before any other package's tests run, so a later
    local Ray (tests/train's search) never lands on a cluster these tests changed."""
    import ray

    if ray.is_initialized():  # an earlier package's local Ray: these tests use the cluster
        ray.shutdown()
    root = Path(tempfile.mkdtemp(prefix="kr", dir="/tmp"))  # short: Ray's socket paths
    cluster = LocalCluster(root)
    try:
        cluster.start_head()
        cluster.add_worker()
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
