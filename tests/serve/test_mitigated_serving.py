"""A ThresholdOptimizer version served live: each request's decisions are drawn from its
request id (the same request gets the same answer; the prediction log's id reproduces it),
the served decision rates on the hold-out are fairlearn's within sampling error, and a row
without the sensitive column it decides by is refused naming it."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from keel import registry
from keel.audit.mitigate import threshold_optimizer
from keel.export import export, load_export, onnx_inputs, prepared_of
from keel.export._mitigated_export import DECISION_PROBABILITY, DRAW
from keel.models._graph import check_graph
from keel.models._mitigated import request_uniforms
from keel.serve import MemorySink, start
from tests.serve._support import _plain, adult_store, call, train_lgb

POS = ">50K"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("mitigated-serve")
    store, _ = adult_store(root, rows=4000)
    parent = train_lgb(store, "adult", alias=None)
    mv = threshold_optimizer(store, parent.ref, "sex").version
    registry.set_alias(store, mv.ref, "production")
    export(store, mv.ref)
    prep = prepared_of(store, mv.ref)
    X = prep.test[[c["name"] for c in mv.input_schema]].reset_index(drop=True)
    y = prep.test["income"].to_numpy()
    sink = MemorySink()
    server = start(store, ["adult"], sink=sink, max_request_rows=1000)
    yield server, store, mv, X, y, sink
    server.stop()
    store.close()


def _rows(X, start, n):
    return [
        {k: _plain(v) for k, v in r.items()} for r in X.iloc[start : start + n].to_dict("records")
    ]


def _predict(url, rows, rid):
    status, headers, data = call(
        url, "POST", "/models/adult/predict", {"rows": rows}, headers={"x-request-id": rid}
    )
    assert status == 200, data
    return [p["label"] for p in json.loads(data)["predictions"]]


def _graph(store, mv, X, draws):
    session = check_graph(load_export(store, mv.ref)[0])
    feed = onnx_inputs(X, mv.input_schema)
    feed[DRAW] = np.asarray(draws, dtype=np.float32).reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def test_each_request_is_drawn_from_its_id(served):
    server, store, mv, X, _, _ = served
    seed = registry.load(store, mv.ref).seed
    rows = _rows(X, 0, 50)
    first = _predict(server.url, rows, "same-request")
    assert _predict(server.url, rows, "same-request") == first
    want = _graph(store, mv, X.iloc[:50], request_uniforms(seed, "same-request", 50))
    assert first == list(want["label"])
    # one row of it on its own, under an id of its own, is that id's row 0
    alone = _predict(server.url, rows[7:8], "alone-7")
    want = _graph(store, mv, X.iloc[7:8], request_uniforms(seed, "alone-7", 1))
    assert alone == list(want["label"])


def test_the_log_reproduces_each_decision(served):
    server, store, mv, X, _, sink = served
    seed = registry.load(store, mv.ref).seed
    labels = _predict(server.url, _rows(X, 100, 20), "logged-1")
    for _ in range(300):
        mine = [e for e in sink.entries if e["request_id"] == "logged-1"]
        if len(mine) == 20:
            break
        threading.Event().wait(0.01)
    assert [e["outputs"]["label"] for e in mine] == labels
    draws = request_uniforms(seed, mine[0]["request_id"], len(mine))
    again = _graph(store, mv, X.iloc[100:120], draws)
    assert list(again["label"]) == labels


def test_served_rates_are_fairlearns_within_sampling_error(served):
    """The hold-out rows, 100 a request: per group, the served selection rate is within four
    standard errors of the expected rate (fairlearn's ``_pmf_predict``, which the graph
    reproduces), so the served DP difference is the policy's."""
    server, store, mv, X, y, _ = served
    served_labels = []
    for k in range(0, len(X), 100):
        served_labels += _predict(server.url, _rows(X, k, 100), f"holdout-{k}")
    pmf = _graph(store, mv, X, np.zeros(len(X)))[DECISION_PROBABILITY].astype(np.float64)
    model = registry.load(store, mv.ref)
    np.testing.assert_allclose(pmf, model.decision_probability(X), atol=1e-6)
    chosen = np.asarray(served_labels) == POS
    sex = X["sex"].to_numpy()
    rates = {}
    for g in ("Female", "Male"):
        rows = sex == g
        rates[g] = chosen[rows].mean()
        se = np.sqrt(np.sum(pmf[rows] * (1 - pmf[rows]))) / rows.sum()
        assert abs(rates[g] - pmf[rows].mean()) <= 4 * se + 1e-3, (g, rates[g], se)
    assert abs(rates["Female"] - rates["Male"]) <= 0.05
    assert np.mean(chosen == (y == POS)) > 0.75


def test_a_row_without_the_sensitive_column_is_refused_naming_it(served):
    server, _, _, X, _, _ = served
    rows = _rows(X, 0, 2)
    del rows[1]["sex"]
    status, _, data = call(server.url, "POST", "/models/adult/predict", {"rows": rows})
    body = json.loads(data)
    assert status == 422 and "sex" in json.dumps(body)


def test_the_card_declares_the_sensitive_input_with_its_warning(served):
    from keel.audit import audit, model_card

    _, store, mv, _, _, _ = served
    audit(store, mv.ref, sections=["performance"], seed=0, n_boot=20)
    card = model_card(store, mv.ref)
    inputs = {c["name"]: c for c in card.sections["model"]["inputs"]}
    assert inputs["sex"].get("sensitive") is True and not inputs["age"].get("sensitive")
    text = card.markdown()
    assert "yes: decides by it" in text
    assert "sensitive feature(s) sex at decision time" in text
    assert "may be unlawful in some jurisdictions" in text and "user's decision" in text
    assert "may be unlawful in some jurisdictions" in card.html()


def test_every_protocol_draws_the_same_way(served):
    """MLflow's /invocations and the Open Inference Protocol answer a request id as the
    simple route does."""
    server, _, mv, X, _, _ = served
    rows = _rows(X, 200, 30)
    want = _predict(server.url, rows, "proto-1")
    status, _, data = call(
        server.url,
        "POST",
        "/invocations",
        {"dataframe_records": rows},
        headers={"x-request-id": "proto-1"},
    )
    assert status == 200 and json.loads(data)["predictions"] == want
    inputs = []
    for c in mv.input_schema:
        values = [r[c["name"]] for r in rows]
        text = c["type"] in ("string", "category")
        inputs.append(
            {
                "name": c["name"],
                "shape": [len(rows), 1],
                "datatype": "BYTES" if text else "FP32",
                "data": values,
            }
        )
    status, _, data = call(
        server.url,
        "POST",
        "/v2/models/adult/infer",
        {"inputs": inputs},
        headers={"x-request-id": "proto-1"},
    )
    body = json.loads(data)
    assert status == 200, body
    labels = next(o for o in body["outputs"] if o["name"] == "label")["data"]
    assert labels == want
