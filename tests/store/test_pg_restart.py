"""PostgreSQL restarted, crashed or cut off in the middle of writes: no acknowledged write is
lost, none is written twice, none lands half-way, and the writer carries on by itself.

The server is a private one made for this module (``initdb`` and ``pg_ctl`` on a free port in
a folder of its own), never the machine's shared server: the tests restart it. A small TCP
relay between keel and that server cuts one connection at a chosen moment of a COMMIT, which
a restart cannot aim at: before the COMMIT reaches the server (it did not land), or after the
server answered it (it landed and only the acknowledgement was lost).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from keel.errors import StoreError
from keel.store import Store, _tables

from ._workers import start, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RESTARTS = ("fast", "immediate", "fast", "immediate")  # immediate: a crash, then recovery
STEPS_BETWEEN = 25  # acknowledged steps the writer must add before and after each restart


# -- a private PostgreSQL server -----------------------------------------------------------


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian's layout, then PATH)."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl") if p.parts[-3].isdigit()]
    if found:
        return max(found, key=lambda p: int(p.parts[-3])).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A PostgreSQL server of the test's own: ``initdb`` into a fresh folder, ``pg_ctl`` to
    start, restart and stop it. As root it runs as the ``postgres`` user (initdb refuses
    root), from a folder that user owns."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = _free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        else:
            import getpass

            self.user = getpass.getuser()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise AssertionError(f"{' '.join(cmd)}: {done.stdout}{done.stderr}\n{log}")

    def start(self) -> PrivateServer:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync")
        self.up()
        return self

    def up(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def down(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m fast`` (sessions ended cleanly) or ``-m immediate`` (a crash:
        every process killed, recovery from the WAL at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str, port: int | None = None) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"keel_{random.getrandbits(32):08x}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    bin_dir = _pg_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        reason = "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        if "CI" in os.environ:
            pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(reason)
    pg = PrivateServer(bin_dir)
    try:
        yield pg.start()
    finally:
        pg.stop()


def add_run(store: Store, run_id: str = "r1") -> None:
    with store.write() as conn:
        conn.execute(
            _tables.runs.insert().values(
                id=run_id,
                experiment="restart",
                status="running",
                created_at=time.time(),
                env_json="{}",
                tags_json="{}",
                created_by="test",
            )
        )


def steps_of(store: Store, key: str) -> tuple[int, set[int], set[int]]:
    """How many rows ``key``'s two metrics have, and the steps of each."""
    m = _tables.metrics
    with store.read() as conn:
        rows = conn.execute(select(m.c.key, m.c.step).where(m.c.key.like(f"{key}/%"))).all()
    loss = {int(step) for k, step in rows if k == f"{key}/loss"}
    acc = {int(step) for k, step in rows if k == f"{key}/acc"}
    return len(rows), loss, acc


class Lines:
    """What a child prints, read by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self._stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            self.lines.append(line)

    def acked(self) -> list[int]:
        return [int(x) for x in list(self.lines) if x.endswith("\n")]

    def wait_for(self, n: int, proc: subprocess.Popen[str], timeout: float = 90) -> None:
        t0 = time.monotonic()
        while len(self.acked()) < n:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise AssertionError(f"the writer died: {proc.stderr.read()}")
            assert time.monotonic() - t0 < timeout, f"the writer is stuck at {len(self.acked())}"
            time.sleep(0.02)

    def finish(self, proc: subprocess.Popen[str]) -> str:
        """Kill the child if it still runs; what it wrote on stderr, less psycopg's log
        lines about connections it found dead (keel handled those)."""
        assert proc.stderr is not None and proc.stdin is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self._thread.join(timeout=30)
        err = proc.stderr.read()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        return "".join(line for line in err.splitlines(True) if not _PSYCOPG_LOG.match(line))


#: psycopg logs (no handler configured: straight to stderr) when it drops a dead connection
_PSYCOPG_LOG = re.compile(
    r"^error ignored (terminating|in rollback) .*: the connection is lost\n?$"
)


def writer(store: Store, key: str, retry_s: int) -> subprocess.Popen[str]:
    env = {**os.environ, "KEEL_STORE_RETRY_SECONDS": str(retry_s)}
    proc = start("until_killed", store.url, store.blobs.location, "r1", key, env=env)
    wait_ready(proc)
    return proc


def check_every_ack_landed_once(store: Store, key: str, acked: list[int]) -> set[int]:
    n_rows, loss, acc = steps_of(store, key)
    assert n_rows == len(loss) + len(acc), "a step was written twice"
    assert loss == acc, "a transaction landed half-way"
    assert set(acked) <= loss, f"acknowledged steps were lost: {sorted(set(acked) - loss)[:10]}"
    assert loss == set(range(len(loss))), "the writer skipped a step"
    assert len(loss - set(acked)) <= 1, "more than the one write in flight landed unacknowledged"
    return loss


# -- the tests ------------------------------------------------------------------------------


def test_restarts_and_crashes_mid_loop_lose_no_acknowledged_write(
    server: PrivateServer, tmp_path: Path
) -> None:
    store = Store.open(server.url(server.create_database()), tmp_path / "blobs")
    try:
        add_run(store)
        proc = writer(store, "k", retry_s=60)
        lines = Lines(proc)
        try:
            resumed = []
            for mode in RESTARTS:
                lines.wait_for(len(lines.acked()) + STEPS_BETWEEN, proc)
                before = len(lines.acked())
                server.restart(mode)
                lines.wait_for(before + STEPS_BETWEEN, proc)  # it carries on by itself
                resumed.append((mode, before, len(lines.acked())))
            assert proc.poll() is None, "the writer stopped"
        finally:
            err = lines.finish(proc)
        assert err == "", err
        acked = lines.acked()
        assert acked == list(range(len(acked)))
        loss = check_every_ack_landed_once(store, "k", acked)
        assert len(loss) >= STEPS_BETWEEN * 2 * len(RESTARTS), resumed
    finally:
        store.close()


def test_without_retry_time_the_writer_stops_with_one_line_and_loses_nothing(
    server: PrivateServer, tmp_path: Path
) -> None:
    store = Store.open(server.url(server.create_database()), tmp_path / "blobs")
    try:
        add_run(store)
        proc = writer(store, "k", retry_s=0)
        lines = Lines(proc)
        try:
            lines.wait_for(STEPS_BETWEEN, proc)
            server.restart("immediate")
            proc.wait(timeout=30)
        finally:
            err = lines.finish(proc)
        assert proc.returncode == 1
        last = err.strip().splitlines()[-1]
        assert last.startswith("keel.errors.StoreError: store write failed: the connection to ")
        assert f"127.0.0.1:{server.port}" in last and "KEEL_STORE_RETRY_SECONDS=0 s" in last
        assert last.endswith(
            (
                "nothing of it was committed",
                "its last commit's outcome is unknown (it may have landed)",
            )
        ), last
        check_every_ack_landed_once(store, "k", lines.acked())
    finally:
        store.close()


def test_reads_and_writes_wait_for_a_server_coming_back(
    server: PrivateServer, tmp_path: Path
) -> None:
    """Opening a connection waits (within KEEL_STORE_RETRY_SECONDS) for a server that is
    down for a moment, for a whole store.write() block and a read alike."""
    store = Store.open(server.url(server.create_database()), tmp_path / "blobs")

    @contextmanager
    def server_down_for(seconds: float) -> Iterator[None]:
        server.down()
        back = threading.Timer(seconds, server.up)
        back.start()
        t0 = time.monotonic()
        try:
            yield
        finally:
            back.join()
        assert time.monotonic() - t0 >= seconds  # it did wait for the server

    try:
        add_run(store)
        with server_down_for(1.5):
            with store.write() as conn:  # a transaction the store cannot replay
                conn.execute(_tables.params.insert().values(run_id="r1", key="k", value="1"))
        with server_down_for(1.5):
            with store.read() as conn:
                got = conn.execute(select(_tables.params.c.value)).scalars().all()
        assert got == ["1"]
    finally:
        store.close()


# -- a connection cut at a chosen moment of COMMIT -------------------------------------------

_SSL, _GSS = 80877103, 80877104


class CutProxy:
    """A TCP relay to the server that cuts the connection carrying the next ``COMMIT``:
    ``"before"`` it reaches the server, or ``"after"`` the server answered it (the answer is
    kept from the client). :attr:`cuts` records each cut with what the server had answered.
    :meth:`down` refuses every connection from then on, as an unreachable server would."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.armed: str | None = None
        self.cuts: list[tuple[str, bytes]] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        held: dict[str, bytes | None] = {"answer": None}  # not None: keep the answer back
        threading.Thread(target=self._answers, args=(upstream, client, held), daemon=True).start()
        buf, startup = b"", True
        try:
            while chunk := client.recv(65536):
                buf += chunk
                while True:  # whole messages only: [type] int32 length, body
                    head = 0 if startup else 1
                    if len(buf) < head + 4:
                        break
                    (length,) = struct.unpack("!i", buf[head : head + 4])
                    if len(buf) < head + length:
                        break
                    msg, buf = buf[: head + length], buf[head + length :]
                    if startup:
                        startup = struct.unpack("!i", msg[4:8])[0] in (_SSL, _GSS)
                    elif msg[:1] == b"Q" and msg[5:].startswith(b"COMMIT") and self.armed:
                        mode, self.armed = self.armed, None
                        if mode == "before":
                            self.cuts.append(("before", b""))
                            return
                        held["answer"] = b""
                    upstream.sendall(msg)
        except OSError:
            pass
        finally:
            _cut(client, upstream)

    def _answers(
        self, upstream: socket.socket, client: socket.socket, held: dict[str, bytes | None]
    ) -> None:
        try:
            while chunk := upstream.recv(65536):
                if held["answer"] is None:
                    client.sendall(chunk)
                    continue
                answer = held["answer"] + chunk
                held["answer"] = answer
                if b"Z\x00\x00\x00\x05" in answer:  # ReadyForQuery: COMMIT answered
                    self.cuts.append(("after", answer))
                    return
        except OSError:
            pass
        finally:
            _cut(client, upstream)

    def down(self) -> None:
        with self._lock:
            _cut(self.listener, *self._socks)  # a listener shut down wakes its accept()


def _cut(*socks: socket.socket) -> None:
    """Close both ways now: a thread blocked reading the socket wakes, the peer sees EOF."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


@pytest.fixture
def cut(server: PrivateServer, tmp_path: Path) -> Iterator[tuple[CutProxy, Store, Store]]:
    """A relay to a fresh database, a store through it and one straight to the server."""
    name = server.create_database()
    proxy = CutProxy(server.port)
    # no SSL or GSS encryption through the relay, so it can read the messages
    through = Store.open(
        server.url(name, proxy.port) + "?sslmode=disable&gssencmode=disable", tmp_path / "b"
    )
    direct = Store.open(server.url(name), tmp_path / "b")
    add_run(direct)
    yield proxy, through, direct
    through.close()
    direct.close()
    proxy.down()


def metric_rows(n: int, key: str) -> list[dict[str, object]]:
    now = time.time()
    return [{"run_id": "r1", "key": key, "value": float(i), "step": i, "ts": now} for i in range(n)]


def count(store: Store, key: str) -> int:
    m = _tables.metrics
    with store.read() as conn:
        return int(conn.execute(select(func.count()).where(m.c.key == key)).scalar_one())


def test_commit_whose_answer_was_lost_is_not_written_twice(
    cut: tuple[CutProxy, Store, Store],
) -> None:
    proxy, through, direct = cut
    proxy.armed = "after"
    through.append(_tables.metrics, metric_rows(5, "landed"))  # returns: it did land
    assert [mode for mode, _ in proxy.cuts] == ["after"]
    # the answer kept back: CommandComplete "COMMIT" (a failed one is tagged ROLLBACK)
    assert b"C\x00\x00\x00\x0bCOMMIT\x00" in proxy.cuts[0][1], proxy.cuts
    assert count(direct, "landed") == 5  # once: keel asked the server instead of resending


def test_commit_cut_before_the_server_saw_it_is_sent_again(
    cut: tuple[CutProxy, Store, Store],
) -> None:
    proxy, through, direct = cut
    proxy.armed = "before"
    through.append(_tables.metrics, metric_rows(5, "resent"))
    assert proxy.cuts == [("before", b"")]
    assert count(direct, "resent") == 5


def test_server_gone_past_the_retry_time_is_one_line(
    cut: tuple[CutProxy, Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, through, direct = cut
    monkeypatch.setenv("KEEL_STORE_RETRY_SECONDS", "1")
    proxy.down()
    t0 = time.monotonic()
    with pytest.raises(StoreError) as caught:
        through.append(_tables.metrics, metric_rows(3, "never"))
    took = time.monotonic() - t0
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"store write failed: the connection to {through.safe_url} ")
    assert "KEEL_STORE_RETRY_SECONDS=1 s" in message and "nothing of it was committed" in message
    assert 1 <= took < 5, took
    with pytest.raises(StoreError, match=r"^store connection failed: .*RETRY_SECONDS=1 s"):
        with through.write():
            pass
    assert count(direct, "never") == 0
