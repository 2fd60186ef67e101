"""Small helpers the converters share to add constants and nodes to skl2onnx's graph."""

from __future__ import annotations

from typing import Any

import numpy as np

MISSING_TEXT = ""  # how a graph's text input says "missing"

FLOAT = 1  # onnx.TensorProto.FLOAT
INT64 = 7  # onnx.TensorProto.INT64
STRING = 8  # onnx.TensorProto.STRING


def data_types() -> Any:
    from skl2onnx.common import data_types as types

    return types


def is_text(variable: Any) -> bool:
    return isinstance(variable.type, data_types().StringTensorType)


def is_missing(value: Any) -> bool:
    """None or a float NaN (as scikit-learn stores a missing category)."""
    return value is None or (isinstance(value, float | np.floating) and bool(np.isnan(value)))


def rows(operator: Any) -> Any:
    return operator.inputs[0].type.shape[0]


def width(operator: Any) -> int:
    return sum(int(v.type.shape[1]) for v in operator.inputs)


def const(scope: Any, container: Any, name: str, value: Any, dtype: int) -> str:
    """An initializer holding ``value`` (its shape kept); returns its name."""
    array = np.asarray(value)
    unique = scope.get_unique_variable_name(name)
    flat = array.ravel().tolist()
    if dtype == STRING:
        flat = [str(v).encode("utf-8") for v in flat]
    container.add_initializer(unique, dtype, list(array.shape), flat)
    return unique


def node(scope: Any, container: Any, op: str, inputs: list[str], **attrs: Any) -> str:
    """Add one node with one output; returns the output's name."""
    out = scope.get_unique_variable_name(op.lower())
    domain = attrs.pop("op_domain", "")
    extra = {"op_domain": domain, "op_version": attrs.pop("op_version")} if domain else {}
    container.add_node(op, inputs, out, name=scope.get_unique_operator_name(op), **extra, **attrs)
    return out


def merged(scope: Any, operator: Any, container: Any) -> str:
    """All inputs of ``operator`` as one [N, C] tensor."""
    names = [v.full_name for v in operator.inputs]
    if len(names) == 1:
        return names[0]
    return node(scope, container, "Concat", names, axis=1)


def columns(scope: Any, operator: Any, container: Any) -> list[tuple[str, bool]]:
    """The inputs of ``operator`` as ``(name, is_text)`` per single column; inputs that
    already are single columns are used as they are (no copy)."""
    out: list[tuple[str, bool]] = []
    for var in operator.inputs:
        n = int(var.type.shape[1])
        if n == 1:
            out.append((var.full_name, is_text(var)))
            continue
        parts = [scope.get_unique_variable_name("column") for _ in range(n)]
        split = const(scope, container, "split", [1] * n, INT64)
        container.add_node(
            "Split",
            [var.full_name, split],
            parts,
            axis=1,
            name=scope.get_unique_operator_name("Split"),
        )
        out.extend((p, is_text(var)) for p in parts)
    return out


def concat(scope: Any, container: Any, names: list[str]) -> str:
    return names[0] if len(names) == 1 else node(scope, container, "Concat", names, axis=1)


def finish(scope: Any, container: Any, last: str, operator: Any) -> None:
    """Make ``last`` the operator's output."""
    container.add_node(
        "Identity",
        [last],
        operator.outputs[0].full_name,
        name=scope.get_unique_operator_name("Identity"),
    )
