"""Slow and greedy clients: a request head must be complete within ``head_timeout_s``;
connections past ``max_connections`` are answered 503 at once; /readyz keeps answering
while 2,000 connections trickle their heads in (a bounded loopback attack)."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from keel.serve import start
from tests.serve._support import adult_store, call, train_lgb


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    store, _ = adult_store(root, rows=500)
    train_lgb(store, "adult")
    yield store
    store.close()


def _closed_after(sock: socket.socket, trickle: float, limit: float) -> float | None:
    """Send a header line every ``trickle`` seconds until the server closes the connection;
    the seconds that took, or None if it was still open after ``limit``."""
    t0 = time.monotonic()
    sock.settimeout(trickle)
    i = 0
    while time.monotonic() - t0 < limit:
        try:
            if sock.recv(1) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - t0
        try:
            sock.sendall(f"x-slow-{i}: 1\r\n".encode())
        except OSError:
            return time.monotonic() - t0
        i += 1
    return None


def test_a_slow_request_head_is_closed_after_the_timeout(store):
    with start(store, ["adult"], head_timeout_s=1.0) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nhost: x\r\n")
            took = _closed_after(sock, 0.2, 6)
        assert took is not None and 0.8 <= took <= 3, took
        # a keep-alive connection: answered, then its next head trickles in
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            took = _closed_after(sock, 0.2, 6)
        assert took is not None and took <= 3, took
        # a head that completes in time is answered, however slowly it came
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            for part in (b"GET /healthz HTTP/1.1\r\n", b"host: x\r\n", b"\r\n"):
                sock.sendall(part)
                time.sleep(0.25)
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_connections_past_the_bound_are_answered_503(store):
    with start(store, ["adult"], max_connections=8, head_timeout_s=30) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
        try:
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", server.port)) as extra:
                extra.settimeout(5)
                data = b""
                while chunk := extra.recv(4096):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 503"), data
            body = json.loads(data.split(b"\r\n\r\n", 1)[1])
            assert body["error"]["code"] == "overloaded"
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        assert call(server.url, "GET", "/readyz")[0] == 200


def test_the_connection_settings_are_checked():
    from keel.errors import InvalidInput
    from keel.serve import ServeConfig

    for bad in (0, -1, 301, True, "5"):
        with pytest.raises(InvalidInput, match="head_timeout_s"):
            ServeConfig(head_timeout_s=bad)
    with pytest.raises(InvalidInput, match="max_connections"):
        ServeConfig(max_connections=0)
    assert ServeConfig().head_timeout_s == 5.0 and ServeConfig().max_connections >= 2048


_ATTACK = textwrap.dedent(
    """
    import asyncio, json, sys, time

    PORT, N = int(sys.argv[1]), int(sys.argv[2])
    TRICKLE, RUN = float(sys.argv[3]), float(sys.argv[4])

    async def one(i, out):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        except OSError:
            out["failed"] += 1
            return
        t0 = time.monotonic()
        out["opened"] += 1
        writer.write(b"GET /readyz HTTP/1.1\\r\\nhost: x\\r\\n")

        async def trickle():
            j = 0
            while True:
                await asyncio.sleep(TRICKLE)
                writer.write(b"x-slow-%d: 1\\r\\n" % j)
                j += 1

        feeder = asyncio.ensure_future(trickle())
        try:
            await asyncio.wait_for(reader.read(1), RUN)
            out["closed"].append(time.monotonic() - t0)
        except (asyncio.TimeoutError, TimeoutError):
            out["open"] += 1
        except OSError:
            out["closed"].append(time.monotonic() - t0)
        feeder.cancel()
        writer.close()

    async def main():
        out = {"opened": 0, "failed": 0, "open": 0, "closed": []}
        tasks = []
        for i in range(N):
            tasks.append(asyncio.ensure_future(one(i, out)))
            if i % 100 == 99:
                await asyncio.sleep(0.02)
        while out["opened"] + out["failed"] < N:
            await asyncio.sleep(0.05)
        print("opened", flush=True)
        await asyncio.gather(*tasks)
        print(json.dumps(out), flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_readyz_answers_during_2000_slow_connections(store):
    """2,000 loopback connections each send a request line, then a header line a second,
    never finishing; the server's defaults must close each after about 5 s while /readyz
    answers within 1 s throughout."""
    n, trickle, run = 2000, 1.0, 9.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * n + 512
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the open-file hard limit ({hard}) is below {want}")
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    with start(store, ["adult"]) as server:
        attack = subprocess.Popen(
            [sys.executable, "-c", _ATTACK, str(server.port), str(n), str(trickle), str(run)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert attack.stdout.readline().strip() == "opened"
            latencies, t_end = [], time.monotonic() + 4.5  # all open, before the deadline
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                status = call(server.url, "GET", "/readyz")[0]
                latencies.append(time.monotonic() - t0)
                assert status == 200
                time.sleep(0.1)
            out = json.loads(attack.stdout.readline())
            assert attack.wait(30) == 0
        finally:
            attack.kill()
            attack.wait()
            attack.stdout.close()
        assert call(server.url, "GET", "/readyz")[0] == 200
    closed = sorted(out["closed"])
    print(
        f"\n/readyz during the attack: {len(latencies)} probes, max {max(latencies) * 1000:.0f} ms;"
        f" {out['opened']} opened, {len(closed)} closed by the server after "
        f"{closed[0] if closed else 0:.2f}-{closed[-1] if closed else 0:.2f} s, {out['open']} open"
    )
    assert out["opened"] == n and out["failed"] == 0
    assert max(latencies) < 1.0, latencies
    assert out["open"] == 0 and len(closed) == n
    assert 4.8 <= closed[0] and closed[-1] <= 8.0
