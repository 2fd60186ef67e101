"""to_onnx: one graph from raw columns to labels and probabilities; onnx_inputs feeds it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline

from keel.errors import InvalidInput
from keel.export._convert import (
    LABEL,
    PREDICTION,
    PROBABILITIES,
    onnx_input_type,
    onnx_inputs,
    output_names,
    to_onnx,
)
from keel.export._parity import parity
from keel.features import FeatureSpec
from keel.models import SklearnModel
from keel.train._train import Prepared, build_model

STRING, FLOAT = onnx.TensorProto.STRING, onnx.TensorProto.FLOAT


def _session(onx: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])


def _shape(value: onnx.ValueInfoProto) -> list[object]:
    return [d.dim_value or d.dim_param or None for d in value.type.tensor_type.shape.dim]


def test_graph_inputs_are_the_raw_columns_with_their_types(fit, adult_split):
    model = fit("lightgbm")
    graph = to_onnx(model).graph
    assert [i.name for i in graph.input] == adult_split.inputs("classification")
    for value, column in zip(graph.input, model.input_schema, strict=True):
        expected = STRING if column["type"] == "string" else FLOAT
        assert value.type.tensor_type.elem_type == expected, column
        assert len(value.type.tensor_type.shape.dim) == 2
        assert value.type.tensor_type.shape.dim[1].dim_value == 1
    assert "hours-per-week" in [i.name for i in graph.input]  # not renamed hours_per_week


def test_classifier_outputs_label_and_a_plain_probability_tensor(fit):
    onx = to_onnx(fit("lightgbm"))
    outputs = {o.name: o for o in onx.graph.output}
    assert list(outputs) == [LABEL, PROBABILITIES] == output_names("classification")
    assert outputs[PROBABILITIES].type.tensor_type.elem_type == FLOAT  # not seq(map)
    assert _shape(outputs[PROBABILITIES])[1] == 2
    assert outputs[LABEL].type.tensor_type.elem_type == STRING
    assert "ZipMap" not in {n.op_type for n in onx.graph.node}


def test_regressor_outputs_one_prediction_column(fit, adult_split):
    model = fit("lightgbm", "regression")
    onx = to_onnx(model)
    assert [o.name for o in onx.graph.output] == [PREDICTION] == output_names("regression")
    X = adult_split.test[adult_split.inputs("regression")]
    (pred,) = _session(onx).run(None, onnx_inputs(X, model.input_schema))
    assert pred.shape == (len(X), 1) and pred.dtype == np.float32
    np.testing.assert_allclose(pred.ravel(), model.predict(X), rtol=1e-5)


def test_graph_is_lean_and_self_describing(fit):
    onx = to_onnx(fit("lightgbm"))
    ops = [n.op_type for n in onx.graph.node]
    assert ops.count("TreeEnsembleClassifier") == 1
    # one lookup per text column; no string copies (Concat/Split/Where over text)
    assert ops.count("LabelEncoder") == 8
    assert "Split" not in ops and "Where" not in ops
    assert len(ops) < 25, ops
    meta = {p.key: p.value for p in onx.metadata_props}
    assert meta["keel.task"] == "classification"
    assert onx.producer_name == "keel"


def test_unseen_categories_and_missing_values_do_not_fail(fit, adult_split):
    model = fit("lightgbm")
    X = adult_split.test[adult_split.inputs("classification")].iloc[:1].copy()
    rows = pd.concat([X] * 3, ignore_index=True).astype(object)
    for column in model.input_schema:
        if column["type"] == "string":  # row 0: every text value unseen
            rows.loc[0, column["name"]] = "never seen in training"
        rows.loc[1, column["name"]] = None  # row 1: everything missing
    labels, proba = _session(to_onnx(model)).run(None, onnx_inputs(rows, model.input_schema))
    np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-5)
    assert list(labels) == list(model.predict(rows))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # unscaled products
def test_every_feature_op_but_date_parts_exports(adult_split):
    """impute, clip, log, scale (all methods), interact, onehot (NaN as a category,
    infrequent buckets), ordinal, passthrough of bools and of numbers written as text."""
    spec = FeatureSpec.from_dict(
        {
            "target": "income",
            "steps": [
                {"op": "impute", "columns": ["age", "fnlwgt", "capital-gain"]},
                {"op": "clip", "columns": ["age"], "lower": 18, "upper": 70},
                {"op": "log", "columns": ["capital-gain", "fnlwgt"]},
                {"op": "scale", "columns": ["fnlwgt"], "method": "robust"},
                {"op": "scale", "columns": ["age"], "method": "minmax"},
                {"op": "scale", "columns": ["capital-gain"], "method": "standard"},
                {"op": "interact", "columns": ["age", "education-num", "hours-per-week"]},
                {"op": "onehot", "columns": ["education", "native-country"], "min_frequency": 20},
                {
                    "op": "impute",
                    "columns": ["occupation"],
                    "strategy": "most_frequent",
                },
                {"op": "onehot", "columns": ["occupation"], "max_categories": 6},
                {"op": "ordinal", "columns": ["workclass", "race"]},
                {"op": "passthrough", "columns": ["male", "loss"]},
                {"op": "impute", "columns": ["male", "loss"], "strategy": "most_frequent"},
            ],
        }
    )
    train, test = (_with_bool_and_text_number(f) for f in (adult_split.train, adult_split.test))
    types = {**adult_split.types, "male": "bool", "loss": "string"}
    columns = [c for c in train.columns if c != "income"]
    schema = [{"name": c, "type": types[c]} for c in columns]
    prep = Prepared(train, test, "income", "classification", spec, schema)
    for kind in ("lightgbm", "logistic_regression"):
        model = build_model(prep, kind, {"n_estimators": 20} if kind == "lightgbm" else None, 0)
        onx = to_onnx(model)
        report = parity(model, onx, test[columns], test["income"])
        assert report.ok, (kind, report.failures())
        graph_types = {i.name: i.type.tensor_type.elem_type for i in onx.graph.input}
        assert graph_types["male"] == FLOAT and graph_types["loss"] == STRING


def _with_bool_and_text_number(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["male"] = pd.array(frame["sex"] == "Male", dtype="boolean")
    out.loc[out.index[::50], "male"] = pd.NA
    loss = frame["capital-loss"].astype(str).astype(object)
    loss[loss.index[::40]] = None
    out["loss"] = loss
    return out


def test_date_parts_is_refused_with_the_reason_and_what_to_do(adult_split):
    train = adult_split.train.copy()
    train["signup"] = pd.date_range("2020-01-01", periods=len(train), freq="h").astype(str)
    spec = FeatureSpec.from_dict(
        {
            "target": "income",
            "steps": [
                {"op": "impute", "columns": ["age"]},
                {"op": "date_parts", "columns": ["signup"], "parts": ["month", "hour"]},
            ],
        }
    )
    schema = [{"name": "age", "type": "int"}, {"name": "signup", "type": "string"}]
    prep = Prepared(train, train, "income", "classification", spec, schema)
    model = build_model(prep, "lightgbm", {"n_estimators": 5}, 0)
    with pytest.raises(InvalidInput) as err:
        to_onnx(model)
    message = str(err.value)
    assert "'signup'" in message and "date_parts" in message
    assert "ONNX has no date parsing" in message and "numeric columns" in message


def test_a_datetime_input_is_refused():
    with pytest.raises(InvalidInput, match="'when' is a datetime.*ONNX has no date parsing"):
        onnx_input_type({"name": "when", "type": "datetime"})
    with pytest.raises(InvalidInput, match="'x' has type 'blob'"):
        onnx_input_type({"name": "x", "type": "blob"})


class _NoConverter(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X):
        return np.tile(np.eye(len(self.classes_))[0], (len(X), 1))


def test_a_model_without_converter_is_refused_naming_it(fit, adult_split):
    features = fit("lightgbm").transformer.steps[0][1]
    X = adult_split.train[adult_split.inputs("classification")]
    pipe = Pipeline([("features", features), ("model", _NoConverter())])
    pipe[-1].fit(features.transform(X), adult_split.train["income"])
    model = SklearnModel(pipe, "classification", adult_split.schema("classification"))
    with pytest.raises(
        InvalidInput,
        match=(
            "_NoConverter has no ONNX converter"
            ".*lightgbm.*dp_logistic_regression.*dp_gaussian_nb"
        ),
    ):
        to_onnx(model)
    with pytest.raises(InvalidInput, match="expected a fitted keel model"):
        to_onnx(object())


def test_a_column_named_like_an_output_is_refused(fit):
    model = fit("lightgbm")
    model_schema = model.input_schema
    try:
        model.input_schema = [{"name": "label", "type": "string"}, *model_schema[1:]]
        with pytest.raises(InvalidInput, match="'label' has the name of a graph output"):
            to_onnx(model)
    finally:
        model.input_schema = model_schema


def test_export_leaves_the_model_as_it_was(fit, adult_split):
    model = fit("hist_gradient_boosting")
    X = adult_split.test[adult_split.inputs("classification")]
    before = model.predict_proba(X)
    entries = [t for _, t, _ in model.pipeline[0].transformers_]
    to_onnx(model)
    assert [t for _, t, _ in model.pipeline[0].transformers_] == entries
    np.testing.assert_array_equal(model.predict_proba(X), before)


# --------------------------------------------------------------------------- onnx_inputs

SCHEMA = [
    {"name": "city", "type": "string"},
    {"name": "age", "type": "int"},
    {"name": "member", "type": "bool"},
]


def test_onnx_inputs_marks_missing_text_empty_and_missing_numbers_nan():
    frame = pd.DataFrame(
        {
            "city": ["Oslo", None, np.nan, 7],
            "age": [31, None, 4.5, np.nan],
            "member": [True, False, None, True],
            "extra": [1, 2, 3, 4],
        }
    )
    feed = onnx_inputs(frame, SCHEMA)
    assert list(feed) == ["city", "age", "member"]
    assert feed["city"].dtype == object and feed["city"].shape == (4, 1)
    assert feed["city"].ravel().tolist() == ["Oslo", "", "", "7"]
    assert feed["age"].dtype == np.float32 and feed["age"].shape == (4, 1)
    np.testing.assert_array_equal(feed["age"].ravel(), [31, np.nan, 4.5, np.nan])
    np.testing.assert_array_equal(feed["member"].ravel(), [1, 0, np.nan, 1])


def test_onnx_inputs_takes_records_and_columns_alike():
    records = [{"city": "Oslo", "age": 31, "member": True}, {"city": None, "age": None}]
    columns = {"city": ["Oslo", None], "age": [31, None], "member": [True, None]}
    for given in (records, columns, pd.DataFrame(records), pd.DataFrame(records * 300)):
        feed = onnx_inputs(given, SCHEMA)
        assert feed["city"][:2].ravel().tolist() == ["Oslo", ""]
        np.testing.assert_array_equal(feed["member"][:2].ravel(), [1, np.nan])


def test_onnx_inputs_rejects_a_missing_column_naming_it():
    with pytest.raises(InvalidInput, match="missing column\\(s\\) 'age'; the model reads"):
        onnx_inputs(pd.DataFrame({"city": ["Oslo"], "member": [True]}), SCHEMA)
    with pytest.raises(InvalidInput, match="'member'"):
        onnx_inputs([{"city": "Oslo", "age": 3}], SCHEMA)


def test_onnx_inputs_rejects_text_in_a_number_column_naming_row_and_value():
    frame = pd.DataFrame({"city": ["a", "b"], "age": [3, "forty"], "member": [True, False]})
    with pytest.raises(InvalidInput, match="column 'age' row 1: expected a number, got 'forty'"):
        onnx_inputs(frame, SCHEMA)
    with pytest.raises(InvalidInput, match="expected a pandas DataFrame"):
        onnx_inputs("city,age", SCHEMA)
