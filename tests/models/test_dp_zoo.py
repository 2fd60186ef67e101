"""The differentially private kinds are zoo models like the others: they train by name,
export to one ONNX graph (keel's feature transform and the model) that passes parity, serve
through keel serve with the answers they give in-process, and their ε is evidence a gate
reads (``privacy.dp.epsilon``, as for DP-SGD)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keel import registry
from keel.audit import audit, gate
from keel.audit.gates import Policy
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.export import export, to_onnx
from keel.export._parity import parity
from keel.serve import start
from keel.store import Store
from keel.train import ZOO, get_run, train
from keel.train._train import Prepared, _load_spec, build_model
from keel.train._zoo import DP_KINDS
from tests.serve._support import call_json, records

KINDS = ["dp_gaussian_nb", "dp_logistic_regression"]


def _policy(*rules: str) -> Policy:
    return Policy.from_settings({"audit": {"policy": list(rules)}})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpzoo")
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    df = adult("train").sample(3000, random_state=3)
    df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    versions = {}
    for kind in KINDS:
        res = train(store, "adult", "income", model=kind, params={"epsilon": 2.0}, seed=0)
        versions[kind] = res.register(store, kind)
        registry.set_alias(store, versions[kind].ref, "production")
    yield store, df, versions
    store.close()


def test_the_dp_kinds_are_zoo_classifiers():
    assert sorted(DP_KINDS) == KINDS and all(k in ZOO for k in KINDS)
    for kind in KINDS:
        assert ZOO[kind].tags["tasks"] == ["classification"]
        assert ZOO[kind].tags["differentially_private"]
        with pytest.raises(InvalidInput, match="differentially private models are classifiers"):
            ZOO[kind].estimator("regression")


@pytest.mark.parametrize("kind", KINDS)
def test_the_run_records_epsilon_like_dp_sgd(project, kind):
    store, _, versions = project
    run = get_run(store, versions[kind].run_id)
    assert run["metrics"]["dp_epsilon"] == 2.0 and run["params"]["model.epsilon"] == 2.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_dp_version_exports_with_parity_on_its_hold_out(project, kind):
    store, _, versions = project
    result = export(store, versions[kind].ref)
    report = result.parity
    assert report.ok and report.label_agreement == 1.0 and report.max_abs_diff < 1e-5
    assert report.rows == 600 and set(report.metrics) == {"accuracy", "roc_auc"}
    graph = store.blobs.get_bytes(result.onnx_sha)
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(graph).graph.node}
    assert "Imputer" in ops or "Where" in ops  # the feature transform is in the graph too
    assert {"LinearClassifier", "Sigmoid", "Exp", "ReduceLogSumExp"} & ops  # and the model


def test_served_answers_are_the_in_process_ones(project):
    store, df, versions = project
    server = start(store, KINDS)
    try:
        rows = records(df, 60, start=100)
        frame = df.drop(columns=["income"]).iloc[100:160]
        for kind in KINDS:
            model = registry.load(store, versions[kind].ref)
            status, body = call_json(server.url, "POST", f"/models/{kind}/predict", {"rows": rows})
            assert status == 200, body
            classes = list(model.output_schema["classes"])
            got = [[p["probabilities"][c] for c in classes] for p in body["predictions"]]
            np.testing.assert_allclose(got, model.predict_proba(frame), atol=1e-5)
            assert [p["label"] for p in body["predictions"]] == list(model.predict(frame))
    finally:
        server.stop()


def test_epsilon_is_evidence_and_a_gate_reads_it(project):
    store, _, versions = project
    ref = versions["dp_logistic_regression"].ref
    ev = audit(store, ref, sections=["privacy"], sample=300)
    dp = ev.doc["privacy"]["dp"]
    assert dp["differentially_private"] and dp["epsilon"] == 2.0
    assert dp["estimator"] == "DPLogisticRegression"
    assert gate(store, ref, _policy("privacy.dp.epsilon <= 3")).passed
    failed = gate(store, ref, _policy("privacy.dp.epsilon <= 1"))
    assert not failed.passed and failed.checks[0]["value"] == 2.0
    loose = train(store, "adult", "income", model="dp_gaussian_nb", params={"epsilon": 5.0})
    mv = loose.register(store, "dp_loose")
    audit(store, mv.ref, sections=["privacy"], sample=300)
    result = gate(store, mv.ref, _policy("privacy.dp.epsilon <= 3"))
    assert not result.passed and result.checks[0]["value"] == 5.0
    assert json.loads(json.dumps(result.to_dict()))["checks"][0]["passed"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_a_multiclass_dp_model_exports_with_parity(kind):
    df = adult("train").sample(3000, random_state=5).reset_index(drop=True)
    types = {c: ("int" if df[c].dtype.kind == "i" else "string") for c in df.columns}
    inputs = [c for c in df.columns if c not in ("relationship", "income")]
    spec = _load_spec(None, {c: types[c] for c in [*inputs, "relationship"]}, "relationship")
    schema = [{"name": c, "type": types[c]} for c in inputs]
    prep = Prepared(df.iloc[:2400], df.iloc[2400:], "relationship", "classification", spec, schema)
    model = build_model(prep, kind, {"epsilon": 5.0}, seed=0)
    assert len(model.classes_) == 6
    report = parity(model, to_onnx(model), df.iloc[2400:][inputs], df.iloc[2400:]["relationship"])
    assert report.ok, report.failures()
    assert report.label_agreement == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_sample_weights_are_refused_naming_why(project, kind):
    store, df, _ = project
    n = int(len(df) * 0.8)
    with pytest.raises(InvalidInput, match="sample weights are not supported"):
        train(store, "adult", "income", model=kind, sample_weight=np.ones(n), seed=0)


def test_an_int8_variant_keeps_its_parents_epsilon(project):
    from keel.export import export_variants

    store, _, versions = project
    _, _, refs = export_variants(
        store, versions["dp_logistic_regression"].ref, quantize="int8", repeats=5
    )
    ev = audit(store, refs[0], sections=["privacy"], sample=300)
    dp = ev.doc["privacy"]["dp"]
    assert dp["differentially_private"] and dp["epsilon"] == 2.0
    assert dp["inherited_from"] == versions["dp_logistic_regression"].ref
    assert "without reading data" in dp["scope"]
    assert gate(store, refs[0], _policy("privacy.dp.epsilon <= 3")).passed


@pytest.mark.parametrize("kind", KINDS)
def test_search_is_refused_because_each_trial_spends_epsilon(project, kind):
    from keel.train import search

    store = project[0]
    with pytest.raises(InvalidInput, match="n trials spend n·ε"):
        search(store, "adult", "income", model=kind, n_trials=2)
    with pytest.raises(InvalidInput, match="search is refused"):
        ZOO[kind].space(None)
