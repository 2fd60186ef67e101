"""Tensor models served by the same server: a torch-cnn on the 8x8 digits (FP32 [N, 1, 8, 8])
and a torch-seq forecaster (FP32 [N, 24]) answer on OIP v2, the simple JSON route and MLflow's
scoring route with the labels ONNX Runtime gives on their graphs; a wrong shape, datatype or
a NaN is a 400 naming the expected and the given; canary, shadow, swaps and the prediction
log (per-row summaries, never raw tensors) work as for tabular versions."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from keel import registry
from keel.serve import MemorySink, PredictionLog, Release, read_predictions, start
from tests.serve._support import assert_clean_error, call, call_json
from tests.serve._tensor_support import (
    WINDOW,
    digits_images,
    digits_store,
    series_store,
    series_windows,
    train_cnn,
    train_seq,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("tensor_serving")
    store = digits_store(root)
    v1 = train_cnn(store)
    v2 = train_cnn(store, alias="candidate", channels=[4, 8])
    x, y = digits_images()
    yield store, v1, v2, x, y
    store.close()


@pytest.fixture(scope="module")
def server(digits):
    store, *_ = digits
    with start(store, ["digits"], watch_seconds=0) as running:
        yield running


def onnx_labels(store, mv, x):
    session = ort.InferenceSession(store.blobs.get_bytes(mv.tags["export.onnx"]))
    return session.run(["label"], {"X": x})[0].tolist()


def v2_body(x, **tensor):
    return {
        "inputs": [
            {
                "name": "X",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
                **tensor,
            }
        ]
    }


def error_of(data):
    body = json.loads(data)
    return body["error"] if isinstance(body["error"], dict) else body


def test_oip_v2_images_get_the_labels_onnx_runtime_gives(digits, server):
    store, v1, _, x, y = digits
    batch = x[:32]
    expected = onnx_labels(store, v1, batch)
    status, body = call_json(server.url, "POST", "/v2/models/digits/infer", v2_body(batch))
    assert status == 200, body
    label = {o["name"]: o for o in body["outputs"]}["label"]
    assert label["shape"] == [32] and label["datatype"] == "INT64"
    assert label["data"] == expected
    assert np.mean(np.asarray(expected) == y[:32]) > 0.7  # a trained network, not noise
    probs = {o["name"]: o for o in body["outputs"]}["probabilities"]
    assert probs["shape"] == [32, 10]

    # data nested as the shape answers the same
    nested = v2_body(batch)
    nested["inputs"][0]["data"] = batch.tolist()
    again = call_json(server.url, "POST", "/v2/models/digits/infer", nested)[1]
    assert again["outputs"] == body["outputs"]

    # the binary tensor extension (Triton's clients)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "datatype": "FP32",
                    "shape": [32, 1, 8, 8],
                    "parameters": {"binary_data_size": batch.nbytes},
                }
            ],
            "outputs": [{"name": "label"}],
        }
    ).encode()
    status, _, data = call(
        server.url,
        "POST",
        "/v2/models/digits/infer",
        head + batch.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
        content_type="application/octet-stream",
    )
    assert status == 200 and json.loads(data)["outputs"][0]["data"] == expected

    status, meta = call_json(server.url, "GET", "/v2/models/digits")
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]


def test_a_wrong_shape_is_a_400_naming_the_expected_and_the_given(digits, server):
    _, _, _, x, _ = digits
    flat = v2_body(x[:2].reshape(2, 64))
    status, _, data = call(server.url, "POST", "/v2/models/digits/infer", flat)
    assert status == 400
    err = assert_clean_error(data, "invalid_tensor")
    assert "[N, 1, 8, 8]" in err["message"] and "[2, 64]" in err["message"]
    assert err["details"] == [{"field": "X", "expected": "shape [N, 1, 8, 8]", "got": "[2, 64]"}]
    # the simple JSON route: one row of [8, 8] instead of [1, 8, 8]
    rows = [{"X": x[0].tolist()}, {"X": x[1, 0].tolist()}]
    status, _, data = call(server.url, "POST", "/models/digits/predict", {"rows": rows})
    assert status == 400
    err = assert_clean_error(data, "invalid_tensor")
    assert "row 1" in err["message"] and "[1, 8, 8]" in err["message"]
    assert "[8, 8]" in err["message"]
    # ragged rows
    ragged = x[0].tolist()
    ragged[0][3] = ragged[0][3][:5]
    status, _, data = call(server.url, "POST", "/models/digits/predict", {"rows": [{"X": ragged}]})
    assert status == 400 and "[1, 8, 8]" in error_of(data)["message"]
    # data shorter than the shape it declares: the data is wrong, not the shape (422)
    short = v2_body(x[:2])
    short["inputs"][0]["data"] = short["inputs"][0]["data"][:100]
    status, _, data = call(server.url, "POST", "/v2/models/digits/infer", short)
    assert status == 422 and "128 numbers" in error_of(data)["error"]


def test_a_wrong_datatype_is_a_400(digits, server):
    _, _, _, x, _ = digits
    body = v2_body((x[:2] * 16).astype(np.int64), datatype="INT64")
    status, _, data = call(server.url, "POST", "/v2/models/digits/infer", body)
    assert status == 400
    err = assert_clean_error(data, "invalid_tensor")
    assert "FP32" in err["message"] and "INT64" in err["message"]
    # text where numbers belong, in JSON rows: the value is wrong (422), naming the row
    rows = [{"X": x[0].tolist()}, {"X": [[["a"] * 8] * 8]}]
    status, _, data = call(server.url, "POST", "/models/digits/predict", {"rows": rows})
    assert status == 422 and "row 1" in error_of(data)["message"]


def test_nan_or_infinity_in_a_tensor_is_a_400_naming_the_row(digits, server):
    _, _, _, x, _ = digits
    batch = x[:3].copy()
    batch[2, 0, 4, 4] = np.nan
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "datatype": "FP32",
                    "shape": [3, 1, 8, 8],
                    "parameters": {"binary_data_size": batch.nbytes},
                }
            ]
        }
    ).encode()
    status, _, data = call(
        server.url,
        "POST",
        "/v2/models/digits/infer",
        head + batch.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
        content_type="application/octet-stream",
    )
    assert status == 400
    err = assert_clean_error(data, "invalid_tensor")
    assert "row 2" in err["message"] and "nan" in err["message"]
    # JSON has no NaN; a number past float32's range becomes infinite and is refused alike
    rows = [{"X": x[0].tolist()}, {"X": x[1].tolist()}]
    rows[1]["X"][0][0][0] = 1e39
    status, _, data = call(server.url, "POST", "/models/digits/predict", {"rows": rows})
    assert status == 400 and "row 1" in error_of(data)["message"]
    # explanations are not served for tensors: refused before the model runs, no echo
    body = {"rows": [{"X": x[0].tolist()}], "explain": True}
    status, _, data = call(server.url, "POST", "/models/digits/predict", body)
    assert status == 422 and "tensor 'X'" in error_of(data)["message"]
    assert "0.3125" not in data.decode()
    # a missing tensor is missing input (422), as a missing column is
    status, _, data = call(server.url, "POST", "/models/digits/predict", {"rows": [{"Y": 1}]})
    assert status == 422 and "'X'" in error_of(data)["message"]


def test_the_simple_json_and_mlflow_routes(digits, server):
    store, v1, _, x, _ = digits
    batch = x[40:45]
    expected = onnx_labels(store, v1, batch)
    rows = [{"X": img.tolist()} for img in batch]
    status, body = call_json(server.url, "POST", "/models/digits/predict", {"rows": rows})
    assert status == 200, body
    assert [p["label"] for p in body["predictions"]] == expected
    assert len(body["predictions"][0]["probabilities"]) == 10
    # MLflow: a batch by input (TF-serving's columnar "inputs"), or records
    status, body = call_json(server.url, "POST", "/invocations", {"inputs": {"X": batch.tolist()}})
    assert status == 200 and body["predictions"] == expected
    status, body = call_json(server.url, "POST", "/invocations", {"dataframe_records": rows})
    assert status == 200 and body["predictions"] == expected
    split = {"columns": ["X"], "data": [[img.tolist()] for img in batch]}
    status, body = call_json(server.url, "POST", "/invocations", {"dataframe_split": split})
    assert status == 200 and body["predictions"] == expected


def test_the_openapi_document_describes_the_tensor(server):
    status, doc = call_json(server.url, "GET", "/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    x = schemas["Row"]["oneOf"][0]["properties"]["X"]
    assert (x["minItems"], x["items"]["minItems"], x["items"]["items"]["maxItems"]) == (1, 8, 8)
    assert x["items"]["items"]["items"]["type"] == "number"
    tensor = json.dumps(schemas["V2Tensor"])
    assert '"const": "X"' in tensor and '"const": "FP32"' in tensor
    codes = doc["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["400"]["description"]
    assert "invalid_tensor" in codes


def test_canary_shadow_swap_and_the_log_of_summaries(digits, tmp_path):
    store, v1, v2, x, _ = digits
    v3 = train_cnn(store, alias="challenger", channels=[4, 4])
    release = Release("digits", {"production": 50, "candidate": 50}, shadow="challenger", seed=3)
    with PredictionLog(store, flush_seconds=0.2) as plog:
        with start(store, [release], sink=plog, watch_seconds=0) as server:
            ids, versions = [], []
            for i in range(24):
                batch = x[2 * i : 2 * i + 2]
                body = v2_body(batch)
                status, answer = call_json(server.url, "POST", "/v2/models/digits/infer", body)
                assert status == 200, answer
                assert answer["outputs"][0]["data"] == onnx_labels(
                    store, v1 if answer["model_version"] == "1" else v2, batch
                )
                ids.append(answer["id"])
                versions.append(answer["model_version"])
            assert set(versions) == {str(v1.version), str(v2.version)}  # the canary split
            _wait(
                lambda: (
                    call_json(server.url, "GET", "/admin/release/digits")[1]["shadow"]["ok"] == 24
                )
            )
            # a swap: the candidate becomes production, the route follows on reload
            registry.set_alias(store, v2.ref, "production")
            status, _ = call_json(server.url, "POST", "/admin/reload?model=digits")
            assert status == 200
        plog.flush()
    registry.set_alias(store, v1.ref, "production")
    logged = read_predictions(store, "digits").to_pylist()
    by_version = {}
    for row in logged:
        by_version.setdefault(row["version"], []).append(row)
    assert len(by_version[v3.version]) == 48  # the shadow saw every row
    assert sum(len(by_version.get(v, [])) for v in (v1.version, v2.version)) == 48
    served = [r for r in logged if r["version"] != v3.version]
    assert {r["request_id"] for r in served} == set(ids)
    first = next(r for r in served if r["request_id"] == ids[0])
    inputs = json.loads(first["inputs"])
    assert sorted(inputs) == ["X.max", "X.mean", "X.min", "X.std"]  # no raw tensor
    img = x[0].astype(np.float64)
    assert inputs["X.mean"] == pytest.approx(img.mean(), rel=1e-6)
    assert inputs["X.std"] == pytest.approx(img.std(), rel=1e-6)
    assert (inputs["X.min"], inputs["X.max"]) == (img.min(), pytest.approx(img.max()))
    assert max(len(r["inputs"]) for r in logged) < 200  # bounded, whatever the image size


def test_the_dict_sink_logs_summaries_too(digits):
    store, v1, _, x, _ = digits
    sink = MemorySink()
    with start(store, ["digits"], sink=sink, watch_seconds=0) as server:
        status, body = call_json(server.url, "POST", "/v2/models/digits/infer", v2_body(x[:3]))
        assert status == 200
        _wait(lambda: len(sink.entries) == 3)
    entry = sink.entries[0]
    assert entry["request_id"] == body["id"] and entry["version"] == v1.version
    assert set(entry["inputs"]) == {"X.mean", "X.std", "X.min", "X.max"}


def test_a_sequence_model_reads_n_by_window(tmp_path):
    pytest.importorskip("torch")
    store = series_store(tmp_path)
    mv = train_seq(store)
    x, _ = series_windows(16, seed=1)
    session = ort.InferenceSession(store.blobs.get_bytes(mv.tags["export.onnx"]))
    expected = session.run(["variable"], {"X": x})[0]
    with PredictionLog(store, flush_seconds=0.2) as plog:
        with start(store, ["series"], sink=plog, watch_seconds=0) as server:
            status, body = call_json(server.url, "POST", "/v2/models/series/infer", v2_body(x))
            assert status == 200, body
            out = body["outputs"][0]
            assert out["name"] == "variable" and out["shape"] == [16, 1]
            np.testing.assert_allclose(out["data"], expected.ravel(), rtol=1e-6)
            status, meta = call_json(server.url, "GET", "/v2/models/series")
            assert meta["inputs"][0]["shape"] == [-1, WINDOW]
            rows = {"rows": [{"X": w.tolist()} for w in x[:2]]}
            status, body = call_json(server.url, "POST", "/models/series/predict", rows)
            assert status == 200 and len(body["predictions"]) == 2
            bad = {"rows": [{"X": x[0, :10].tolist()}]}
            status, _, data = call(server.url, "POST", "/models/series/predict", bad)
            assert status == 400 and f"[{WINDOW}]" in error_of(data)["message"]
            assert "[10]" in error_of(data)["message"]
    store_rows = read_predictions(store, "series").to_pylist()
    inputs = json.loads(store_rows[0]["inputs"])
    assert sorted(inputs) == ["X.last", "X.max", "X.mean", "X.min", "X.std"]
    assert inputs["X.last"] == pytest.approx(float(x[0, -1]))
    store.close()


def _wait(check, seconds=15.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    assert check()
