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


def test_one_row_on_the_event_loop_equals_the_threaded_answers(served):
    """A many-row request is explained in a thread (and loads the explainer); a one-row
    request of a loaded tree model on the event loop: the same values, alone or with
    concurrent requests, and the compiled walk is what answered."""
    from concurrent.futures import ThreadPoolExecutor

    server, df = served
    rows = records(df, 8, start=20)
    status, body = call_json(
        server.url, "POST", "/models/adult/predict", {"rows": rows, "explain": True}
    )
    assert status == 200, body
    many = body["explanations"]
    explainer = server.app.slots["adult"].live.loaded_explainer()
    assert explainer is not None and len(explainer.warm()) == 1

    def one(row):
        status, body = call_json(
            server.url, "POST", "/models/adult/predict", {"rows": [row], "explain": True}
        )
        assert status == 200, body
        return body["explanations"][0]

    alone = [one(r) for r in rows]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(one, rows * 3))
    for i, got in enumerate(alone + together):
        want = many[i % len(rows)]
        assert got["output"] == pytest.approx(want["output"], abs=1e-12)
        for k, v in want["contributions"].items():
            assert got["contributions"][k] == pytest.approx(v, abs=1e-12)


@pytest.fixture(scope="module")
def served_threshold(tmp_path_factory):
    """A ThresholdOptimizer version (per-group thresholds over a LightGBM), exported and
    served."""
    from keel import registry
    from keel.audit.mitigate import threshold_optimizer
    from keel.export import export

    root = tmp_path_factory.mktemp("explain-threshold")
    store, df = adult_store(root)
    parent = train_lgb(store, "adult", alias=None)
    mv = threshold_optimizer(store, parent.ref, "sex").version
    registry.set_alias(store, mv.ref, "production")
    export(store, mv.ref)
    with start(store, ["adult"]) as server:
        yield server, store, mv, df
    store.close()


def test_a_threshold_version_serves_the_in_process_explanation_of_its_base_score(
    served_threshold,
):
    from keel import registry
    from keel.audit import Explainer

    server, store, mv, df = served_threshold
    rows = records(df, 6)
    status, body = call_json(
        server.url, "POST", "/models/adult/predict", {"rows": rows, "explain": True}
    )
    assert status == 200, body
    model = registry.load(store, mv.ref)
    explainer = Explainer(model).fit()
    base = model.base
    cols = [c["name"] for c in base.input_schema]
    import pandas as pd

    for row, ex in zip(rows, body["explanations"], strict=True):
        mine = explainer.explain_one(row)
        assert ex["method"] == mine["method"] == "tree"
        assert ex["explains"] == mine["explains"] and "per group of sex" in ex["explains"]
        assert ex["output"] == pytest.approx(mine["output"], abs=1e-9)
        assert ex["expected_value"] == pytest.approx(mine["expected_value"], abs=1e-12)
        for k, v in mine["contributions"].items():
            assert ex["contributions"][k] == pytest.approx(v, abs=1e-9)
        # additivity against the score explained: the base model's log-odds
        p = float(base.predict_proba(pd.DataFrame([row])[cols])[0, 1])
        assert ex["output"] == pytest.approx(math.log(p / (1 - p)), abs=1e-6)
        total = ex["expected_value"] + sum(ex["contributions"].values())
        assert total == pytest.approx(ex["output"], abs=1e-6)
    # the decisions are the mitigated version's, explained or not
    assert all(p["label"] in (">50K", "<=50K") for p in body["predictions"])
