"""A string value is bounded (``max_string_bytes``, ``KEEL_MAX_STRING_BYTES``, 64 KiB by
default) on every protocol: one past it is answered 422 naming the row, the field and the
limit, and nothing of the refused request reaches the prediction log."""

from __future__ import annotations

import time

import pytest

from keel.serve import MemorySink, ServeConfig, start
from tests.serve._support import adult_store, assert_clean_error, call, records, train_lgb

LIMIT = 64 * 1024
NUMBERS = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("strings")
    store, df = adult_store(root, rows=500)
    train_lgb(store, "adult")
    sink = MemorySink()
    with start(store, ["adult"], sink=sink) as server:  # the defaults
        yield server, sink, records(df, 2)
    store.close()


def _refused(data: bytes, row: int | None, field: str) -> dict:
    err = assert_clean_error(data, "invalid_input")
    detail = err["details"][0]
    assert detail.get("row") == row and detail["field"] == field, detail
    assert f"at most {LIMIT:,} bytes" in detail["expected"], detail
    assert field in err["message"] and f"{LIMIT:,}" in err["message"], err["message"]
    assert len(data) < 2000  # the value itself is not echoed back
    return err


def test_a_7mb_string_is_refused_and_not_logged(setup):
    server, sink, rows = setup
    before = len(sink)
    big = dict(rows[1], education="x" * 7_000_000)
    status, _, data = call(server.url, "POST", "/models/adult/predict", {"rows": [rows[0], big]})
    assert status == 422
    err = _refused(data, 1, "education")
    assert "row 1" in err["message"] and "7,000,000 bytes" in err["message"]
    time.sleep(0.5)
    assert len(sink) == before  # nothing of the refused request was handed to the log
    assert call(server.url, "POST", "/models/adult/predict", {"rows": rows})[0] == 200
    deadline = time.monotonic() + 5
    while len(sink) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sink) == before + 2


def test_the_limit_is_in_utf8_bytes_on_every_protocol(setup):
    server, _, rows = setup
    row = rows[0]
    at_limit = dict(row, occupation="x" * LIMIT)
    assert call(server.url, "POST", "/models/adult/predict", {"rows": [at_limit]})[0] == 200
    wide = "é" * (LIMIT // 2 + 1)  # fewer characters than the limit, more bytes
    status, _, data = call(
        server.url, "POST", "/models/adult/predict", {"rows": [dict(row, occupation=wide)]}
    )
    assert status == 422 and _refused(data, 0, "occupation")
    over = "y" * (LIMIT + 1)
    split = {"columns": list(row), "data": [[over if c == "race" else v for c, v in row.items()]]}
    status, _, data = call(server.url, "POST", "/invocations", {"dataframe_split": split})
    assert status == 400 and _refused(data, 0, "race")  # 400: MLflow's status
    inputs = {c: [over if c == "sex" else v] for c, v in row.items()}
    status, _, data = call(server.url, "POST", "/invocations", {"inputs": inputs})
    assert status == 400 and _refused(data, 0, "sex")
    tensors = [
        {
            "name": c,
            "shape": [1],
            "datatype": "FP32" if c in NUMBERS else "BYTES",
            "data": [over if c == "native-country" else v],
        }
        for c, v in row.items()
    ]
    status, _, data = call(server.url, "POST", "/v2/models/adult/infer", {"inputs": tensors})
    assert status == 422
    err = assert_clean_error(data, "invalid_input")
    assert err["details"][0]["field"] == "native-country" and f"{LIMIT:,}" in err["message"]


def test_the_limit_is_a_declared_setting(monkeypatch):
    from keel import config
    from keel.errors import InvalidInput

    setting = config.SETTINGS["KEEL_MAX_STRING_BYTES"]
    assert setting.default == LIMIT and setting.doc
    assert ServeConfig().max_string_bytes == LIMIT
    monkeypatch.setenv("KEEL_MAX_STRING_BYTES", "1000")
    assert ServeConfig().max_string_bytes == 1000
    with pytest.raises(InvalidInput, match="max_string_bytes"):
        ServeConfig(max_string_bytes=0)
