"""Releases: weighted variants (canary), sticky keys, a shadow that never reaches the
caller, per-variant reloads, and refused configs."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter

import pytest

from keel import registry
from keel.errors import InvalidInput
from keel.serve import MemorySink, Release, comparison, create_app, start
from tests.serve._support import (
    TIMEOUT,
    adult_store,
    call,
    call_json,
    metric,
    records,
    train_lgb,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    store, df = adult_store(root)
    v1 = train_lgb(store, "adult")
    v2 = train_lgb(store, "adult", alias="candidate", n_estimators=30)
    v3 = train_lgb(store, "adult", alias="challenger", n_estimators=10, num_leaves=7)
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
    yield store, df, v1, v2, v3
    store.close()


def _post_many(url, path, bodies, headers_of=lambda i: {}, threads=4):
    """POST each body over keep-alive connections from a few threads; (i, status,
    version header, body) for each."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    out: list[tuple[int, int, str | None, dict]] = []
    lock = threading.Lock()

    def worker(indices):
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            for i in indices:
                hdrs = {"Content-Type": "application/json", **headers_of(i)}
                conn.request("POST", path, body=json.dumps(bodies[i]).encode(), headers=hdrs)
                resp = conn.getresponse()
                data = json.loads(resp.read())
                with lock:
                    out.append((i, resp.status, resp.getheader("keel-model-version"), data))
        finally:
            conn.close()

    pool = [
        threading.Thread(target=worker, args=(range(t, len(bodies), threads),))
        for t in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert len(out) == len(bodies)
    return sorted(out, key=lambda r: r[0])


def _wait_for(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.slow
def test_canary_weight_holds_over_10000_requests_and_the_routing_function(models):
    store, df, v1, v2, _ = models
    release = Release("adult", {"production": 90, "candidate": 10}, seed=7)
    with start(store, [release]) as server:
        slot = server.app.slots["adult"]
        draws = Counter(slot.choose() for _ in range(10_000))  # the server's own routing
        assert abs(draws["candidate"] / 10_000 - 0.10) <= 0.015
        keyed = Counter(slot.choose(f"user-{i}") for i in range(10_000))  # sticky hash
        assert abs(keyed["candidate"] / 10_000 - 0.10) <= 0.015

        n = 10_000  # real requests over keep-alive connections, counted by version header
        row = {"rows": records(df, 1)}
        results = _post_many(server.url, "/models/adult/predict", [row] * n)
        assert all(status == 200 for _, status, _, _ in results)
        seen = Counter(header for _, _, header, _ in results)
        assert set(seen) <= {v1.ref, v2.ref}
        assert all(body["version"] == int(h.split("/")[1]) for _, _, h, body in results)
        assert abs(seen[v2.ref] / n - 0.10) <= 0.015

        status, info = call_json(server.url, "GET", "/admin/release/adult")
        assert status == 200 and info["requests"] == n
        by_variant = {v["variant"]: v for v in info["variants"]}
        assert by_variant["production"]["requests"] == seen[v1.ref]
        assert by_variant["candidate"]["requests"] == seen[v2.ref]
        assert (by_variant["candidate"]["weight"], by_variant["candidate"]["version"]) == (10, 2)
        assert info["shadow"] is None and info["sticky_header"] == "x-keel-key"

        text = call(server.url, "GET", "/metrics")[2].decode()
        assert (
            metric(text, "keel_release_requests_total", variant="candidate", version="2")
            == seen[v2.ref]
        )
        assert metric(text, "keel_requests_total", model="adult", version="2") == seen[v2.ref]
        assert metric(text, "keel_requests_total", model="adult", version="1") == seen[v1.ref]


def test_the_same_key_always_gets_the_same_version(models):
    store, df, *_ = models
    release = Release("adult", {"production": 50, "candidate": 50}, sticky_header="X-User")
    with start(store, [release]) as server:
        row = records(df, 1)
        bodies = [{"rows": row} for i in range(200)]
        results = _post_many(
            server.url, "/models/adult/predict", bodies, lambda i: {"x-user": f"key-{i % 20}"}
        )
        by_key: dict[str, set[str]] = {}
        for i, status, header, _ in results:
            assert status == 200
            by_key.setdefault(f"key-{i % 20}", set()).add(header)
        assert len(by_key) == 20 and all(len(v) == 1 for v in by_key.values())
        assert len({next(iter(v)) for v in by_key.values()}) == 2  # both variants in use

        # the key may also come in the keel JSON body; it hashes the same as the header
        keyed = [{"rows": row, "key": f"key-{i % 20}"} for i in range(40)]
        for i, status, header, _ in _post_many(server.url, "/models/adult/predict", keyed):
            assert status == 200 and {header} == by_key[f"key-{i % 20}"]

        # an integer key written as JSON's 1e3 (JSON Schema's "integer" too) is the key 1000
        as_int = _post_many(server.url, "/models/adult/predict", [{"rows": row, "key": 1000}])
        raw = b'{"rows": %s, "key": 1e3}' % json.dumps(row).encode()
        status, headers, _ = call(server.url, "POST", "/models/adult/predict", raw)
        assert as_int[0][1] == status == 200
        assert headers["keel-model-version"] == as_int[0][2]


def test_shadow_gets_copies_and_never_reaches_the_caller(models):
    store, df, v1, _, v3 = models
    sink = MemorySink()
    release = Release("adult", {"production": 100}, shadow="challenger")
    with start(store, [release, "plain=adult"], sink=sink) as server:
        n = 20
        bodies = [{"rows": records(df, 2, start=2 * i)} for i in range(n)]
        results = _post_many(server.url, "/models/adult/predict", bodies, threads=2)
        plain = _post_many(server.url, "/models/plain/predict", bodies, threads=2)
        for (_, status, header, body), (_, _, _, expected) in zip(results, plain, strict=True):
            assert status == 200 and header == v1.ref and body["version"] == 1
            assert body["predictions"] == expected["predictions"]
        ids = {body["request_id"] for _, _, _, body in results}
        shadow_ids = lambda: {e["request_id"] for e in sink.entries if e["version"] == v3.version}  # noqa: E731
        assert _wait_for(lambda: shadow_ids() == ids)
        pairs = comparison(sink, "adult")["pairs"]
        assert pairs[f"1:{v3.version}"]["rows"] == 2 * n  # the plain route's ids differ
        assert 0 <= pairs[f"1:{v3.version}"]["agreement"] <= 1

        status, info = call_json(server.url, "GET", "/admin/release/adult")
        assert info["shadow"]["version"] == v3.version and info["shadow"]["sent"] == n
        assert _wait_for(
            lambda: call_json(server.url, "GET", "/admin/release/adult")[1]["shadow"]["ok"] == n
        )
        text = call(server.url, "GET", "/metrics")[2].decode()
        assert (
            metric(text, "keel_shadow_requests_total", version=str(v3.version), outcome="ok") == n
        )
        assert metric(text, "keel_batch_rows_count", model="adult", version=str(v3.version)) >= 1
        assert metric(text, "keel_requests_total", model="adult", version=str(v3.version)) == 0


def test_a_failing_shadow_never_changes_the_callers_answer(models):
    store, df, v1, *_ = models
    row = {"rows": records(df, 1)}
    # a shadow that cannot load: the server still starts and answers
    with start(store, [Release("adult", {"production": 1}, shadow="broken")]) as server:
        results = _post_many(server.url, "/models/adult/predict", [row] * 10, threads=2)
        assert all(s == 200 and h == v1.ref for _, s, h, _ in results)
        assert _wait_for(
            lambda: (
                call_json(server.url, "GET", "/admin/release/adult")[1]["shadow"]["failed"] == 10
            )
        )
    # a shadow whose session raises
    with start(store, [Release("adult", {"production": 1}, shadow="challenger")]) as server:
        expected = _post_many(server.url, "/models/adult/predict", [row])[0][3]["predictions"]
        # that request's own shadow copy must finish before the session is broken
        assert _wait_for(
            lambda: call_json(server.url, "GET", "/admin/release/adult")[1]["shadow"]["ok"] == 1
        )
        shadow = server.app.slots["adult"].shadow.live

        def boom(feed):
            raise RuntimeError("shadow session exploded")

        shadow.batcher.run = boom
        results = _post_many(server.url, "/models/adult/predict", [row] * 10, threads=2)
        for _, status, header, body in results:
            assert status == 200 and header == v1.ref and body["predictions"] == expected
            assert "exploded" not in json.dumps(body)
        assert _wait_for(
            lambda: (
                call_json(server.url, "GET", "/admin/release/adult")[1]["shadow"]["failed"] == 10
            )
        )
        text = call(server.url, "GET", "/metrics")[2].decode()
        assert metric(text, "keel_shadow_requests_total", outcome="error") == 10


def test_reload_re_resolves_each_variant_and_a_failure_keeps_the_old_one(models):
    store, df, v1, v2, v3 = models
    release = Release("adult", {"production": 50, "candidate": 50}, shadow="challenger")
    with start(store, [release]) as server:
        try:
            registry.set_alias(store, v3.ref, "candidate")
            registry.set_alias(store, "adult@broken", "challenger")
            status, body = call_json(server.url, "POST", "/admin/reload?model=adult")
            assert status == 200
            got = {r["variant"]: r for r in body["reloaded"]}
            assert got["production"]["ok"] and not got["production"]["changed"]
            assert got["candidate"] == {
                "model": "adult",
                "variant": "candidate",
                "from": 2,
                "to": 3,
                "ok": True,
                "changed": True,
            }
            assert got["shadow:challenger"]["ok"] is False
            slot = server.app.slots["adult"]
            assert slot.shadow.live.version == 3  # the old shadow keeps serving
            rows = [{"rows": records(df, 1)}] * 40
            seen = {h for _, s, h, _ in _post_many(server.url, "/models/adult/predict", rows)}
            assert seen == {v1.ref, v3.ref}
            assert call_json(server.url, "GET", "/readyz")[0] == 200
        finally:
            registry.set_alias(store, v2.ref, "candidate")
            registry.set_alias(store, v3.ref, "challenger")


def test_bad_release_config_is_refused_naming_the_field(models):
    store = models[0]
    cases = [
        (Release("adult", {"production": 0}), r"variants\['production'\]: weight must be > 0"),
        (Release("adult", {"production": -5}), r"variants\['production'\]"),
        (Release("adult", {"production": "x"}), r"variants\['production'\]"),
        (Release("adult", {"production": True}), r"variants\['production'\]"),
        (Release("adult", {}), r"release 'adult': variants"),
        (Release("adult", {"nope": 10}), r"variants\['nope'\]: adult@nope does not resolve"),
        (Release("adult", {"99": 10}), r"variants\['99'\]: adult/99 does not resolve"),
        (Release("adult", shadow="nope"), r"shadow: adult@nope does not resolve"),
        (Release("adult", sticky_header=""), r"sticky_header"),
        (Release("adult", model="ghost"), r"variants\['production'\]: ghost@production"),
    ]
    for release, message in cases:
        with pytest.raises(InvalidInput, match=message):
            create_app(store, [release])
    with pytest.raises(InvalidInput, match="given twice"):
        create_app(store, [Release("adult"), "adult"])


def test_admin_release_of_a_plain_route_is_not_found(models):
    store = models[0]
    with start(store, ["adult"]) as server:
        status, body = call_json(server.url, "GET", "/admin/release/adult")
        assert status == 404 and "not a release" in body["error"]["message"]


def test_a_changed_release_file_is_applied_and_a_bad_one_keeps_the_running_release(
    models, tmp_path
):
    """``release_file``: weights change in place (the loaded versions stay), a new variant is
    loaded before the swap, and a file keel refuses (bad YAML, an added route) changes
    nothing and is recorded."""
    store, df, v1, v2, v3 = models
    path = tmp_path / "release.yaml"
    path.write_text("name: adult\nvariants: {production: 100}\n")
    rows = [{"rows": records(df, 1)}] * 40

    def versions() -> set[str]:
        return {h for _, s, h, _ in _post_many(server.url, "/models/adult/predict", rows)}

    def failures() -> int:
        return len(store.events("serve.release_failed"))

    with start(store, [Release("adult", {"production": 100})], release_file=str(path),
               watch_seconds=0.1) as server:  # fmt: skip
        first = server.app.slots["adult"]
        production = first.variants["production"]
        assert versions() == {v1.ref}

        # a new variant, pinned version 3, with nearly all the weight
        path.write_text("name: adult\nvariants: {production: 1, '3': 1000000}\n")
        assert _wait_for(lambda: "3" in server.app.slots["adult"].variants, 30)
        assert versions() == {v3.ref}
        now = server.app.slots["adult"]
        assert now.variants["production"] is production  # kept, not reloaded
        assert now.counts["production"] == first.counts["production"]

        # weights only: the same loaded slots, the weight moves back
        path.write_text("name: adult\nvariants: {production: 1000000, '3': 1}\n")
        assert _wait_for(lambda: dict(server.app.slots["adult"].weights)["3"] == 1.0, 30)
        assert versions() == {v1.ref}
        assert server.app.slots["adult"].variants["3"] is now.variants["3"]

        before = failures()
        for bad, why in (
            ("name: adult\nvariants: {production: [}\n", "not valid YAML"),
            ("releases:\n- {name: adult}\n- {name: other, model: adult}\n", "adds route"),
            ("name: adult\nvariants: {production: 1, nosuchalias: 5}\n", "does not resolve"),
        ):
            path.write_text(bad)
            assert _wait_for(lambda: failures() > before, 30), bad  # noqa: B023
            event = store.events("serve.release_failed")[-1]
            assert why in event["payload"]["error"], event
            before = failures()
            assert versions() == {v1.ref}  # the running release stays
        assert server.app.slots["adult"].variants["production"] is production
        moved = [e for e in store.events("serve.release") if e["subject"] == str(path)]
        assert [e["payload"]["variants"] for e in moved][-2:] == [
            {"production": 1.0, "3": 1000000.0},
            {"production": 1000000.0, "3": 1.0},
        ]
