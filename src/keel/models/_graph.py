"""The ONNX graph contract that a served keel model answers through.

The graph's inputs and outputs (which keel.export writes and the model server and
:class:`~keel.models.OnnxModel` feed):

* **inputs**: one per raw column of ``model.input_schema``, named as the column, shape
  ``[None, 1]``. Text columns (logical type ``string`` or ``category``) are
  ``tensor(string)`` and the empty string ``""`` means missing. Number and bool columns
  (``int``, ``float``, ``bool``) are ``tensor(float)`` (float32; bool as 0/1) and NaN
  means missing. Integers above 2**24 lose precision in float32.
* a **tensor** input (``type`` ``"tensor"`` with a per-row ``shape``, images and
  sequences) is one graph input named as it, ``[None, *shape]`` float32.
* **outputs**: classification gives ``label`` ``[N]`` (the class, string or int64) and
  ``probabilities`` ``[N, n_classes]`` float in the order of ``output_schema["classes"]``
  (a plain tensor, no ZipMap); regression gives ``variable`` ``[N, 1]`` float.

:func:`onnx_inputs` turns raw rows into that feed; :func:`check_graph` refuses a graph that
is malformed or that onnxruntime cannot load. Both live here, beside the ONNX adapter, so
the model layer needs nothing from keel.export (which writes such graphs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = [
    "LABEL",
    "PREDICTION",
    "PROBABILITIES",
    "check_graph",
    "onnx_input_type",
    "onnx_inputs",
    "output_names",
]

LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTION = "variable"

_TEXT_TYPES = frozenset({"string", "category"})
_NUMBER_TYPES = frozenset({"int", "float", "bool"})


def output_names(task: str) -> list[str]:
    """The graph's outputs for ``task``."""
    return [LABEL, PROBABILITIES] if task == "classification" else [PREDICTION]


def onnx_input_type(column: Mapping[str, Any]) -> str:
    """``"string"`` or ``"float"``: the graph input type of one ``input_schema`` entry."""
    name, logical = column.get("name"), column.get("type")
    if logical == "tensor":
        return "float"
    if logical in _TEXT_TYPES:
        return "string"
    if logical in _NUMBER_TYPES:
        return "float"
    if logical == "datetime":
        raise InvalidInput(
            f"to_onnx: column {name!r} is a datetime, which cannot be exported: ONNX has no "
            "date parsing. Split it into numeric columns (year, month, ...) before training"
        )
    raise InvalidInput(
        f"input_schema: column {name!r} has type {logical!r}; expected one of "
        f"{', '.join(sorted(_TEXT_TYPES | _NUMBER_TYPES))}"
    )


def onnx_inputs(frame: Any, input_schema: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The feed dict for an exported graph from raw rows (a DataFrame, a list of records,
    or a dict of columns): one ``[N, 1]`` array per schema column; text as an object
    array of ``str`` with ``""`` for missing (None, NaN, pd.NA); numbers and bools as
    float32 with NaN for missing. Extra columns are ignored; a missing column, or a value
    that is not a number in a numeric column, is refused, naming it.

    A tensor input (``type`` ``"tensor"``, per-row ``shape``) is fed as one ``[N, *shape]``
    float32 array, from a DataFrame column of arrays, a mapping of arrays, or the array
    itself; a wrong shape or a NaN is refused, naming the expected and the given shape."""
    if any(c.get("type") == "tensor" for c in input_schema):
        from keel.models._torch import tensor_input

        return {str(c["name"]): tensor_input(frame, c) for c in input_schema}
    names = [str(c["name"]) for c in input_schema]
    columns = _columns_of(frame, names)
    feed: dict[str, np.ndarray] = {}
    for column, name in zip(input_schema, names, strict=True):
        values = columns[name]
        if onnx_input_type(column) == "string":
            feed[name] = _text(values)
        else:
            feed[name] = _numbers(values, name)
    return feed


_SMALL = 256  # rows; below this one object block beats pandas' per-column access


def _columns_of(frame: Any, names: list[str]) -> dict[str, Any]:
    """Each wanted column's values as a 1-d sequence."""
    if isinstance(frame, pd.DataFrame):
        where = {str(c): i for i, c in enumerate(frame.columns)}
        _check_present(names, where)
        if len(frame) <= _SMALL:
            column = getattr(frame, "_get_column_array", None)  # pandas' cheap column access
            if column is not None:
                return {n: column(where[n]) for n in names}
            block = frame.to_numpy(dtype=object)
            return {n: block[:, where[n]] for n in names}
        return {n: frame.iloc[:, where[n]].to_numpy() for n in names}
    if isinstance(frame, Mapping):
        present = {str(c): c for c in frame}
        _check_present(names, present)
        return {n: _sequence(frame[present[n]]) for n in names}
    if isinstance(frame, list) and all(isinstance(r, Mapping) for r in frame):
        _check_present(names, {str(k) for r in frame for k in r})
        return {n: [r.get(n) for r in frame] for n in names}
    raise InvalidInput(
        "model input: expected a pandas DataFrame, a list of records or a dict of columns, "
        f"got {type(frame).__name__}"
    )


def _check_present(names: list[str], present: Any) -> None:
    lacking = [n for n in names if n not in present]
    if lacking:
        raise InvalidInput(
            f"model input: missing column(s) {', '.join(map(repr, lacking))}; "
            f"the model reads {', '.join(names)}"
        )


def _sequence(values: Any) -> Any:
    if isinstance(values, pd.Series):
        return values.to_numpy()
    if isinstance(values, np.ndarray | list | tuple):
        return values
    return [values]  # one row given as scalars


def _na(value: Any) -> bool:
    return value is None or value is pd.NA or value != value  # NaN and NaT differ from self


def _text(values: Any) -> np.ndarray:
    out = np.empty((len(values), 1), dtype=object)
    out[:, 0] = ["" if _na(v) else v if type(v) is str else str(v) for v in values]
    return out


def _numbers(values: Any, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float32).reshape(-1, 1)
    out = np.empty((len(values), 1), dtype=np.float32)
    for i, v in enumerate(values):
        try:
            out[i, 0] = np.nan if _na(v) else float(v)
        except (TypeError, ValueError):
            raise InvalidInput(f"column {name!r} row {i}: expected a number, got {v!r}") from None
    return out


# --------------------------------------------------------------------------- graph check


def check_graph(onnx_model: Any, session_options: Any = None) -> Any:
    """Refuse a graph that is malformed (a node reading a value nothing defines, a
    declared output nothing produces, anything ``onnx.checker`` rejects) or that
    onnxruntime cannot load; return an ``onnxruntime.InferenceSession`` for it."""
    import onnx
    import onnxruntime as ort

    proto = _proto(onnx_model)
    _check_wiring(proto.graph)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise InvalidInput(f"ONNX graph: onnx.checker refuses it: {_first_line(exc)}") from None
    try:
        return ort.InferenceSession(
            proto.SerializeToString(), session_options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise InvalidInput(f"ONNX graph: onnxruntime cannot load it: {_first_line(exc)}") from None


def _proto(onnx_model: Any) -> Any:
    import onnx

    if isinstance(onnx_model, onnx.ModelProto):
        return onnx_model
    if isinstance(onnx_model, bytes | bytearray):
        try:
            return onnx.load_model_from_string(bytes(onnx_model))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise InvalidInput(f"ONNX graph: not an ONNX model ({_first_line(exc)})") from None
    raise InvalidInput(
        f"ONNX graph: expected an onnx.ModelProto or its bytes, got {type(onnx_model).__name__}"
    )


def _check_wiring(graph: Any) -> None:
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    for k, node in enumerate(graph.node):
        for name in node.input:
            if name not in known:
                raise InvalidInput(
                    f"ONNX graph: node {k} ({node.op_type} {node.name!r}) reads {name!r}, "
                    "which no graph input, initializer or earlier node provides"
                )
        known.update(node.output)
    for out in graph.output:
        if out.name not in known:
            raise InvalidInput(
                f"ONNX graph: declared output {out.name!r} is produced by no node, input or "
                "initializer"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
