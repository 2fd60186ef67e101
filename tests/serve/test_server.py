"""The model server, live on 127.0.0.1: the three protocols (Triton's own client for the
Open Inference Protocol), health, metrics, OpenAPI, and micro-batching under concurrency."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest

from keel import registry
from keel.serve import MemorySink, start
from keel.train import train
from tests.serve._support import (
    adult_store,
    call,
    call_json,
    metric,
    records,
    train_lgb,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    store, df = adult_store(root)
    mv = train_lgb(store, "adult")
    reg = train(store, "adult", "age", params={"n_estimators": 10}, seed=2).register(store, "age")
    registry.set_alias(store, reg.ref, "production")
    sink = MemorySink()
    server = start(store, ["adult", "age"], sink=sink, max_request_rows=500)
    yield server, store, df, mv, sink
    server.stop()
    store.close()


@pytest.fixture(scope="module")
def native(served):
    _, store, df, mv, _ = served
    return registry.load(store, mv.ref)


@pytest.fixture(scope="module")
def triton(served):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(
        served[0].url.removeprefix("http://"), connection_timeout=30, network_timeout=30
    )
    yield client
    client.close()


def tensors(rows, binary):
    """Triton InferInputs for ``rows``: BYTES for text columns, FP32 for numbers."""
    import tritonclient.http as httpclient

    out = []
    for name in rows[0]:
        values = [r[name] for r in rows]
        if any(isinstance(v, str) for v in values):
            arr = np.array([[v or ""] for v in values], dtype=object)
            t = httpclient.InferInput(name, [len(rows), 1], "BYTES")
        else:
            arr = np.array([[np.nan if v is None else v] for v in values], dtype=np.float32)
            t = httpclient.InferInput(name, [len(rows), 1], "FP32")
        t.set_data_from_numpy(arr, binary_data=binary)
        out.append(t)
    return out


# -- Open Inference Protocol v2 through Triton's client ---------------------------------


def test_v2_health_and_metadata(triton, served):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("adult") and triton.is_model_ready("adult", "1")
    assert not triton.is_model_ready("nope")
    meta = triton.get_model_metadata("adult")
    assert meta["versions"] == ["1"]
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["age"] == {"name": "age", "datatype": "FP32", "shape": [-1, 1]}
    assert inputs["workclass"]["datatype"] == "BYTES"
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP32", [-1, 2]),
    ]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_infer_matches_the_native_model(triton, served, native, binary):
    import tritonclient.http as httpclient

    _, _, df, _, _ = served
    rows = records(df, 64, start=100)
    rows[0]["workclass"] = None  # missing text
    if binary:
        rows[1]["age"] = None  # missing number: NaN, which JSON cannot carry
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")
    ]
    result = triton.infer("adult", tensors(rows, binary), outputs=outputs)
    probs = result.as_numpy("probabilities")
    frame = df.drop(columns=["income"]).iloc[100:164].copy()
    frame.iloc[0, frame.columns.get_loc("workclass")] = None
    if binary:
        frame.iloc[1, frame.columns.get_loc("age")] = np.nan
    np.testing.assert_allclose(probs, native.predict_proba(frame), atol=1e-5)
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
    assert labels == list(native.predict(frame))
    assert result.get_response()["model_version"] == "1"


def test_v2_infer_by_version_and_default_outputs(triton, served, native):
    _, _, df, _, _ = served
    rows = records(df, 3)
    result = triton.infer("adult", tensors(rows, True), model_version="1")
    assert result.as_numpy("probabilities").shape == (3, 2)
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="does not serve version '7'"):
        triton.infer("adult", tensors(rows, False), model_version="7")


def test_v2_wrong_datatype_is_422_naming_the_input(served):
    url = served[0].url
    rows = records(served[2], 1)
    inputs = [
        {
            "name": k,
            "shape": [1, 1],
            "datatype": "FP32" if k != "workclass" else "BYTES",
            "data": [v],
        }
        for k, v in rows[0].items()
    ]
    status, body = call_json(url, "POST", "/v2/models/adult/infer", {"inputs": inputs})
    assert status == 422
    assert body["code"] == "invalid_input" and "education" in body["error"]
    fields = {d["field"] for d in body["details"]}
    assert "education" in fields and "workclass" not in fields


# -- keel JSON and MLflow ---------------------------------------------------------------


def test_predict_names_the_version_and_echoes_the_request_id(served, native):
    url, df = served[0].url, served[2]
    rows = records(df, 5)
    status, headers, data = call(
        url, "POST", "/models/adult/predict", {"rows": rows}, headers={"x-request-id": "abc-1"}
    )
    import json

    body = json.loads(data)
    assert status == 200 and headers["keel-model-version"] == "adult/1"
    assert headers["x-request-id"] == "abc-1" == body["request_id"]
    assert body["model"] == "adult" and body["version"] == 1
    want = native.predict_proba(df.drop(columns=["income"]).iloc[:5])
    got = [[p["probabilities"]["<=50K"], p["probabilities"][">50K"]] for p in body["predictions"]]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert [p["label"] for p in body["predictions"]] == list(native.predict(df.iloc[:5]))


def test_regression_route(served):
    url, df = served[0].url, served[2]
    rows = [
        {k: v for k, v in r.items() if k != "age"} | {"income": "<=50K"} for r in records(df, 3)
    ]
    status, body = call_json(url, "POST", "/models/age/predict", {"rows": rows})
    assert status == 200, body
    assert all(isinstance(p["prediction"], float) for p in body["predictions"])
    status, body = call_json(url, "POST", "/invocations?model=age", {"dataframe_records": rows})
    assert status == 200 and len(body["predictions"]) == 3 and body["version"] == 1


def test_invocations_three_formats_agree(served, native):
    url, df = served[0].url, served[2]
    rows = records(df, 4)
    cols = list(rows[0])
    bodies = {
        "dataframe_split": {"columns": cols, "data": [[r[c] for c in cols] for r in rows]},
        "dataframe_records": rows,
        "inputs": {c: [r[c] for r in rows] for c in cols},
    }
    want = list(native.predict(df.iloc[:4]))
    for key, payload in bodies.items():
        status, headers, data = call(url, "POST", "/invocations", {key: payload})
        assert status == 200, (key, data)
        import json

        body = json.loads(data)
        assert body["predictions"] == want, key
        assert np.asarray(body["probabilities"]).shape == (4, 2)
        assert headers["keel-model-version"] == "adult/1"
    status, body = call_json(url, "POST", "/invocations", {"dataframe_records": rows, "inputs": {}})
    assert status == 400 and "exactly one of" in body["error"]["message"]
    assert body["error_code"] == "BAD_REQUEST"  # MLflow's shape beside keel's


# -- health, metrics, docs, the prediction sink -----------------------------------------


def test_health_ready_metrics_and_openapi(served):
    url, df = served[0].url, served[2]
    assert call_json(url, "GET", "/healthz") == (200, {"status": "ok"})
    status, body = call_json(url, "GET", "/readyz")
    assert status == 200 and body["models"] == {"adult": "adult/1", "age": "age/1"}
    before = call(url, "GET", "/metrics")[2].decode()
    call(url, "POST", "/models/adult/predict", {"rows": records(df, 2)})
    call(url, "POST", "/models/adult/predict", {"rows": [{"age": "x"}]})
    after = call(url, "GET", "/metrics")[2].decode()
    labels = {"model": "adult", "version": "1", "endpoint": "/models/{name}/predict"}
    assert metric(after, "keel_requests_total", **labels, status="200") == (
        metric(before, "keel_requests_total", **labels, status="200") + 1
    )
    assert metric(after, "keel_errors_total", model="adult", code="invalid_input") == (
        metric(before, "keel_errors_total", model="adult", code="invalid_input") + 1
    )
    assert metric(after, "keel_request_duration_seconds_count", **labels) > 0
    assert metric(after, "keel_batch_rows_sum", model="adult") >= 2
    status, doc = call_json(url, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {"/v2/models/{name}/infer", "/models/{name}/predict", "/invocations"} <= set(
        doc["paths"]
    )
    row = doc["components"]["schemas"]["Row"]["oneOf"][0]
    assert row["properties"]["age"] == {"type": ["number", "null"]}


def test_predictions_reach_the_sink(served):
    url, df, sink = served[0].url, served[2], served[4]
    call(
        url,
        "POST",
        "/models/adult/predict",
        {"rows": records(df, 3)},
        headers={"x-request-id": "sink-1"},
    )
    for _ in range(200):  # the sink is fed after the answer; wait a little, bounded
        mine = [e for e in sink.entries if e["request_id"] == "sink-1"]
        if len(mine) == 3:
            break
        threading.Event().wait(0.01)
    assert len(mine) == 3
    assert mine[0]["model"] == "adult" and mine[0]["version"] == 1
    assert mine[0]["inputs"]["workclass"] == records(df, 1)[0]["workclass"]
    assert set(mine[0]["outputs"]) == {"label", "probabilities"} and mine[0]["latency_ms"] > 0


# -- micro-batching ---------------------------------------------------------------------


def _send_all_but_last_byte(port: int, bodies: list[bytes]) -> list[socket.socket]:
    socks = []
    for body in bodies:
        head = (
            "POST /models/adult/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(head + body[:-1])
        socks.append(s)
    return socks


def _read_json(s: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := s.recv(65536):  # the server closes (Connection: close); recv times out
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_concurrent_requests_are_merged_and_each_gets_its_answer(served, native):
    _, store, df, _, _ = served
    with start(store, ["adult"], max_wait_ms=1000) as server:
        rows = records(df, 32, start=200)
        want = native.predict_proba(df.drop(columns=["income"]).iloc[200:232])
        bodies = [json.dumps({"rows": [r]}).encode() for r in rows]
        socks = _send_all_but_last_byte(server.port, bodies)
        threading.Event().wait(0.3)  # the server reads the heads: 32 requests are arriving
        for s, body in zip(socks, bodies, strict=True):
            s.sendall(body[-1:])
        answers = [_read_json(s) for s in socks]
        for i, (status, body) in enumerate(answers):
            assert status == 200
            p = body["predictions"][0]["probabilities"]
            np.testing.assert_allclose([p["<=50K"], p[">50K"]], want[i], atol=1e-5)
        assert len({b["request_id"] for _, b in answers}) == 32
        text = call(server.url, "GET", "/metrics")[2].decode()
        runs = metric(text, "keel_batch_rows_count", model="adult")
        merged = metric(text, "keel_batch_rows_sum", model="adult")
        assert merged == 32 and runs < 32  # fewer session runs than requests
        assert metric(text, "keel_batch_requests_sum", model="adult") / runs > 1


def test_concurrent_clients_each_get_their_own_answer(served, native):
    server, _, df, _, _ = served
    url = server.url
    rows = records(df, 32, start=300)
    want = native.predict_proba(df.drop(columns=["income"]).iloc[300:332])
    results: dict[int, tuple] = {}
    gate = threading.Barrier(32, timeout=30)

    def one(i: int) -> None:
        gate.wait()
        results[i] = call_json(url, "POST", "/models/adult/predict", {"rows": [rows[i]]})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(32))
    for i, (status, body) in results.items():
        assert status == 200
        p = body["predictions"][0]["probabilities"]
        np.testing.assert_allclose([p["<=50K"], p[">50K"]], want[i], atol=1e-5)
