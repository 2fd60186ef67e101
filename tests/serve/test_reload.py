"""Reloads: a moved alias is loaded, warmed and swapped in at once; a version that fails to
load leaves the old one serving; each outcome is an event in the store."""

from __future__ import annotations

import threading

import pytest

from keel import registry
from keel.errors import KeelError
from keel.serve import start
from tests.serve._support import (
    adult_store,
    assert_clean_error,
    call,
    call_json,
    metric,
    records,
    train_lgb,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reload")
    store, df = adult_store(root)
    v1 = train_lgb(store, "adult")
    v2 = train_lgb(store, "adult", alias=None, n_estimators=30)
    broken = registry.register(
        store,
        "adult",
        artifact_sha=store.blobs.put_bytes(b"not a model"),
        flavor="lightgbm",
        task="classification",
        input_schema=v1.input_schema,
        output_schema=v1.output_schema,
    )
    registry.set_alias(store, broken.ref, "broken")
    yield store, df, v1, v2, broken
    store.close()


def predict(url, df):
    status, headers, data = call(url, "POST", "/models/adult/predict", {"rows": records(df, 2)})
    import json

    return status, headers.get("keel-model-version"), json.loads(data)


def test_reload_swaps_in_the_version_the_alias_moved_to(models):
    store, df, v1, v2, _ = models
    registry.set_alias(store, v1.ref, "production")
    assert "export.onnx" not in registry.get_version(store, v2.ref).tags
    with start(store, ["adult"]) as server:
        assert predict(server.url, df)[1] == "adult/1"
        registry.set_alias(store, v2.ref, "production")
        status, body = call_json(server.url, "POST", "/admin/reload")
        assert status == 200
        assert body["reloaded"] == [
            {"model": "adult", "from": 1, "to": 2, "ok": True, "changed": True}
        ]
        status, header, answer = predict(server.url, df)
        assert status == 200 and header == "adult/2" and answer["version"] == 2
        text = call(server.url, "GET", "/metrics")[2].decode()
        assert metric(text, "keel_model_loaded", model="adult", version="2") == 1
        assert metric(text, "keel_model_loaded", model="adult", version="1") == 0
    assert "export.onnx" in registry.get_version(store, v2.ref).tags  # exported on load
    moves = [e["payload"] for e in store.events("serve.reload")]
    assert {"from": "adult/1", "to": "adult/2"}.items() <= moves[-1].items()


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(models):
    store, df, _, v2, broken = models
    registry.set_alias(store, v2.ref, "production")
    with start(store, ["adult"]) as server:
        registry.set_alias(store, broken.ref, "production")
        status, body = call_json(server.url, "POST", "/admin/reload?model=adult")
        assert status == 200
        (result,) = body["reloaded"]
        assert result["ok"] is False and result["from"] == 2 and result["error"]["code"]
        assert "not a model" not in str(body) and "/" not in str(result)
        assert predict(server.url, df)[1] == "adult/2"
        assert call(server.url, "GET", "/readyz")[0] == 200
        failed = store.events("serve.reload_failed")[-1]["payload"]
        assert failed["from"] == "adult/2" and failed["to"] is None and failed["error"]
        status, _, data = call(server.url, "POST", "/admin/reload?model=nope")
        assert status == 404 and assert_clean_error(data, "model_not_found")
    registry.set_alias(store, v2.ref, "production")


def test_swap_under_traffic_answers_every_request(models):
    store, df, v1, v2, _ = models
    registry.set_alias(store, v1.ref, "production")
    with start(store, ["adult"]) as server:
        seen: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def client() -> None:
            for _ in range(5000):  # bounded
                if stop.is_set():
                    return
                status, header, _ = predict(server.url, df)
                seen.append((status, header))

        thread = threading.Thread(target=client)
        thread.start()
        for _ in range(500):
            if len(seen) >= 20:
                break
            threading.Event().wait(0.01)
        registry.set_alias(store, v2.ref, "production")
        assert server.reload()[0]["to"] == 2
        count = len(seen)
        for _ in range(500):
            if len(seen) >= count + 20:
                break
            threading.Event().wait(0.01)
        stop.set()
        thread.join(30)
    assert all(status == 200 for status, _ in seen)
    versions = [h for _, h in seen]
    assert versions[0] == "adult/1" and versions[-1] == "adult/2"
    first_new = versions.index("adult/2")
    assert set(versions[first_new:]) == {"adult/2"}  # no request went back to the old one


def test_startup_fails_naming_what_did_not_load(models):
    store = models[0]
    with pytest.raises(KeelError, match="adult"):
        start(store, ["adult@broken"])
    with pytest.raises(KeelError, match="no model named .nope. is registered"):
        start(store, ["nope"])


def test_pinned_and_renamed_routes(models):
    store, df, v1, v2, _ = models
    registry.set_alias(store, v2.ref, "production")
    with start(store, ["old=adult/1", "adult"]) as server:
        status, body = call_json(
            server.url, "POST", "/models/old/predict", {"rows": records(df, 1)}
        )
        assert status == 200 and body["model"] == "old" and body["version"] == 1
        assert predict(server.url, df)[1] == "adult/2"
        status, body = call_json(server.url, "GET", "/models")
        assert [(m["name"], m["version"]) for m in body["models"]] == [("old", 1), ("adult", 2)]


def test_serve_blocks_until_sigterm_and_stops_cleanly(models, tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time

    store = models[0]
    registry.set_alias(store, models[3].ref, "production")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = (
        "import sys\n"
        "from keel.store import Store\n"
        "from keel.serve import serve\n"
        "serve(Store.open(sys.argv[1], sys.argv[2]), ['adult'], port=int(sys.argv[3]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, store.url, str(store.blobs.root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url, status = f"http://127.0.0.1:{port}", None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = call(url, "GET", "/readyz")[0]
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, proc.stderr.read().decode() if proc.poll() is not None else ""
        assert predict(url, models[1])[1] == "adult/2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
        log = proc.stderr.read().decode()
        assert "route 'adult' now serves adult/2" in log and "shutdown complete" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
