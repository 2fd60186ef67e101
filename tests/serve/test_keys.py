"""API keys over a server's life: a revoked key stops working without a restart (the key
file is followed, and reread on SIGHUP), concurrent ``keel key`` commands lose nothing,
/metrics needs a key when the server has keys, and loopback is loopback however spelt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from keel.errors import InvalidInput, NotFound
from keel.serve import KeyRing, add_key, is_loopback, revoke_key, start
from tests.serve._support import adult_store, assert_clean_error, call, train_lgb

KEEL = str(Path(sys.executable).parent / "keel")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    store, _ = adult_store(root, rows=500)
    train_lgb(store, "adult")
    yield store
    store.close()


def _status(url: str, token: str, path: str = "/models") -> int:
    return call(url, "GET", path, headers={"Authorization": f"Bearer {token}"})[0]


def _until(predicate, within: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def test_a_revoked_key_is_refused_without_a_restart(store, tmp_path):
    path = tmp_path / "keys.json"
    gone, _ = add_key(path, "gateway", ["predict"])
    kept, _ = add_key(path, "ops", ["admin"])
    with start(store, ["adult"], keys=KeyRing.from_file(path)) as server:
        assert _status(server.url, gone) == 200 and _status(server.url, kept) == 200
        out = subprocess.run(
            [KEEL, "key", "revoke", "gateway", "--keys", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        took = _until(lambda: _status(server.url, gone) == 401, 5)
        assert took is not None and took < 2.0, took
        status, _, data = call(
            server.url, "GET", "/models", headers={"Authorization": f"Bearer {gone}"}
        )
        assert "revoked" in assert_clean_error(data, "unauthorized")["message"]
        assert _status(server.url, kept) == 200
        new, _ = add_key(path, "gateway-2", ["predict"])
        assert _until(lambda: _status(server.url, new) == 200, 5) is not None
        # a file that no longer parses refuses every key until it is fixed
        good = path.read_text()
        path.write_text("{not json")
        assert _until(lambda: _status(server.url, kept) == 401, 5) is not None
        tmp = path.with_name("k.tmp")
        tmp.write_text(good)
        os.replace(tmp, path)
        assert _until(lambda: _status(server.url, kept) == 200, 5) is not None


_SERVE = textwrap.dedent(
    """
    import sys
    from keel.serve import KeyRing, serve
    from keel.store import Store

    db, blobs, keys, port = sys.argv[1:5]
    ring = KeyRing.from_file(keys, check_every=3600)  # only SIGHUP rereads it
    serve(Store.open(db, blobs), ["adult"], port=int(port), keys=ring, watch_seconds=0,
          log_level="warning")
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sighup_rereads_the_keys(store, tmp_path):
    path = tmp_path / "keys.json"
    token, _ = add_key(path, "gateway", ["predict"])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, store.url, str(store.blobs.root), str(path), str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                return call(url, "GET", "/readyz")[0] == 200
            except OSError:
                return False

        assert _until(ready, 120) is not None
        assert _status(url, token) == 200
        revoke_key(path, "gateway")
        time.sleep(1.5)
        assert _status(url, token) == 200  # no polling in this server: only SIGHUP
        proc.send_signal(signal.SIGHUP)
        assert _until(lambda: _status(url, token) == 401, 5) is not None
        assert proc.poll() is None  # SIGHUP did not end it
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


_KEY_CMD = textwrap.dedent(
    """
    import os, sys, time
    import keel.cli._serve_cmds  # the import is done before the race starts
    from keel.cli import main

    go = sys.argv[1]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.slow
def test_concurrent_key_commands_lose_nothing(tmp_path):
    """12 ``keel key NAME`` commands, imported first and then released at once, all add
    to one key file: every key is there."""
    path, go, n = tmp_path / "keys.json", tmp_path / "go", 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _KEY_CMD, str(go), "key", f"client-{i}"]
            + ["--keys", str(path), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    tokens = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        got = json.loads(out)
        tokens[got["name"]] = got["token"]
    ring = KeyRing.from_json(path.read_text())
    assert sorted(k.name for k in ring.keys) == sorted(f"client-{i}" for i in range(n))
    assert all(ring.check(t).name == name for name, t in tokens.items())
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_key_file_changes_name_what_is_wrong(tmp_path):
    path = tmp_path / "keys.json"
    add_key(path, "a")
    with pytest.raises(InvalidInput, match="already in"):
        add_key(path, "a")
    with pytest.raises(NotFound, match="'b' is not in .*its keys: a"):
        revoke_key(path, "b")
    assert [k.name for k in revoke_key(path, "a")] == ["a"]
    assert KeyRing.from_json(path.read_text()).keys == []
    out = subprocess.run(
        [KEEL, "key", "revoke", "--keys", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "name the key to revoke" in out.stdout + out.stderr


def test_metrics_needs_a_key_when_the_server_has_keys(store, tmp_path):
    path = tmp_path / "keys.json"
    token, _ = add_key(path, "scraper", ["predict"])
    with start(store, ["adult"], keys=KeyRing.from_file(path)) as server:
        status, _, data = call(server.url, "GET", "/metrics")
        assert status == 401 and assert_clean_error(data, "unauthorized")
        assert _status(server.url, token, "/metrics") == 200
        assert call(server.url, "GET", "/readyz")[0] == 200  # health stays public
        doc = json.loads(
            call(
                server.url,
                "GET",
                "/openapi.json",
                headers={"Authorization": f"Bearer {token}"},
            )[2]
        )
        assert "401" in doc["paths"]["/metrics"]["get"]["responses"]
    with start(store, ["adult"], keys=KeyRing.from_file(path), public_metrics=True) as server:
        assert call(server.url, "GET", "/metrics")[0] == 200
        assert call(server.url, "GET", "/models")[0] == 401
    with start(store, ["adult"]) as server:  # no keys: nothing needs one
        assert call(server.url, "GET", "/metrics")[0] == 200


LOOPBACK = ["127.0.0.1", "127.1", "127.0.0.2", "0x7f.1", "::1", "[::1]", "0:0:0:0:0:0:0:1"]
LOOPBACK += ["localhost", "::ffff:127.0.0.1"]
NOT_LOOPBACK = ["0.0.0.0", "0", "", "::", "10.0.0.1", "128.0.0.1", "host.invalid", "1.2.3.4"]


def test_loopback_spellings():
    assert [h for h in LOOPBACK if not is_loopback(h)] == []
    assert [h for h in NOT_LOOPBACK if is_loopback(h)] == []


@pytest.mark.parametrize("host", ["127.1", "127.0.0.2", "::1", "0:0:0:0:0:0:0:1", "localhost"])
def test_a_loopback_spelling_may_listen_without_keys(store, host):
    with start(store, ["adult"], host=host) as server:
        assert call(server.url, "GET", "/readyz")[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "host.invalid"])
def test_non_loopback_without_keys_stays_refused(store, host):
    with pytest.raises(InvalidInput, match="without API keys"):
        start(store, ["adult"], host=host)
