"""``keel serve --workers N``: several processes behind one port, run as a user runs them
(the CLI in a subprocess, on 127.0.0.1), with a bounded number of requests."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keel import project, registry
from keel.data import ingest
from keel.datasets import adult
from keel.serve import read_predictions
from keel.train import train
from tests.serve._support import call, call_json, records

pytestmark = pytest.mark.slow

WATCH_S = 0.5
#: an alias move reaches every worker within this: a poll, a 0.5 s grace, then loading and
#: warming the new version (a second or two when idle, up to ~20 s on a busy 2-core CI box)
MOVE_BOUND_S = WATCH_S + 0.5 + 30
PREDICT = "/models/{name}/predict"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    with project.init(root, name="workers") as p:
        df = adult("train").sample(1500, random_state=0)
        df.to_csv(root / "adult.csv", index=False)
        ingest(p.store, root / "adult.csv", name="adult")
        v1 = train(p.store, "adult", "income", params={"n_estimators": 10}, seed=1)
        v1 = v1.register(p.store, "adult")
        registry.set_alias(p.store, v1.ref, "production")
        v2 = train(p.store, "adult", "income", params={"n_estimators": 30}, seed=2)
        v2 = v2.register(p.store, "adult")
    return root, df, v1, v2


class Server:
    def __init__(
        self, root: Path, workers: int, *extra: str, routes: tuple[str, ...] = ("adult",)
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", *routes, "--workers", str(workers)]
            + ["--port", str(self.port), "--project", str(root)]
            + ["--watch-seconds", str(WATCH_S), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the supervisor says every worker listens."""
        self.wait_for("workers listening on", timeout)

    def workers_seen(self, n_calls: int = 60) -> dict[str, str]:
        """worker number → the version it serves, over fresh connections."""
        seen: dict[str, str] = {}
        for _ in range(n_calls):
            status, headers, body = call(self.url, "GET", "/readyz")
            assert status == 200
            seen[headers["x-keel-worker"]] = json.loads(body)["models"]["adult"]
        return seen

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.output()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_workers_share_one_port_log_every_request_once_and_sum_metrics(proj):
    root, df, v1, v2 = proj
    server = Server(root, 2)
    try:
        server.wait_ready()
        assert set(server.workers_seen()) == {"1", "2"}  # both take connections
        rows = records(df, 5)
        ids = [f"req-{i}" for i in range(200)]
        answered: dict[str, int] = {}
        for rid in ids:
            status, headers, _ = call(
                server.url, "POST", "/models/adult/predict", {"rows": rows}, {"x-request-id": rid}
            )
            assert status == 200
            answered[headers["x-keel-worker"]] = answered.get(headers["x-keel-worker"], 0) + 1
        assert set(answered) == {"1", "2"}
        # an answer is counted once its last byte is sent, so the count may trail the
        # client by a moment: read /metrics until it settles (bounded)
        total, deadline = 0.0, time.monotonic() + 5
        while total < 200 and time.monotonic() < deadline:
            status, _, text = call(server.url, "GET", "/metrics")
            assert status == 200
            total = _metric(
                text.decode(), "keel_requests_total", model="adult", endpoint=PREDICT, status="200"
            )
        assert total == 200  # the sum over both workers, whichever answered /metrics
        loaded = _metric(text.decode(), "keel_model_loaded", model="adult", version="1")
        assert loaded == 2  # two live workers serve version 1
    finally:
        out = server.stop()
    assert server.proc.returncode == 0, out
    with project.open_project(root) as p:
        log = read_predictions(p.store, "adult").to_pandas()
    logged = log[log["request_id"].str.startswith("req-")]
    assert len(logged) == 200 * 5  # every row once: none lost, none twice
    assert logged.groupby("request_id").size().eq(5).all()


def test_an_alias_move_reaches_every_worker_within_the_bound(proj):
    root, _, v1, v2 = proj
    server = Server(root, 2)
    try:
        server.wait_ready()
        assert set(server.workers_seen().values()) == {v1.ref}
        with project.open_project(root) as p:
            registry.set_alias(p.store, v2.ref, "production")
        t0 = time.monotonic()
        while True:
            seen = server.workers_seen(20)
            if set(seen) == {"1", "2"} and set(seen.values()) == {v2.ref}:
                break
            assert time.monotonic() - t0 < MOVE_BOUND_S, seen
            time.sleep(0.2)
    finally:
        server.stop()
        with project.open_project(root) as p:
            registry.set_alias(p.store, v1.ref, "production")


def test_a_canary_change_in_the_release_file_reaches_every_worker_within_the_bound(
    proj, tmp_path
):
    root, df, v1, v2 = proj
    release = tmp_path / "release.yaml"
    release.write_text("name: adult\nvariants: {production: 100}\n")
    server = Server(root, 2, "--release", str(release), routes=())
    rows = records(df, 1)

    def answers(n: int = 40) -> dict[str, set[str]]:
        """worker → the versions it answered with, over fresh connections."""
        seen: dict[str, set[str]] = {}
        for _ in range(n):
            status, headers, _ = call(server.url, "POST", PREDICT.format(name="adult"),
                                      {"rows": rows})  # fmt: skip
            assert status == 200
            seen.setdefault(headers["x-keel-worker"], set()).add(headers["keel-model-version"])
        return seen

    try:
        server.wait_ready()
        assert all(v == {v1.ref} for v in answers().values())
        # version 2, pinned, takes (nearly) all the traffic: a canary turned up to full
        release.write_text("name: adult\nvariants: {production: 1, '2': 1000000}\n")
        t0 = time.monotonic()
        while True:
            seen = answers()
            if set(seen) == {"1", "2"} and all(v == {v2.ref} for v in seen.values()):
                break
            assert time.monotonic() - t0 < MOVE_BOUND_S, seen
            time.sleep(0.2)
        release.write_text("name: adult\nvariants: {production: [\n")  # refused by each
        server.wait_for("not applied (the running releases stay)", count=2)
        assert all(v == {v2.ref} for v in answers().values())
    finally:
        out = server.stop()
    assert server.proc.returncode == 0, out


def test_a_killed_worker_is_restarted_and_the_other_keeps_answering(proj):
    root, df, *_ = proj
    server = Server(root, 2)
    failures: list[str] = []
    done = threading.Event()
    rows = records(df, 1)

    def load() -> None:  # bounded: one client, at most 3,000 requests, to loopback only
        for i in range(3000):
            if done.is_set():
                return
            try:
                status, _ = call_json(
                    server.url,
                    "POST",
                    "/models/adult/predict",
                    {"rows": rows},
                    headers={"x-request-id": f"kill-{i}"},
                )
                if status != 200:
                    failures.append(str(status))
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))

    try:
        server.wait_ready()
        before = _children(server.proc.pid)
        assert len(before) == 2
        client = threading.Thread(target=load)
        client.start()
        # wait until both workers have committed prediction-log segments (flushed every 2 s)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = _logged_ids(root)
            if len(committed) >= 20:
                break
            time.sleep(0.5)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _children(server.proc.pid)
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.2)
        assert len(now) == 2 and before[1] in now  # replaced; the other one untouched
        server.wait_for("restarting it")
        deadline = time.monotonic() + 90  # the new worker loads its model, then listens
        while set(server.workers_seen(20)) != {"1", "2"}:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.5)
        done.set()
        client.join(60)
    finally:
        done.set()
        out = server.stop()
    assert "worker 1" in out and "SIGKILL" in out and "restarting" in out
    # a request that was on the killed worker's connection may fail; one that was not may
    # not: the client here used one connection at a time, so at most one failed
    assert len(failures) <= 1, failures
    # every row committed to the log before the kill is still there, and none twice
    after = _logged_ids(root)
    assert set(committed) <= set(after)
    assert len(after) == len(set(after))


def _logged_ids(root: Path, prefix: str = "kill-") -> list[str]:
    """The request ids of this test's rows in the log (one row a request; the module's
    other tests log their own ids into the same project)."""
    with project.open_project(root) as p:
        ids = read_predictions(p.store, "adult").column("request_id").to_pylist()
    return [i for i in ids if i.startswith(prefix)]


@pytest.mark.parametrize("n", ["0", "-1", str(4 * (os.cpu_count() or 1) + 1)])
def test_workers_out_of_range_are_refused_with_the_range(proj, n):
    root = proj[0]
    out = subprocess.run(
        [sys.executable, "-m", "keel", "serve", "adult", "--workers", n, "--project", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    top = 4 * (os.cpu_count() or 1)
    assert re.search(rf"--workers: expected a whole number from 1 to {top}.*got {n}", out.stderr)
    assert "Traceback" not in out.stderr


def test_a_route_that_does_not_load_stops_the_workers_with_the_reason(proj):
    root = proj[0]
    port = _free_port()
    out = subprocess.run(
        [sys.executable, "-m", "keel", "serve", "nosuchmodel", "--workers", "2"]
        + ["--port", str(port), "--project", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "did not start" in out.stderr and "nosuchmodel" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_revoked_key_is_refused_by_every_worker_within_two_seconds(proj, tmp_path):
    from keel.serve import add_key, revoke_key

    root = proj[0]
    path = tmp_path / "keys.json"
    gone, _ = add_key(path, "gateway", ["predict"])
    kept, _ = add_key(path, "ops", ["predict"])
    server = Server(root, 2, "--keys", str(path))

    def statuses(token: str, n: int = 20) -> dict[str, int]:
        """worker number → the status it answered ``token`` with, over fresh connections."""
        seen: dict[str, int] = {}
        for _ in range(n):
            status, headers, _ = call(
                server.url, "GET", "/models", headers={"Authorization": f"Bearer {token}"}
            )
            seen[headers["x-keel-worker"]] = status
        return seen

    try:
        server.wait_ready()
        assert statuses(gone, 40) == {"1": 200, "2": 200}
        revoke_key(path, "gateway")
        t0 = time.monotonic()
        while statuses(gone) != {"1": 401, "2": 401}:  # each worker rereads the file itself
            assert time.monotonic() - t0 < 2.0 + 1.0, statuses(gone)
            time.sleep(0.05)
        assert statuses(kept, 40) == {"1": 200, "2": 200}
    finally:
        out = server.stop()
    assert server.proc.returncode == 0, out
