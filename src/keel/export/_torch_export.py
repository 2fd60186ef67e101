"""A :class:`~keel.models.TorchModel` as one ONNX graph, following keel's graph contract.

The network is traced by PyTorch's TorchScript exporter (``dynamo=False``, opset 17: the
dynamo exporter needs onnxscript) with a dynamic batch axis, inside a thin wrapper that adds
the contract's outputs: ``probabilities`` (Softmax of the logits) and ``label`` (ArgMax,
then a Gather from the classes, string or int64) for classification, ``variable`` ``[N, 1]``
for regression.

* A tensor model's graph reads the schema's tensor by its name, ``[N, *shape]`` float32.
* A tabular ``torch-mlp`` becomes ONE graph: keel's feature transform (converted by the same
  skl2onnx path as every tabular model, raw columns in) feeding the network, whose nodes and
  weights are added under a ``net/`` prefix after the network is brought to the transform's
  opset.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.models._graph import LABEL, PREDICTION, PROBABILITIES

__all__ = ["NET_OPSET", "torch_to_onnx"]

NET_OPSET = 17
_PREFIX = "net/"
_INDEX = "label_index"


def torch_to_onnx(model: Any, name: str | None = None) -> Any:
    """The ``onnx.ModelProto`` of a TorchModel (see the module docstring)."""
    import onnx

    tensors = [c for c in model.input_schema if c.get("type") == "tensor"]
    if model.transformer is None:
        if len(tensors) != 1:
            raise InvalidInput(
                f"to_onnx: a torch model without a feature transform reads one tensor; its "
                f"schema names {len(tensors)}"
            )
        column = tensors[0]
        shape = [int(s) for s in column.get("shape", [])]
        onx = _net_graph(model, str(column["name"]), shape)
    else:
        features, width = _transform_graph(model)
        net = _net_graph(model, "features", [width])
        onx = _join(features, net)
    onx.doc_string = "keel export of a PyTorch network: " + (
        "raw columns in, through keel's feature transform"
        if model.transformer is not None
        else f"tensor {tensors[0]['name']!r} [N, {', '.join(map(str, tensors[0]['shape']))}]"
    )
    onx.producer_name = "keel"
    onx.graph.name = name or "keel"
    meta = {
        "keel.task": model.task,
        "keel.classes": json.dumps(model.classes_),
        "keel.input_schema": json.dumps(model.input_schema),
        "keel.architecture": json.dumps(model.describe()),
    }
    del onx.metadata_props[:]
    for key, value in meta.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(onx)
    return onx


# --------------------------------------------------------------------------- the network


def _wrapper(model: Any) -> Any:
    import torch

    class Contract(torch.nn.Module):
        """The network plus the contract's outputs (the label's class lookup comes after)."""

        def __init__(self, net: Any, classification: bool) -> None:
            super().__init__()
            self.net, self.classification = net, classification

        def forward(self, x: Any) -> Any:
            out = self.net(x)
            if self.classification:
                return torch.softmax(out, dim=1), torch.argmax(out, dim=1)
            return out[:, :1]

    return Contract(model.net, model.task == "classification").eval()


def _net_graph(model: Any, input_name: str, shape: list[int]) -> Any:
    """The network alone: ``input_name`` ``[N, *shape]`` float32 in, the contract out."""
    import io

    import onnx
    import torch

    classification = model.task == "classification"
    outputs = [PROBABILITIES, _INDEX] if classification else [PREDICTION]
    dummy = torch.zeros([2, *shape], dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            torch.onnx.export(
                _wrapper(model),
                (dummy,),
                buf,  # type: ignore[arg-type]  # the TorchScript exporter takes a file object too
                input_names=[input_name],
                output_names=outputs,
                dynamic_axes={n: {0: "N"} for n in [input_name, *outputs]},
                opset_version=NET_OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
        except Exception as exc:  # torch raises many kinds; name the network and the cause
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInput(
                f"to_onnx: the network {model.architecture!r} does not export to ONNX "
                f"(opset {NET_OPSET}): {first}"
            ) from None
    onx = onnx.load_from_string(buf.getvalue())
    if classification:
        _add_label(onx, model.classes_)
    return onx


def _add_label(onx: Any, classes: list[Any]) -> None:
    """``label = Gather(classes, label_index)``, the classes kept as int64 or as text."""
    from onnx import TensorProto, helper, numpy_helper

    ints = all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in classes)
    table = np.asarray(classes, dtype=np.int64) if ints else np.asarray([str(c) for c in classes])
    init = numpy_helper.from_array(table.astype(object) if not ints else table, "classes")
    graph = onx.graph
    graph.initializer.append(init)
    graph.node.append(helper.make_node("Gather", ["classes", _INDEX], [LABEL], axis=0))
    index = next(o for o in graph.output if o.name == _INDEX)
    graph.output.remove(index)
    dtype = TensorProto.INT64 if ints else TensorProto.STRING
    graph.output.insert(0, helper.make_tensor_value_info(LABEL, dtype, ["N"]))


# --------------------------------------------------------------------------- tabular


def _transform_graph(model: Any) -> tuple[Any, int]:
    """keel's feature transform as an ONNX graph (raw columns in, ``features`` out) and
    the number of features."""
    from skl2onnx import convert_sklearn

    from keel.export._convert import TARGET_OPSET, _initial_types, _restore_input_names
    from keel.export._converters import onnx_ready, register

    register()
    initial = _initial_types(model.input_schema)
    ready = onnx_ready(model.transformer)
    try:
        onx = convert_sklearn(ready, initial_types=initial, target_opset=TARGET_OPSET, name="keel")
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"to_onnx: the feature transform cannot be converted: {first}") from None
    _restore_input_names(onx, [n for n, _ in initial])
    width = model.arch_kwargs.get("n_in")
    if not isinstance(width, int):  # a user's network: ask the transform itself
        width = int(model.inputs(_probe_rows(model)).shape[1])
    out = onx.graph.output[0]
    for node in onx.graph.node:
        for k, n in enumerate(node.output):
            if n == out.name:
                node.output[k] = "features"
    out.name = "features"
    del out.type.tensor_type.shape.dim[:]
    out.type.tensor_type.shape.dim.add().dim_param = "N"
    out.type.tensor_type.shape.dim.add().dim_value = width
    return onx, width


def _probe_rows(model: Any) -> Any:
    import pandas as pd

    row = {
        c["name"]: (0.0 if c["type"] in ("int", "float", "bool") else "x")
        for c in model.input_schema
    }
    return pd.DataFrame([row])


def _join(features: Any, net: Any) -> Any:
    """One graph: the transform's nodes, then the network's (names prefixed, at the
    transform's opset), the network reading ``features``."""
    import onnx
    from onnx import version_converter

    main = next(o.version for o in features.opset_import if o.domain in ("", "ai.onnx"))
    net = version_converter.convert_version(net, main)
    rename = {v.name: _PREFIX + v.name for v in net.graph.initializer}
    rename.update({o: _PREFIX + o for n in net.graph.node for o in n.output if o})
    rename["features"] = "features"
    for out in net.graph.output:
        rename[out.name] = out.name
    for node in net.graph.node:
        node.name = _PREFIX + node.name
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    for init in net.graph.initializer:
        init.name = rename[init.name]
    graph = features.graph
    graph.node.extend(net.graph.node)
    graph.initializer.extend(net.graph.initializer)
    graph.value_info.append(graph.output[0])
    del graph.output[:]
    graph.output.extend(net.graph.output)
    features.ir_version = max(features.ir_version, net.ir_version)
    onnx.checker.check_model(features)
    return features
