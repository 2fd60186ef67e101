"""`"explain": true` on POST /models/NAME/predict: each row's SHAP values per raw feature,
from the version's native model, consistent with the served probabilities."""

from __future__ import annotations

import math

import pytest

from keel.serve import start
from tests.serve._support import adult_store, assert_clean_error, call_json, records, train_lgb


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    store, df = adult_store(root)
    train_lgb(store, "adult")
    with start(store, ["adult"]) as server:
        yield server, df
    store.close()


def test_explanations_add_up_to_the_served_probability(served):
    server, df = served
    rows = records(df, 5)
    status, body = call_json(
        server.url, "POST", "/models/adult/predict", {"rows": rows, "explain": True}
    )
    assert status == 200, body
    assert len(body["explanations"]) == len(rows) == len(body["predictions"])
    for row, pred, ex in zip(rows, body["predictions"], body["explanations"], strict=True):
        assert set(ex["contributions"]) == set(row)  # raw features, not one-hot columns
        margin = ex["expected_value"] + sum(ex["contributions"].values())
        assert margin == pytest.approx(ex["output"], abs=1e-6)
        p = 1 / (1 + math.exp(-ex["output"]))
        assert p == pytest.approx(pred["probabilities"][">50K"], abs=1e-5)  # ONNX vs native


def test_no_explanations_unless_asked_and_bad_flags(served):
    server, df = served
    status, body = call_json(server.url, "POST", "/models/adult/predict", {"rows": records(df, 1)})
    assert status == 200 and "explanations" not in body
    from tests.serve._support import call

    status, _, data = call(
        server.url, "POST", "/models/adult/predict", {"rows": records(df, 1), "explain": "yes"}
    )
    err = assert_clean_error(data, "invalid_input")
    assert status == 422 and "explain" in err["message"] and "'yes'" in err["message"]
