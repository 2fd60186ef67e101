"""MLflow scoring-server parity, live on 127.0.0.1: MLflow's own scoring client
(``mlflow.pyfunc.scoring_server.client.ScoringServerClient``) against keel's ``/ping``,
``/version`` and ``/invocations``; CSV with and without a header; ``params``; MLflow's
error shape and statuses (checked against ``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``)."""

from __future__ import annotations

import json
import threading
import warnings
from importlib.metadata import version

import numpy as np
import pytest

from keel import registry
from keel.serve import ApiKey, KeyRing, MemorySink, start
from keel.train import train
from tests.serve._support import adult_store, call, call_json, records, train_lgb

with warnings.catch_warnings():  # mlflow's import warns about its own type hints
    warnings.simplefilter("ignore")
    from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    store, df = adult_store(root, rows=600)
    mv = train_lgb(store, "adult")
    age = train(store, "adult", "age", params={"n_estimators": 10}, seed=2).register(store, "age")
    registry.set_alias(store, age.ref, "production")
    sink = MemorySink()
    server = start(store, ["adult", "age"], sink=sink, max_request_rows=200, watch_seconds=0)
    yield server, store, df, registry.load(store, mv.ref), sink
    server.stop()
    store.close()


@pytest.fixture(scope="module")
def url(setup):
    return setup[0].url


@pytest.fixture(scope="module")
def frame(setup):
    """30 rows of features, with missing values among them."""
    import pandas as pd

    df = setup[2].drop(columns=["income"])
    return pd.concat([df[df.isna().any(axis=1)].head(5), df.dropna().head(25)])


@pytest.fixture(scope="module")
def want(setup, frame):
    return [str(v) for v in setup[3].predict(frame)]


@pytest.fixture(scope="module")
def client(url):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return ScoringServerClient(host, int(port))


def mlflow_error(status: int, data: bytes, error_code: str, code: str) -> dict:
    """An MLflow error body: ``error_code`` with its status as MLflow maps it (where MLflow
    has one), the message, and keel's ``error`` object with ``code`` beside them."""
    body = json.loads(data)
    assert body["error_code"] == error_code, body
    if error_code in ERROR_CODE_TO_HTTP_STATUS and status not in (413, 415):
        assert ERROR_CODE_TO_HTTP_STATUS[error_code] == status, (error_code, status)
    assert body["message"] == body["error"]["message"] and body["message"]
    assert body["error"]["code"] == code and body["error"]["request_id"]
    assert "Traceback" not in data.decode() and ".py" not in data.decode()
    return body


def csv_of(frame, header: bool = True) -> bytes:
    return frame.to_csv(index=False, header=header).encode()


# -- MLflow's own client ----------------------------------------------------------------


def test_mlflow_client_pings_reads_the_version_and_invokes(client, frame, want):
    client.wait_server_ready(timeout=30)
    client.ping()
    assert client.get_version() == version("keel")
    # a DataFrame goes as dataframe_split, its missing values as NaN literals
    assert frame.isna().any().any()
    response = client.invoke(frame)
    assert list(response.get_predictions()[0]) == want
    assert np.asarray(response["probabilities"]).shape == (len(frame), 2)
    assert response["model"] == "adult" and response["version"] == 1


def test_mlflow_client_params_are_accepted_and_ignored(client, frame, want):
    response = client.invoke(frame, params={"temperature": 0.5, "max_tokens": 3})
    assert list(response.get_predictions()[0]) == want
    assert response["ignored_params"] == ["max_tokens", "temperature"]
    assert "ignored_params" not in client.invoke(frame)


def test_mlflow_client_records(client, setup):
    """A list of records goes as {"inputs": [...]}. (A dict of arrays would go as columns,
    but MLflow 3.17's client cannot send one: it iterates the dict's keys as pairs.)"""
    rows = records(setup[2], 5)
    response = client.invoke(rows)
    native = [str(v) for v in setup[3].predict(setup[2].drop(columns=["income"]).head(5))]
    assert list(response.get_predictions()[0]) == native


def test_mlflow_client_sees_errors_as_failures(client, frame):
    with pytest.raises(Exception, match="error code 400") as info:
        client.invoke(frame.drop(columns=["age"]))
    body = json.loads(str(info.value).split("response: ", 1)[1][:-1])
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and "'age'" in body["message"]


# -- health and version -------------------------------------------------------------------


def test_ping_health_and_version(url):
    for path in ("/ping", "/health"):
        assert call_json(url, "GET", path) == (200, {"status": "ok"})
    status, headers, data = call(url, "GET", "/version")
    assert status == 200 and data.decode() == version("keel")
    assert headers["content-type"].startswith("text/plain")


def test_mlflow_routes_respect_keys(setup, frame):
    """/ping, /health and /version are public, as on MLflow's server; /invocations needs a
    key with the predict scope."""
    token, key = ApiKey.create("scorer", ["predict"])
    server = start(setup[1], ["adult"], keys=KeyRing([key]), watch_seconds=0)
    try:
        for path in ("/ping", "/health", "/version"):
            assert call(server.url, "GET", path)[0] == 200, path
        body = {"dataframe_records": records(setup[2], 2)}
        status, _, data = call(server.url, "POST", "/invocations", body)
        assert status == 401, data
        refused = json.loads(data)  # in MLflow's shape, although no handler ran
        assert refused["error_code"] and "message" in refused, refused
        bad = {"Authorization": "Bearer not-a-key"}
        status, _, data = call(server.url, "POST", "/invocations", body, headers=bad)
        assert status == 401 and "error_code" in json.loads(data), data
        auth = {"Authorization": f"Bearer {token}"}
        assert call(server.url, "POST", "/invocations", body, headers=auth)[0] == 200
        status, doc = call_json(server.url, "GET", "/openapi.json", headers=auth)
        assert "security" not in doc["paths"]["/ping"]["get"]
        assert doc["paths"]["/invocations"]["post"]["security"] == [{"bearer": []}]
    finally:
        server.stop()


# -- JSON -------------------------------------------------------------------------------


def test_every_json_format_agrees(url, setup, want, frame):
    rows = [
        {k: (None if v != v else v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    cols = list(rows[0])
    bodies = {
        "dataframe_split": {"columns": cols, "data": [[r[c] for c in cols] for r in rows]},
        "dataframe_records": rows,
        "inputs": {c: [r[c] for r in rows] for c in cols},
        "instances": rows,
    }
    for key, payload in bodies.items():
        status, body = call_json(url, "POST", "/invocations", {key: payload, "params": None})
        assert status == 200 and body["predictions"] == want, key


def test_a_regressor_answers_numbers(url, setup):
    """``age`` is predicted from the other columns and the income."""
    rows = [
        {k: v for k, v in r.items() if k != "age"} | {"income": "<=50K"}
        for r in records(setup[2], 3)
    ]
    status, body = call_json(url, "POST", "/invocations?model=age", {"inputs": rows})
    assert status == 200 and body["model"] == "age" and "probabilities" not in body
    assert len(body["predictions"]) == 3 and all(isinstance(v, float) for v in body["predictions"])


@pytest.mark.parametrize(
    ("body", "error_code", "says"),
    [
        ({"rows": []}, "BAD_REQUEST", "exactly one of"),
        ({"inputs": [], "instances": []}, "BAD_REQUEST", "got inputs, instances"),
        ([1, 2], "BAD_REQUEST", "expected a JSON object"),
        (b"{", "BAD_REQUEST", "not valid JSON"),
        (b"", "BAD_REQUEST", "empty"),
        ({"inputs": [{"age": "forty"}]}, "INVALID_PARAMETER_VALUE", "age"),
        ({"inputs": [{}], "params": [1]}, "INVALID_PARAMETER_VALUE", "params: expected an object"),
    ],
    ids=["no-format", "two-formats", "array", "cut", "empty", "bad-value", "params-array"],
)
def test_json_errors_in_mlflow_shape(url, body, error_code, says):
    status, _, data = call(url, "POST", "/invocations", body)
    assert status == 400, data
    code = "invalid_json" if isinstance(body, bytes) else "invalid_input"
    assert says in mlflow_error(status, data, error_code, code)["message"]


def test_nan_is_a_missing_value_and_infinity_is_refused(url, setup):
    row = records(setup[2], 1)[0]
    text = json.dumps({"dataframe_records": [dict(row, age=float("nan"), sex="NaN")]})
    status, body = call_json(url, "POST", "/invocations", text.encode())
    assert status == 200, body
    missing = json.dumps({"dataframe_records": [dict(row, age=None, sex="NaN")]})
    assert (
        body["predictions"]
        == call_json(url, "POST", "/invocations", missing.encode())[1]["predictions"]
    )
    for literal in ("Infinity", "-Infinity", "-NaN"):
        bad = text.replace("NaN,", literal + ",", 1).encode()
        status, _, data = call(url, "POST", "/invocations", bad)
        mlflow_error(status, data, "BAD_REQUEST", "invalid_json")


def test_too_many_rows_and_unknown_model(url, setup):
    rows = records(setup[2], 1) * 201
    status, _, data = call(url, "POST", "/invocations", {"dataframe_records": rows})
    assert status == 413
    mlflow_error(status, data, "BAD_REQUEST", "too_many_rows")
    status, _, data = call(url, "POST", "/invocations?model=nope", {"inputs": rows[:1]})
    assert status == 404
    mlflow_error(status, data, "RESOURCE_DOES_NOT_EXIST", "model_not_found")


# -- CSV ----------------------------------------------------------------------------------


def test_csv_with_and_without_a_header(url, frame, want):
    cases = {
        "header": (csv_of(frame), "text/csv"),
        "no header": (csv_of(frame, header=False), "text/csv"),
        "header=absent": (csv_of(frame, header=False), "text/csv; header=absent"),
        "header=present": (csv_of(frame), "text/csv; header=present; charset=utf-8"),
        "columns reordered": (csv_of(frame[frame.columns[::-1]]), "text/csv"),
        "extra column": (csv_of(frame.assign(id=range(len(frame)))), "text/csv"),
        "crlf and blank lines": (csv_of(frame).replace(b"\n", b"\r\n\r\n"), "text/csv"),
        "bom": (b"\xef\xbb\xbf" + csv_of(frame), "text/csv"),
    }
    for name, (body, media) in cases.items():
        status, _, data = call(url, "POST", "/invocations", body, content_type=media)
        assert status == 200, (name, data)
        assert json.loads(data)["predictions"] == want, name


def test_csv_quoting_and_missing_values(url, setup, frame):
    """Quoted fields (a comma, a newline, a quote inside) are one value; an empty field and
    pandas' missing-value words are missing numbers."""
    row = frame.dropna().head(1)
    quoted = row.assign(occupation='Sales, "inside"\nand more')
    status, _, data = call(url, "POST", "/invocations", csv_of(quoted), content_type="text/csv")
    assert status == 200, data
    base = csv_of(row.assign(age=None)).decode()
    answers = set()
    for word in ("", "NA", "NaN", "null", "n/a"):
        body = base.replace("\n,", f"\n{word},", 1).encode()
        status, _, data = call(url, "POST", "/invocations", body, content_type="text/csv")
        assert status == 200, (word, data)
        answers.add(json.dumps(json.loads(data)["probabilities"]))
    assert len(answers) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("forty", "a number"), ("1_000", "a number"), ("inf", "a number"), ("1e39", "float32")],
)
def test_a_bad_csv_number_names_its_row_line_and_column(url, frame, value, expected):
    text = csv_of(frame.dropna().head(3)).decode().splitlines()
    fields = text[2].split(",")
    fields[0] = value
    text[2] = ",".join(fields)
    body = "\n".join(text).encode()
    status, _, data = call(url, "POST", "/invocations", body, content_type="text/csv")
    err = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")
    assert err["message"].startswith("row 1 (line 3) column 'age': expected"), err["message"]
    assert expected in err["message"] and repr(value) in err["message"]
    assert err["error"]["details"][0] == {
        "row": 1,
        "field": "age",
        "expected": err["error"]["details"][0]["expected"],
        "got": repr(value),
        "line": 3,
    }


def test_csv_header_errors_name_the_columns(url, frame):
    misspelt = frame.rename(columns={"age": "agee", "sex": "gender"})
    status, _, data = call(url, "POST", "/invocations", csv_of(misspelt), content_type="text/csv")
    message = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")["message"]
    assert "lacks the column(s) 'age', 'sex'" in message
    assert "does not read: 'agee', 'gender'" in message
    twice = csv_of(frame).replace(b"fnlwgt", b"age", 1)
    status, _, data = call(url, "POST", "/invocations", twice, content_type="text/csv")
    message = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")["message"]
    assert "names 'age' twice" in message and "lacks the column(s) 'fnlwgt'" in message
    header_only = csv_of(frame.head(0))
    status, _, data = call(url, "POST", "/invocations", header_only, content_type="text/csv")
    message = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")["message"]
    assert message.startswith("the CSV has a header and no rows")


def test_csv_without_header_of_the_wrong_width(url, frame):
    body = csv_of(frame[["age", "sex"]], header=False)
    status, _, data = call(url, "POST", "/invocations", body, content_type="text/csv")
    message = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")["message"]
    assert message.startswith("row 0 (line 1): expected 14 fields (the model's columns in order")
    assert "got 2" in message and "read as the header" in message
    # a header-less first row of the right width but bad values hints at the header rule
    body = b"a,b,c,d,e,f,g,h,i,j,k,l,m,n\n"
    status, _, data = call(url, "POST", "/invocations", body, content_type="text/csv")
    message = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")["message"]
    assert message.startswith("row 0 (line 1) column 'age': expected a number, got 'a'")
    assert "none of its fields names a column" in message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "no CSV rows"),
        (b"\n\r\n", "no CSV rows"),
        (b'age,"unclosed\n1,2\n', "cannot be read"),
        (b"age,sex\n\xff\xfe\n", "not UTF-8"),
    ],
    ids=["empty", "blank-lines", "bad-quoting", "not-utf8"],
)
def test_unreadable_csv_is_a_bad_request(url, body, says):
    status, _, data = call(url, "POST", "/invocations", body, content_type="text/csv")
    assert says in mlflow_error(status, data, "BAD_REQUEST", "invalid_input")["message"]


def test_a_csv_string_past_the_limit_names_its_row_and_column(url, frame):
    """The server's string limit (KEEL_MAX_STRING_BYTES, 64 KiB by default) holds for CSV."""
    long = frame.dropna().head(2).assign(occupation=["Sales", "x" * 70_000])
    status, _, data = call(url, "POST", "/invocations", csv_of(long), content_type="text/csv")
    err = mlflow_error(status, data, "INVALID_PARAMETER_VALUE", "invalid_input")
    assert err["error"]["details"][0]["row"] == 1
    assert err["error"]["details"][0]["field"] == "occupation"
    assert len(data) < 2000  # the value is not echoed


def test_csv_rows_past_the_limit(url, frame):
    body = csv_of(frame) + csv_of(frame, header=False) * 7  # 30 * 8 rows > 200
    status, _, data = call(url, "POST", "/invocations", body, content_type="text/csv")
    assert (
        status == 413
        and "240 rows" in mlflow_error(status, data, "BAD_REQUEST", "too_many_rows")["message"]
    )


@pytest.mark.parametrize(
    "media",
    [
        None,
        "text/plain",
        "application/vnd.apache.parquet",
        "application/json; charset=latin-1",
        "text/csv; header=maybe",
    ],
)
def test_other_content_types_are_415_naming_the_supported(url, frame, media):
    status, _, data = call(url, "POST", "/invocations", csv_of(frame), content_type=media)
    assert status == 415, data
    message = mlflow_error(status, data, "BAD_REQUEST", "unsupported_media_type")["message"]
    if media is None or "=" not in media:
        assert "application/json or text/csv" in message


def test_the_openapi_document_describes_the_mlflow_routes(url):
    status, doc = call_json(url, "GET", "/openapi.json")
    assert status == 200
    paths = doc["paths"]
    assert {"/ping", "/health", "/version", "/invocations"} <= set(paths)
    post = paths["/invocations"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert post["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MLflowError"
    }
    assert "422" not in post["responses"]
    assert set(paths["/version"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    variants = doc["components"]["schemas"]["InvocationsRequest"]["oneOf"]
    assert all("params" in v["properties"] for v in variants)


def test_ping_is_503_until_the_models_are_loaded(setup):
    """Before its models load (the app's startup not yet run) /ping answers 503 in MLflow's
    shape, so MLflow's client's wait_server_ready keeps waiting; /version answers at once."""
    import asyncio

    from keel.serve import create_app

    app = create_app(setup[1], ["adult"], watch_seconds=0)

    async def get(path: str) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    for path in ("/ping", "/health"):
        status, data = asyncio.run(get(path))
        assert status == 503
        body = mlflow_error(status, data, "TEMPORARILY_UNAVAILABLE", "not_ready")
        assert body["error"]["details"] == [
            {"field": "adult", "expected": "loaded", "got": "loading"}
        ]
    assert asyncio.run(get("/version"))[0] == 200


def test_csv_rows_are_logged_as_the_json_ones(url, setup, frame):
    """The prediction log keeps a CSV request's rows as it keeps the same rows sent as
    MLflow's client sends them (NaN literals): the same inputs, missing values as None."""
    sink = setup[4]
    head = frame.head(3)
    assert head.isna().any().any()
    call(url, "POST", "/invocations", csv_of(head), {"x-request-id": "csv-1"}, "text/csv")
    split = head.to_dict(orient="split")
    body = json.dumps({"dataframe_split": split}).encode()  # NaN for the missing values
    call(url, "POST", "/invocations", body, {"x-request-id": "json-1"})
    logged: dict[str, list] = {}
    for _ in range(200):  # the sink is fed after the answer; wait a little, bounded
        logged = {
            rid: [e for e in sink.entries if e["request_id"] == rid] for rid in ("csv-1", "json-1")
        }
        if all(len(v) == 3 for v in logged.values()):
            break
        threading.Event().wait(0.01)
    assert [e["inputs"] for e in logged["csv-1"]] == [e["inputs"] for e in logged["json-1"]]
    assert [e["outputs"] for e in logged["csv-1"]] == [e["outputs"] for e in logged["json-1"]]
    assert any(None in e["inputs"].values() for e in logged["csv-1"])
