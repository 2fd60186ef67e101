"""parity and check_graph: the graph answers like the model, and a broken graph is refused."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper

from keel.errors import InvalidInput
from keel.export._convert import onnx_inputs, to_onnx
from keel.export._converters import onnx_ready, register
from keel.export._parity import ParityReport, Tolerance, check_graph, parity
from keel.features import FeatureSpec, compile_spec
from keel.models import load_model, save_model
from keel.store import MemoryBlobStore
from keel.train import ZOO
from keel.train._train import Prepared, _load_spec, build_model


@pytest.mark.parametrize(
    ("kind", "task"),
    [
        (kind, task)
        for kind in sorted(ZOO)
        for task in ZOO[kind].tags.get("tasks", ["classification", "regression"])
    ],
)
def test_every_zoo_model_meets_the_default_tolerance(fit, adult_split, kind, task):
    model = fit(kind, task)
    test = adult_split.test
    X, y = test[adult_split.inputs(task)], test[adult_split.target(task)]
    report = parity(model, to_onnx(model), X, y)
    assert report.ok, report.failures()
    assert report.check() is report
    assert report.rows == len(test) == 400
    # the hold-out rows hold unseen categories and missing values the model never saw
    unseen = adult_split.unseen
    assert test[list(unseen)].isin(list(unseen.values())).any().all()
    assert test[["age", "occupation", "education"]].isna().any().all()
    if task == "classification":
        assert report.label_agreement == 1.0
        assert set(report.metrics) == {"accuracy", "roc_auc"}
        assert report.max_abs_diff < 1e-5
    else:
        assert report.label_agreement is None
        assert set(report.metrics) == {"rmse"}
        assert report.max_rel_diff < 1e-5
    for pair in report.metrics.values():
        assert pair["model"] == pytest.approx(pair["onnx"], abs=1e-5)


@pytest.mark.parametrize("kind", ["lightgbm", "random_forest"])
def test_multiclass_and_int_labels_after_a_store_round_trip(adult_split, kind):
    """What the registry hands the exporter: a model loaded back from its artifact."""
    train, test = adult_split.train.copy(), adult_split.test.copy()
    for frame in (train, test):
        frame["rich"] = (frame["income"] == ">50K").astype(int)
    types = {**adult_split.types, "rich": "int"}
    params = {"n_estimators": 10}
    for target in ("relationship", "rich"):
        inputs = [c for c in train.columns if c not in (target, "income", "rich")]
        spec = _load_spec(None, {c: types[c] for c in [*inputs, target]}, target)
        schema = [{"name": c, "type": types[c]} for c in inputs]
        prep = Prepared(train, test, target, "classification", spec, schema)
        blobs = MemoryBlobStore()
        model = load_model(blobs, save_model(build_model(prep, kind, params, 0), blobs))
        report = parity(model, to_onnx(model), test[inputs], test[target])
        assert report.ok, (target, report.failures())
        assert set(report.metrics) == {"accuracy", "roc_auc"}


def test_report_to_dict_is_plain_data(fit, adult_split):
    model = fit("random_forest")
    X = adult_split.test[adult_split.inputs("classification")]
    out = parity(model, to_onnx(model), X, adult_split.test["income"]).to_dict()
    assert out["ok"] is True and out["task"] == "classification" and out["rows"] == 400
    assert set(out) >= {"label_agreement", "max_abs_diff", "p99_abs_diff", "metrics"}
    assert out["tolerance"] == {
        "label_agreement": 0.999,
        "max_abs_diff": 1e-4,
        "p99_abs_diff": 1e-5,
        "max_rel_diff": 1e-4,
        "metric_diff": 1e-4,
    }
    assert all(isinstance(v, float) for v in out["metrics"]["roc_auc"].values())


def test_parity_without_labels_compares_outputs_only(fit, adult_split):
    model = fit("lightgbm", "regression")
    X = adult_split.test[adult_split.inputs("regression")]
    report = parity(model, to_onnx(model).SerializeToString(), X)
    assert report.ok and report.metrics == {}


def test_a_tolerance_failure_names_what_failed(fit, adult_split):
    model = fit("mlp")
    X, y = adult_split.test[adult_split.inputs("classification")], adult_split.test["income"]
    strict = Tolerance(max_abs_diff=0.0, p99_abs_diff=0.0)  # float32 never matches exactly
    report = parity(model, to_onnx(model), X, y, tolerance=strict)
    assert not report.ok
    assert [f.split()[0] for f in report.failures()] == ["max_abs_diff", "p99_abs_diff"]
    with pytest.raises(InvalidInput, match="parity failed on 400 rows: max_abs_diff .* > 0"):
        report.check()
    assert report.check(Tolerance()) is report  # the defaults hold


def test_a_graph_of_another_model_fails_on_labels_and_metrics(fit, adult_split):
    X, y = adult_split.test[adult_split.inputs("classification")], adult_split.test["income"]
    report = parity(fit("lightgbm"), to_onnx(fit("logistic_regression")), X, y)
    failed = [f.split()[0].rstrip(":") for f in report.failures()]
    assert failed[:3] == ["label_agreement", "max_abs_diff", "p99_abs_diff"]
    assert "roc_auc" in failed
    with pytest.raises(InvalidInput, match="rows get another label.*roc_auc: model"):
        report.check()


def test_regression_failures_are_relative_to_the_prediction():
    base = {"task": "regression", "rows": 10, "label_agreement": None, "p99_abs_diff": 0.0}
    big = ParityReport(**base, max_abs_diff=0.05, max_rel_diff=5e-8)  # 0.05 on 1e6
    assert big.ok
    off = ParityReport(
        **base,
        max_abs_diff=0.5,
        max_rel_diff=0.01,
        metrics={"rmse": {"model": 10.0, "onnx": 10.5}},
    )
    assert [f.split()[0] for f in off.failures()] == ["max_rel_diff", "rmse:"]


@pytest.mark.parametrize(
    "field, value", [("max_abs_diff", -1), ("label_agreement", 1.5), ("metric_diff", "x")]
)
def test_a_bad_tolerance_is_refused(field, value):
    with pytest.raises(InvalidInput, match=f"tolerance {field}"):
        Tolerance(**{field: value})


def test_parity_refuses_mismatched_rows(fit, adult_split):
    model = fit("lightgbm")
    X = adult_split.test[adult_split.inputs("classification")]
    with pytest.raises(InvalidInput, match="X has 400 rows but y has 3"):
        parity(model, to_onnx(model), X, adult_split.test["income"][:3])
    with pytest.raises(InvalidInput, match="X has no rows"):
        parity(model, to_onnx(model), X.iloc[:0])


def test_the_transform_part_matches_scikit_learn_column_by_column():
    """Encoders and imputers, value by value: known, missing and unseen, with NaN as a
    learned category and infrequent buckets."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    rng = np.random.default_rng(0)
    colors = rng.choice(
        ["red", "green", "blue", "teal", None], size=300, p=[0.4, 0.3, 0.2, 0.05, 0.05]
    )
    frame = pd.DataFrame(
        {
            "a": pd.Series(colors, dtype=object),
            "b": pd.Series(colors[::-1], dtype=object),
            "c": pd.Series(colors, dtype=object),
            "n": np.where(rng.random(300) < 0.1, np.nan, rng.integers(0, 4, 300)),
            "k": rng.integers(0, 3, 300).astype(float),
        }
    )
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "onehot", "columns": ["a"], "handle_unknown": "ignore"},
                {"op": "onehot", "columns": ["b"], "min_frequency": 30},
                {"op": "impute", "columns": ["c"], "strategy": "constant", "fill_value": "x"},
                {"op": "ordinal", "columns": ["c"]},
                {"op": "onehot", "columns": ["n"]},
                {"op": "ordinal", "columns": ["k"]},
            ]
        }
    )
    ct = compile_spec(spec, list(frame.columns)).fit(frame)
    schema = [{"name": c, "type": "string" if c in "abc" else "float"} for c in frame.columns]
    register()
    types = {"string": StringTensorType([None, 1]), "float": FloatTensorType([None, 1])}
    onx = convert_sklearn(
        onnx_ready(ct),
        initial_types=[(c["name"], types[c["type"]]) for c in schema],
        target_opset={"": 21, "ai.onnx.ml": 3},
    )
    rows = pd.DataFrame(
        {
            "a": ["red", None, "purple", "teal", "blue"],
            "b": ["red", None, "purple", "teal", "blue"],
            "c": ["red", None, "purple", "x", "teal"],
            "n": [0.0, np.nan, 9.0, 3.0, 1.0],
            "k": [0.0, np.nan, 7.0, 2.0, 1.0],
        }
    )
    (got,) = check_graph(onx).run(None, onnx_inputs(rows, schema))
    np.testing.assert_array_equal(got, ct.transform(rows).astype(np.float32))


# --------------------------------------------------------------------------- check_graph


def _tiny(nodes, outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, [None, 1]) for o in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_check_graph_returns_a_session_for_a_sound_graph(fit):
    session = check_graph(_tiny([helper.make_node("Relu", ["x"], ["y"])]))
    (y,) = session.run(None, {"x": np.asarray([[-1.0], [2.0]], dtype=np.float32)})
    assert y.ravel().tolist() == [0.0, 2.0]
    assert [i.name for i in check_graph(to_onnx(fit("lightgbm"))).get_inputs()][0] == "age"


def test_check_graph_refuses_a_node_reading_nothing():
    broken = _tiny([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")])
    with pytest.raises(InvalidInput, match="node 0 \\(Add 'adder'\\) reads 'ghost', which no"):
        check_graph(broken)


def test_check_graph_refuses_a_declared_output_nothing_makes():
    broken = _tiny([helper.make_node("Relu", ["x"], ["y"])], outputs=("y", "probabilities"))
    with pytest.raises(InvalidInput, match="declared output 'probabilities' is produced by no"):
        check_graph(broken)


def test_check_graph_refuses_what_onnx_or_onnxruntime_reject():
    unknown_op = _tiny([helper.make_node("NoSuchOp", ["x"], ["y"])])
    with pytest.raises(InvalidInput, match="ONNX graph: onnx.checker refuses it: .*NoSuchOp"):
        check_graph(unknown_op)
    with pytest.raises(InvalidInput, match="not an ONNX model"):
        check_graph(b"\x00not onnx at all")
    with pytest.raises(InvalidInput, match="expected an onnx.ModelProto or its bytes"):
        check_graph("model.onnx")
    assert math.isclose(Tolerance().max_abs_diff, 1e-4)
