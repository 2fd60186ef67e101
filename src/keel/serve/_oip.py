"""Open Inference Protocol v2 tensors (KServe, Triton): typed JSON tensors in, and the
binary tensor extension that Triton's clients use by default (a JSON header of
``Inference-Header-Content-Length`` bytes, then raw tensor bytes; BYTES elements as a
4-byte little-endian length and the UTF-8 bytes)."""

from __future__ import annotations

import struct
from typing import Any, TypeGuard

import numpy as np

from keel.serve._codec import (
    MAX_DETAILS,
    InputSpec,
    Problems,
    block_from_columns,
    column,
    describe,
    fast_columns,
)
from keel.serve._errors import ServeError
from keel.serve._tensors import tensor_from_oip

__all__ = [
    "decode_inputs",
    "encode_outputs",
    "output_datatype",
    "requested_outputs",
    "split_binary",
]

_NUMERIC: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes | None]:
    """The JSON part and the binary part of a request body."""
    if header_length is None:
        return body, None
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ServeError(
            "invalid_input",
            f"Inference-Header-Content-Length: expected a length within the body's "
            f"{len(body)} bytes, got {header_length[:20]!r}",
        )
    n = int(header_length)
    return body[:n], body[n:]


def decode_inputs(request: Any, spec: InputSpec, binary: bytes | None) -> dict[str, np.ndarray]:
    """The feed from ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``. A column
    is shape ``[N]`` or ``[N, 1]``; a tensor input its declared ``[N, *shape]`` and datatype
    (see :func:`keel.serve._tensors.tensor_from_oip`)."""
    tensors = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(tensors, list) or not tensors:
        raise ServeError(
            "invalid_input",
            "inputs: expected a non-empty array of tensors {name, shape, datatype, data}",
            [{"field": "inputs", "expected": "an array of tensors", "got": describe(tensors)}],
        )
    problems, kinds = Problems(), dict(zip(spec.names, spec.kinds, strict=True))
    by_tensor = {t.name: t for t in spec.tensors}
    arrays: dict[str, np.ndarray] = {}  # the tensor inputs' batches
    feed: dict[str, Any] = {}  # a column's values: a list, or an array from binary data
    offset, n_rows = 0, None
    for t in tensors:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            problems.add(None, "inputs", "a tensor object with a name", t)
            continue
        name, datatype, shape = t["name"], t.get("datatype"), t.get("shape")
        params = t.get("parameters")
        if params is not None and not isinstance(params, dict):
            problems.add(None, f"{name}.parameters", "an object", params)
            continue
        size = (params or {}).get("binary_data_size")
        raw = None
        if size is not None:
            if binary is None or type(size) is not int or not 0 <= size <= len(binary) - offset:
                problems.add(None, name, "binary_data_size within the binary body", size)
                continue
            raw, offset = binary[offset : offset + size], offset + size
        if name not in kinds:
            problems.add(None, name, f"one of the model's inputs ({', '.join(spec.names)})", name)
            continue
        if name in by_tensor:
            arr = tensor_from_oip(by_tensor[name], shape, datatype, t.get("data"), raw)
            if n_rows is not None and len(arr) != n_rows:
                problems.add(None, name, f"{n_rows} rows like the other inputs", len(arr))
                continue
            n_rows = len(arr)
            arrays[name] = arr
            continue
        if not _shape_ok(shape):
            problems.add(None, name, "shape [N] or [N, 1]", shape)
            continue
        n = shape[0]
        if n_rows is not None and n != n_rows:
            problems.add(None, name, f"{n_rows} rows like the other inputs", n)
            continue
        n_rows = n
        values = _tensor(name, kinds[name], datatype, n, t.get("data"), raw, problems)
        if values is not None:
            feed[name] = values
    for name in spec.names:
        given = name in feed or name in arrays
        if not given and not any(d.get("field") == name for d in problems.items):
            datatype = by_tensor[name].datatype if name in by_tensor else _oip_type(kinds[name])
            problems.add(None, name, f"an input tensor of {datatype}", "missing")
    problems.raise_if_any()
    assert n_rows is not None
    if arrays:
        built = {
            n: _binary_column(n, v, problems)
            if isinstance(v, np.ndarray)
            else column(n, kinds[n], v, problems)
            for n, v in feed.items()
        }
        problems.raise_if_any()
        block = block_from_columns(built, spec, n_rows)
        block.update((by_tensor[n].key, arr) for n, arr in arrays.items())
        return block
    if not any(isinstance(v, np.ndarray) for v in feed.values()):
        num = [feed[c] for c in spec.num_names]
        fast = fast_columns(num, [feed[c] for c in spec.text_names], n_rows)
        if fast is not None:
            return fast
    built = {}
    for name, values in feed.items():
        if isinstance(values, np.ndarray):
            built[name] = _binary_column(name, values, problems)
        else:
            built[name] = column(name, kinds[name], values, problems)
    problems.raise_if_any()
    return block_from_columns(built, spec)


def _binary_column(name: str, values: np.ndarray, problems: Problems) -> np.ndarray:
    """A numeric binary tensor as a float32 column; values past float32's range (and
    infinities) are refused, as in JSON."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(np.float32).reshape(-1, 1)
    bad = np.flatnonzero(np.isinf(out[:, 0]))
    for i in bad[:MAX_DETAILS]:
        problems.add(int(i), name, "a number within float32 range", values[i].item())
    problems.count += max(0, len(bad) - MAX_DETAILS)
    return out


def _shape_ok(shape: Any) -> TypeGuard[list[int]]:
    return (
        isinstance(shape, list)
        and len(shape) in (1, 2)
        and all(type(d) is int for d in shape)
        and shape[0] > 0
        and (len(shape) == 1 or shape[1] == 1)
    )


def _tensor(
    name: str, kind: str, datatype: Any, n: int, data: Any, raw: bytes | None, problems: Problems
) -> Any:
    """The tensor's values (a list, or an array from binary data), or None if refused."""
    want = _oip_type(kind)
    if kind == "string" and datatype != "BYTES":
        problems.add(None, name, "datatype BYTES", datatype)
        return None
    if kind != "string" and (not isinstance(datatype, str) or datatype not in _NUMERIC):
        problems.add(None, name, f"a numeric datatype such as {want}", datatype)
        return None
    if raw is not None:
        values = _from_binary(name, datatype, raw, problems)
        if values is None:
            return None
    else:
        if not isinstance(data, list):
            problems.add(None, name, f"data: an array of {n} values", data)
            return None
        values = _flatten(data) if data and isinstance(data[0], list) else data
    if len(values) != n:
        problems.add(None, name, f"{n} values (the shape)", f"{len(values)} values")
        return None
    if not isinstance(values, np.ndarray) and kind != "string" and datatype == "BOOL":
        values = [float(v) if type(v) is bool else v for v in values]
    return values


def _from_binary(name: str, datatype: str, raw: bytes, problems: Problems) -> Any:
    if datatype != "BYTES":
        dtype = np.dtype(_NUMERIC[datatype]).newbyteorder("<")
        if len(raw) % dtype.itemsize:
            problems.add(None, name, f"a multiple of {dtype.itemsize} bytes", f"{len(raw)} bytes")
            return None
        return np.frombuffer(raw, dtype=dtype)
    values: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            problems.add(None, name, "BYTES elements as 4-byte length + bytes", "a cut element")
            return None
        (length,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + length > len(raw):
            problems.add(len(values), name, f"{length} bytes as the element says", "a cut element")
            return None
        chunk = raw[pos + 4 : pos + 4 + length]
        pos += 4 + length
        try:
            values.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            problems.add(len(values), name, "UTF-8 text", "invalid UTF-8")
            return None
    return values


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 8:
                    return [data]  # too deep: length check reports it
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _oip_type(kind: str) -> str:
    return "BYTES" if kind == "string" else "FP32"


def output_datatype(name: str, classes: list[Any] | None) -> str:
    if name == "label" and classes is not None:
        return "BYTES" if any(isinstance(c, str) for c in classes) else "INT64"
    return "FP32"


def requested_outputs(request: dict[str, Any], names: list[str]) -> list[tuple[str, bool]]:
    """The outputs to answer with, in order, and whether each goes binary: all of them, or
    the request's ``outputs`` (each named once). Checked before the model runs (422)."""
    params = _mapping(request.get("parameters"), "parameters")
    binary_default = bool(params.get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        return [(name, binary_default) for name in names]
    items = asked if isinstance(asked, list) else [None]
    given = [o.get("name") if isinstance(o, dict) else None for o in items]
    ok = all(isinstance(n, str) and n in names for n in given)
    if not ok or len(set(given)) < len(given):
        expected = f"an array of {{name}} naming each of {', '.join(names)} at most once"
        raise ServeError(
            "invalid_input",
            f"outputs: expected {expected}, got {describe(asked)}",
            [{"field": "outputs", "expected": expected, "got": describe(asked)}],
        )
    return [
        (
            o["name"],
            bool(
                _mapping(o.get("parameters"), f"outputs {o['name']!r} parameters").get(
                    "binary_data", binary_default
                )
            ),
        )
        for o in items
        if isinstance(o, dict)  # every one is, checked above
    ]


def encode_outputs(
    outputs: dict[str, np.ndarray], wanted: list[tuple[str, bool]], classes: list[Any] | None
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The response's output tensors (JSON, or binary where asked) and the binary chunks."""
    tensors, chunks = [], []
    for name, binary in wanted:
        arr = outputs[name]
        datatype = output_datatype(name, classes)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            chunk = _to_binary(arr, datatype)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif datatype == "FP32":
            tensor["data"] = arr.astype(np.float32, copy=False).ravel()
        else:
            tensor["data"] = arr.ravel().tolist()
        tensors.append(tensor)
    return tensors, chunks


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is an object, ``{}`` if absent; anything else is refused (422)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ServeError(
            "invalid_input",
            f"{where}: expected an object, got {describe(value)}",
            [{"field": where, "expected": "an object", "got": describe(value)}],
        )
    return value


def _to_binary(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = [str(v).encode("utf-8") for v in arr.ravel().tolist()]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    dtype = "<f4" if datatype == "FP32" else "<i8"
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()
