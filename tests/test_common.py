"""Every model adapter keel registers passes the one conformance suite, keel.testing."""

import pytest

from keel.datasets import adult
from keel.features import FeatureSpec
from keel.store import MemoryBlobStore
from keel.testing import check_model
from keel.train import ZOO
from keel.train._train import Prepared, _load_spec, build_model

FAST = {
    "lightgbm": {"n_estimators": 30},
    "hist_gradient_boosting": {"max_iter": 30},
    "random_forest": {"n_estimators": 20},
    "logistic_regression": {"max_iter": 300},
    "mlp": {"max_iter": 30, "hidden_layer_sizes": [16], "early_stopping": False},
}


@pytest.fixture(scope="module")
def adult_sample():
    df = adult("train").sample(1500, random_state=0).reset_index(drop=True)
    types = {c: ("int" if df[c].dtype.kind == "i" else "string") for c in df.columns}
    inputs = [c for c in df.columns if c != "income"]
    spec = _load_spec(None, types, "income", scale=True)
    schema = [{"name": c, "type": types[c]} for c in inputs]
    return df, spec, schema


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits
@pytest.mark.parametrize("kind", sorted(ZOO))
def test_every_zoo_model_passes_check_model(adult_sample, kind):
    df, spec, schema = adult_sample
    prep = Prepared(df.iloc[:1000], df.iloc[1000:], "income", "classification", spec, schema)
    model = build_model(prep, kind, FAST[kind], seed=0)
    check_model(model, df.iloc[1000:1200][[c["name"] for c in schema]], blobs=MemoryBlobStore())


@pytest.mark.parametrize("kind", ["lightgbm", "random_forest"])
def test_regression_adapters_pass_check_model(adult_sample, kind):
    df, _, _ = adult_sample
    inputs = ["education-num", "hours-per-week", "workclass", "sex"]
    types = {
        "education-num": "int",
        "hours-per-week": "int",
        "workclass": "string",
        "sex": "string",
    }
    spec = FeatureSpec.infer(types)
    schema = [{"name": c, "type": types[c]} for c in inputs]
    prep = Prepared(df.iloc[:1000], df.iloc[1000:], "age", "regression", spec, schema)
    model = build_model(prep, kind, FAST[kind], seed=0)
    assert model.task == "regression"
    check_model(model, df.iloc[1000:1100][inputs], blobs=MemoryBlobStore())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits
@pytest.mark.parametrize("kind", sorted(ZOO))
def test_exported_onnx_model_passes_check_model(adult_sample, kind):
    from keel.export import to_onnx
    from keel.models import OnnxModel

    df, spec, schema = adult_sample
    prep = Prepared(df.iloc[:1000], df.iloc[1000:], "income", "classification", spec, schema)
    native = build_model(prep, kind, FAST[kind], seed=0)
    graph = to_onnx(native).SerializeToString()
    model = OnnxModel(graph, "classification", schema, native.classes_)
    X = df.iloc[1000:1200][[c["name"] for c in schema]]
    check_model(model, X, blobs=MemoryBlobStore())
