"""What the server refuses, and how: stable codes, the field at fault, and never a
traceback or a path. API keys with scopes; no public bind without them."""

from __future__ import annotations

import pytest

from keel.errors import InvalidInput
from keel.serve import ApiKey, KeyRing, start
from tests.serve._support import (
    adult_store,
    assert_clean_error,
    call,
    call_json,
    records,
    train_lgb,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    store, df = adult_store(root)
    train_lgb(store, "adult")
    server = start(store, ["adult"], max_request_rows=50, max_body_bytes=64 * 1024)
    yield server, store, df
    server.stop()
    store.close()


@pytest.fixture(scope="module")
def url(setup):
    return setup[0].url


@pytest.fixture(scope="module")
def row(setup):
    return records(setup[2], 1)[0]


def test_wrong_types_and_missing_columns_are_422_per_field(url, row):
    bad = [dict(row, age="abc", sex=3), {k: v for k, v in row.items() if k != "education"}]
    status, headers, data = call(url, "POST", "/models/adult/predict", {"rows": bad})
    assert status == 422 and headers["keel-model-version"] == "adult/1"
    err = assert_clean_error(data, "invalid_input")
    assert {"row": 0, "field": "age", "expected": "a number", "got": "'abc'"} in err["details"]
    assert {"row": 0, "field": "sex", "expected": "a string", "got": "3"} in err["details"]
    assert {"row": 1, "field": "education", "expected": "a string", "got": "missing"} in err[
        "details"
    ]
    assert len(err["details"]) == 3 and "age" in err["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rows": []}, "rows"),
        ({"rows": "x"}, "rows"),
        ({"row": [{}]}, "rows"),
        ({"rows": [1]}, None),
    ],
)
def test_malformed_bodies_are_422(url, body, field):
    status, _, data = call(url, "POST", "/models/adult/predict", body)
    assert status == 422
    err = assert_clean_error(data, "invalid_input")
    assert err["details"][0].get("field") == field


def test_invocations_missing_column_and_bad_split(url, row):
    cols = [c for c in row if c != "age"]
    split = {"columns": cols, "data": [[row[c] for c in cols]]}
    status, _, data = call(url, "POST", "/invocations", {"dataframe_split": split})
    assert status == 400  # MLflow's status for an invalid input
    assert assert_clean_error(data, "invalid_input")["details"][0]["field"] == "age"
    split = {"columns": list(row), "data": [[1, 2]]}
    status, _, data = call(url, "POST", "/invocations", {"dataframe_split": split})
    assert status == 400 and assert_clean_error(data, "invalid_input")["details"][0]["row"] == 0


def test_too_big_body_and_too_many_rows_are_413(url, row):
    big = b'{"rows": [' + b",".join([b'{"pad": "' + b"x" * 1000 + b'"}'] * 100) + b"]}"
    status, _, data = call(url, "POST", "/models/adult/predict", big)
    assert status == 413 and assert_clean_error(data, "payload_too_large")
    status, _, data = call(url, "POST", "/models/adult/predict", {"rows": [row] * 51})
    assert status == 413 and assert_clean_error(data, "too_many_rows")
    status, _, data = call(
        url, "POST", "/invocations", {"inputs": {k: [v] * 51 for k, v in row.items()}}
    )
    assert status == 413 and assert_clean_error(data, "too_many_rows")


def test_a_chunked_body_is_cut_at_the_limit(url):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    try:
        chunks = (b'{"rows": [' + b"0," * 20_000 for _ in range(10))  # ~400 KB, no length
        conn.request(
            "POST",
            "/models/adult/predict",
            body=chunks,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 413
        assert_clean_error(resp.read(), "payload_too_large")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/python-pickle", "application/x-www-form-urlencoded", None],
)
def test_only_json_is_accepted(url, row, content_type):
    import json

    body = json.dumps({"rows": [row]}).encode()
    status, _, data = call(url, "POST", "/models/adult/predict", body, content_type=content_type)
    assert status == 415 and assert_clean_error(data, "unsupported_media_type")
    status, _, data = call(url, "POST", "/invocations", body, content_type=content_type)
    assert status == 415


def test_pickle_is_refused_on_the_v2_routes_too(url):
    status, _, data = call(
        url,
        "POST",
        "/v2/models/adult/infer",
        b"\x80\x04K\x01.",
        content_type="application/python-pickle",
    )
    assert status == 415 and assert_clean_error(data, "unsupported_media_type")


def test_unknown_models_and_routes_are_404(url, row):
    status, _, data = call(url, "POST", "/models/nope/predict", {"rows": [row]})
    assert status == 404 and assert_clean_error(data, "model_not_found")
    status, _, data = call(url, "POST", "/invocations?model=nope", {"inputs": [row]})
    assert status == 404 and assert_clean_error(data, "model_not_found")
    status, _, data = call(url, "GET", "/v2/models/nope")
    assert status == 404 and assert_clean_error(data, "model_not_found")
    status, _, data = call(url, "GET", "/etc/passwd")
    assert status == 404 and assert_clean_error(data, "not_found")
    status, headers, data = call(url, "DELETE", "/models/adult/predict")
    assert status == 405 and headers["allow"] == "POST"
    assert_clean_error(data, "method_not_allowed")


@pytest.mark.parametrize(
    "body",
    [
        b'{"rows": [{"age": "\xff\xfe"}]}',
        b'{"rows": [{"age": NaN}]}',
        b'{"rows": [{"age": Infinity}]}',
        b"[" * 5_000 + b"]" * 5_000,
        b"",
        b'{"rows": [',
    ],
    ids=["utf8", "nan", "infinity", "deep", "empty", "cut"],
)
def test_bad_json_is_400(url, body):
    for path in ("/models/adult/predict", "/invocations", "/v2/models/adult/infer"):
        status, _, data = call(url, "POST", path, body)
        assert status == 400, path
        # /invocations reads NaN as null (MLflow's client writes it): then the body lacks a format
        nan = path == "/invocations" and b"NaN" in body
        assert_clean_error(data, "invalid_input" if nan else "invalid_json")


def test_a_number_out_of_float32_range_is_422(url, row):
    status, _, data = call(url, "POST", "/models/adult/predict", {"rows": [dict(row, age=1e300)]})
    assert status == 422
    assert assert_clean_error(data, "invalid_input")["details"][0]["field"] == "age"


# -- auth -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(setup):
    p_token, p_key = ApiKey.create("client", ["predict"])
    a_token, a_key = ApiKey.create("ops", ["admin"])
    server = start(setup[1], ["adult"], keys=KeyRing([p_key, a_key]))
    yield server.url, p_token, a_token
    server.stop()


def test_keys_are_needed_and_scoped(keyed, row):
    url, predict, admin = keyed
    body = {"rows": [row]}
    status, headers, data = call(url, "POST", "/models/adult/predict", body)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert "needs an API key" in assert_clean_error(data, "unauthorized")["message"]
    bad = {"Authorization": "Bearer " + predict[:-2] + "xx"}
    status, _, data = call(url, "POST", "/models/adult/predict", body, headers=bad)
    assert (
        status == 401
        and "not one this server knows" in assert_clean_error(data, "unauthorized")["message"]
    )
    assert (
        call(url, "POST", "/models/adult/predict", body, headers={"Authorization": predict})[0]
        == 401
    )
    ok = {"Authorization": f"Bearer {predict}"}
    assert call(url, "POST", "/models/adult/predict", body, headers=ok)[0] == 200
    status, _, data = call(url, "POST", "/admin/reload", headers=ok)
    assert status == 403 and assert_clean_error(data, "forbidden")
    status, body = call_json(
        url, "POST", "/admin/reload", headers={"Authorization": f"Bearer {admin}"}
    )
    assert status == 200 and body["reloaded"][0]["changed"] is False
    assert call(url, "GET", "/healthz")[0] == 200 and call(url, "GET", "/readyz")[0] == 200
    assert call(url, "GET", "/v2/health/ready")[0] == 200
    assert call(url, "GET", "/v2/models/adult")[0] == 401


def test_keys_are_stored_hashed():
    token, key = ApiKey.create("c", ["predict"])
    ring = KeyRing.from_json(KeyRing([key]).to_json())
    assert token not in ring.to_json()
    assert ring.check(token) == key and ring.check(token + "x") is None
    with pytest.raises(InvalidInput, match="scopes"):
        ApiKey.create("c", ["root"])


def test_no_public_bind_without_keys(setup):
    with pytest.raises(InvalidInput, match="without API keys"):
        start(setup[1], ["adult"], host="0.0.0.0")
    with pytest.raises(InvalidInput, match="without API keys"):
        start(setup[1], ["adult"], host="example.org")


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json; charset=utf-8", 200),
        ("application/json; format=pandas-records", 200),
        ("Application/JSON", 200),
        ("application/json; charset=latin-1", 415),
    ],
)
def test_json_media_type_parameters(url, row, content_type, status):
    body = {"dataframe_records": [row]}
    assert call(url, "POST", "/invocations", body, content_type=content_type)[0] == status


def test_a_strange_request_id_is_replaced(url):
    _, headers, _ = call(url, "GET", "/healthz", headers={"x-request-id": "a b\tc"})
    assert headers["x-request-id"] != "a b\tc" and len(headers["x-request-id"]) == 16


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"rows": []}, "rows: expected a non-empty array of objects, got an empty array"),
        ({"row": [{}]}, "rows: expected a non-empty array of objects, got missing"),
        ([{"age": 1}], 'body: expected an object {"rows": [{...}, ...]}, got an array'),
    ],
)
def test_body_shape_messages_say_what_was_sent(url, body, expected):
    status, _, data = call(url, "POST", "/models/adult/predict", body)
    assert status == 422 and assert_clean_error(data, "invalid_input")["message"] == expected
