"""Swaps: a server follows its aliases by itself (the watch), ``release`` moves an alias and
has the server swap at once, and twenty swaps in a row under open-loop load answer every
request, each with a version consistent with when the swaps happened."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from keel import registry
from keel.cli import main
from keel.data import ingest
from keel.datasets import adult
from keel.errors import KeelError
from keel.export import export
from keel.project import open_project
from keel.serve import ApiKey, KeyRing, release, start
from tests.serve._support import adult_store, records, train_lgb


def _broken(store, like):
    """A version whose artifact is not a model: it cannot be exported or loaded."""
    return registry.register(
        store,
        "adult",
        artifact_sha=store.blobs.put_bytes(b"not a model"),
        flavor="lightgbm",
        task="classification",
        input_schema=like.input_schema,
        output_schema=like.output_schema,
    )


def _served(url, df):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = json.dumps({"rows": records(df, 1)}).encode()
        conn.request("POST", "/models/adult/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("keel-model-version")
    finally:
        conn.close()


def _wait_for(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


# -- the watch and release, quick -------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("swaps") / "proj"
    assert main(["init", str(root)]) == 0
    proj = open_project(root)
    store = proj.store
    df = adult("train").sample(2000, random_state=0)
    df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    v1 = train_lgb(store, "adult")
    v2 = train_lgb(store, "adult", alias=None, n_estimators=30)
    broken = _broken(store, v1)
    yield root, store, df, v1, v2, broken
    store.close()


def test_the_watch_follows_an_alias_move_without_an_admin_call(project):
    _, store, df, v1, v2, broken = project
    registry.set_alias(store, v1.ref, "production")
    with start(store, ["adult"], watch_seconds=0.2) as server:
        assert _served(server.url, df) == (200, v1.ref)
        registry.set_alias(store, v2.ref, "production", why="watch test")
        assert _wait_for(lambda: _served(server.url, df) == (200, v2.ref), 5)
        # a broken version: tried once, the old one keeps serving, not retried each poll
        failed = len(store.events("serve.reload_failed"))
        registry.set_alias(store, broken.ref, "production")
        assert _wait_for(lambda: len(store.events("serve.reload_failed")) == failed + 1, 5)
        time.sleep(1.0)
        assert len(store.events("serve.reload_failed")) == failed + 1
        assert _served(server.url, df) == (200, v2.ref)
        # moving back is picked up too (the slot last tried the broken one)
        registry.set_alias(store, v1.ref, "production")
        assert _wait_for(lambda: _served(server.url, df) == (200, v1.ref), 5)
    moves = [e["payload"] for e in store.events("serve.reload")]
    assert {"from": v1.ref, "to": v2.ref}.items() <= moves[-2].items()


def test_watch_seconds_zero_turns_the_watch_off(project):
    _, store, df, v1, v2, _ = project
    registry.set_alias(store, v1.ref, "production")
    with start(store, ["adult"], watch_seconds=0) as server:
        registry.set_alias(store, v2.ref, "production")
        time.sleep(0.8)
        assert _served(server.url, df) == (200, v1.ref)
        assert server.reload()[0]["to"] == v2.version
    with pytest.raises(KeelError, match="watch_seconds"):
        start(store, ["adult"], watch_seconds=-1)


def test_release_moves_the_alias_and_reloads_the_server_now(project, capsys, monkeypatch):
    root, store, df, v1, v2, broken = project
    registry.set_alias(store, v1.ref, "production")
    token, key = ApiKey.create("ops", ["predict", "admin"])
    with start(store, ["adult"], keys=KeyRing([key]), watch_seconds=0) as server:
        out = release(
            store, v2.ref, "production", why="better", server_url=server.url, api_key=token
        )
        assert out["model"] == v2.ref and out["version"] == v2.version
        assert out["reloaded"] == [
            {"model": "adult", "from": 1, "to": 2, "ok": True, "changed": True}
        ]
        assert server.app.slots["adult"].live.version == v2.version
        history = registry.alias_history(store, "adult")
        assert history[-1]["why"] == "better" and history[-1]["to_version"] == v2.version
        with pytest.raises(KeelError, match="401"):
            release(store, v1.ref, "production", server_url=server.url, api_key="wrong")
        # the CLI: a broken version is reported, and the old one keeps serving
        monkeypatch.setenv("KEEL_API_KEY", token)
        args = ["release", broken.ref, "production", "--server", server.url, "-C", str(root)]
        assert main([*args, "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["model"] == broken.ref and got["reloaded"][0]["ok"] is False
        assert server.app.slots["adult"].live.version == v2.version
        assert main(["release", v1.ref, "production", "--why", "back", "-C", str(root)]) == 0
        assert "adult@production" in capsys.readouterr().out
        assert server.app.slots["adult"].live.version == v2.version  # no --server, no watch
    registry.set_alias(store, v1.ref, "production")


# -- twenty swaps under open-loop load ---------------------------------------------------

BROKEN_AT = {6, 12, 18}  # versions 1..21: v1 serves first, then the alias moves 20 times
RATE = 200.0  # requests per second, scheduled by send time
THREADS = 4


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("swaps-load")
    store, df = adult_store(root)
    good, broken, first = [], [], None
    for v in range(1, 22):
        if v in BROKEN_AT:
            broken.append(_broken(store, first).version)
        else:
            mv = train_lgb(store, "adult", alias=None, n_estimators=20 + v)
            export(store, mv.ref)  # loading then only opens and warms the graph
            good.append(mv.version)
            first = first or mv
    assert good[0] == 1 and broken == sorted(BROKEN_AT)
    registry.set_alias(store, "adult/1", "production")
    yield store, df, good, broken
    store.close()


def _load(url, body, t0, stop, out, index):
    """One client thread of the open-loop load: request n is due at t0 + n / rate (threads
    staggered); a late request is sent at once, and its latency counts from when it was
    due, so a stall is not hidden by the requests it delayed. One keep-alive connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    per_thread = RATE / THREADS
    headers = {"Content-Type": "application/json"}
    for n in range(int(per_thread * 120)):  # bounded
        due = t0 + (n + index / THREADS) / per_thread
        if stop.is_set():
            break
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        sent = time.perf_counter()
        try:
            conn.request("POST", "/models/adult/predict", body, headers)
            resp = conn.getresponse()
            resp.read()
            status, version = resp.status, resp.getheader("keel-model-version")
        except Exception as exc:  # counted as a failure, then a fresh connection
            status, version = repr(exc), None
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        out.append((index, due, sent, time.perf_counter(), status, version))
    conn.close()


def _p99(latencies):
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


@pytest.mark.slow
def test_twenty_swaps_under_open_loop_load_answer_every_request(versions):
    store, df, good, broken = versions
    body = json.dumps({"rows": records(df, 2)}).encode()
    moves = list(range(2, 22))
    effective, now_serving = [], 1  # what serves after each move (a broken one: no change)
    for v in moves:
        now_serving = now_serving if v in broken else v
        effective.append(now_serving)
    with start(store, ["adult"]) as server:  # the watch is on too (default 2 s)
        results: list[tuple] = []
        stop = threading.Event()
        t0 = time.perf_counter() + 0.2
        threads = [
            threading.Thread(target=_load, args=(server.url, body, t0, stop, results, i))
            for i in range(THREADS)
        ]
        for t in threads:
            t.start()
        time.sleep(3.2)  # steady state first
        switches = []  # (started, completed) per move
        for v, expect in zip(moves, effective, strict=True):
            began = time.perf_counter()
            out = release(store, f"adult/{v}", "production", why="swap test", server_url=server.url)
            done = time.perf_counter()
            switches.append((began, done))
            (result,) = out["reloaded"]
            assert result["ok"] is (v not in broken), result
            assert server.app.slots["adult"].live.version == expect
            time.sleep(max(0.0, began + 0.6 - time.perf_counter()))
        time.sleep(1.5)  # steady state after
        stop.set()
        for t in threads:
            t.join(30)
        served = [e["payload"]["to"] for e in store.events("serve.reload")]
    elapsed = results and max(r[3] for r in results) - t0
    assert results and not any(t.is_alive() for t in threads)

    failed = [r for r in results if r[4] != 200]
    assert not failed, failed[:5]
    assert len(results) >= 0.9 * RATE * elapsed, (len(results), elapsed)  # the rate held

    def served_after(k: int) -> int:
        return effective[k - 1] if k else 1

    for _, _, sent, received, _, header in results:
        version = int(header.rsplit("/", 1)[1])
        assert version not in broken
        done_before = sum(1 for _, done in switches if done <= sent)
        began_before = sum(1 for began, _ in switches if began <= received)
        assert served_after(done_before) <= version <= served_after(began_before), (
            version,
            done_before,
            began_before,
        )
    for index in range(THREADS):  # each connection's versions never go backwards
        seen = [int(r[5].rsplit("/", 1)[1]) for r in results if r[0] == index]
        assert seen == sorted(seen)
    assert {int(r[5].rsplit("/", 1)[1]) for r in results} == set(good)
    assert not any(f"adult/{v}" in served for v in broken)

    first, last = switches[0][0], switches[-1][1]
    steady = [r[3] - r[1] for r in results if r[1] < first - 0.1 and r[1] > t0 + 0.5]
    during = [r[3] - r[1] for r in results if first <= r[1] <= last]
    p99_steady, p99_swaps = _p99(steady), _p99(during)
    swap_s = sorted(done - began for began, done in switches)
    print(
        f"\n{len(results)} requests in {elapsed:.1f} s ({len(results) / elapsed:.0f}/s), 0 failed;"
        f" 20 swaps in {last - first:.1f} s (each {swap_s[0] * 1000:.0f}-"
        f"{swap_s[-1] * 1000:.0f} ms, median {swap_s[10] * 1000:.0f} ms);"
        f" p99 steady {p99_steady * 1000:.1f} ms ({len(steady)} requests),"
        f" p99 during swaps {p99_swaps * 1000:.1f} ms ({len(during)} requests)"
    )
    assert p99_swaps < 1.0
