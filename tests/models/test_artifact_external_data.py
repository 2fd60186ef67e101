"""A stored ONNX graph must hold all its weights: a tensor anywhere in it (a sparse
initializer included) that names external data is refused before onnxruntime, which resolves
such a name against the working directory of a model given as bytes, ever sees it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from keel.errors import UnsafeArtifact
from keel.models._artifact import _refuse_external_data

SECRET = 1234.5


def _sparse_external_graph() -> bytes:
    """prediction = age + bias, bias a sparse initializer whose values are in secret.bin."""
    values = TensorProto(name="bias", data_type=TensorProto.FLOAT, dims=[1])
    entry = values.external_data.add()
    entry.key, entry.value = "location", "secret.bin"
    values.data_location = TensorProto.EXTERNAL
    indices = TensorProto(name="i", data_type=TensorProto.INT64, dims=[1], int64_data=[0])
    sparse = onnx.SparseTensorProto(values=values, indices=indices, dims=[1, 1])
    graph = helper.make_graph(
        [helper.make_node("Add", ["age", "bias"], ["prediction"])],
        "g",
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, None)],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def test_a_sparse_initializer_with_external_data_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.array([SECRET], np.float32).tofile(tmp_path / "secret.bin")
    graph = _sparse_external_graph()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"age": np.zeros((1, 1), np.float32)})[0]
    assert got.ravel().tolist() == [SECRET]  # what onnxruntime would do with it
    with pytest.raises(UnsafeArtifact, match="tensor 'bias' points at external data"):
        _refuse_external_data(graph)
