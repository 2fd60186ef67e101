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
    "dp_logistic_regression": {},  # ε = 1, the default
    "dp_gaussian_nb": {},
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


# --------------------------------------------------------------------------- torch kinds
# The same suite, unchanged, on PyTorch networks: tabular (torch-mlp, through keel's feature
# transform) and tensor inputs (a frame whose column holds one array per row).

TORCH_FAST = {"epochs": 2, "batch_size": 64}


def _tensor_prep(X, y, task):
    import pandas as pd

    shape = list(X.shape[1:])
    df = pd.DataFrame({"X": list(X), "y": y})
    schema = [{"name": "X", "type": "tensor", "dtype": "float32", "shape": shape}]
    cut = int(len(df) * 0.8)
    return df, Prepared(df.iloc[:cut], df.iloc[cut:], "y", task, None, schema)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_torch_mlp_passes_check_model(adult_sample, task):
    pytest.importorskip("torch")
    df, spec, schema = adult_sample
    if task == "regression":
        schema = [c for c in schema if c["name"] != "age"]
        spec = _load_spec(None, {c["name"]: c["type"] for c in schema}, "age", scale=True)
        target = "age"
    else:
        target = "income"
    prep = Prepared(df.iloc[:1000], df.iloc[1000:], target, task, spec, schema)
    model = build_model(prep, "torch-mlp", TORCH_FAST, seed=0)
    check_model(model, df.iloc[1000:1200][[c["name"] for c in schema]], blobs=MemoryBlobStore())


def test_torch_cnn_passes_check_model():
    pytest.importorskip("torch")
    from keel.datasets import digits

    X, y = digits()
    df, prep = _tensor_prep(X[:600], y[:600], "classification")
    model = build_model(prep, "torch-cnn", {**TORCH_FAST, "channels": [8, 16]}, seed=0)
    check_model(model, df.iloc[500:560][["X"]], blobs=MemoryBlobStore())


def test_torch_seq_passes_check_model():
    pytest.importorskip("torch")
    import numpy as np

    t = np.arange(700, dtype=np.float32)
    series = 10 + 5 * np.sin(2 * np.pi * t / 24)
    X = np.stack([series[i - 48 : i] for i in range(48, len(series))])
    df, prep = _tensor_prep(X, series[48:], "regression")
    model = build_model(prep, "torch-seq", {**TORCH_FAST, "layers": 2}, seed=0)
    check_model(model, df.iloc[-50:][["X"]], blobs=MemoryBlobStore())
