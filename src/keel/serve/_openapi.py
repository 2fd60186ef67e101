"""The OpenAPI 3.1 document, made from the route table and the models served now.

It describes every answer an endpoint gives by design: the success body, and each error
status with the codes behind it (``{"error": {...}}``; on ``/v2`` the Open Inference
Protocol's flat ``{"error": message, "code", ...}``; on MLflow's routes MLflow's
``{"error_code", "message"}`` beside keel's ``error``, with MLflow's statuses). Path and
query parameters that name a model list the served names. Request bodies are as exact as
JSON Schema allows; what it cannot say (columns of equal length, a tensor's data as long as
its shape, every input present) is in the operation's description and answered with 422
(400 on MLflow's ``/invocations``). A model's tensor input is described with its declared
shape: nested arrays of that shape in a row, and on ``/v2`` its ``[N, *shape]`` and
datatype; another shape or datatype is answered with 400 ``invalid_tensor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel.serve import _mlflow as scoring
from keel.serve._codec import F32_OVERFLOW
from keel.serve._errors import STATUS

__all__ = ["openapi_document"]

_NUMERIC_TYPES = ["FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64"]
_UNSIGNED_TYPES = ["UINT8", "UINT16", "UINT32", "UINT64", "BOOL"]
_DATATYPES = ["BYTES", *_NUMERIC_TYPES, *_UNSIGNED_TYPES]
_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


_STR, _INT, _BOOL, _NUM = (
    {"type": "string"},
    {"type": "integer"},
    {"type": "boolean"},
    {"type": "number"},
)
_DETAILS = {
    "type": "array",
    "items": _object(row=_INT, field=_STR, expected=_STR, got=_STR),
}
_ERROR_FIELDS = {"code": _STR, "message": _STR, "request_id": _STR, "details": _DETAILS}

# Every error body: keel's nested shape, the Open Inference Protocol's flat one, and
# MLflow's (its error_code and message, keel's error object beside them).
_KEEL_ERROR = _object(("code", "message"), **_ERROR_FIELDS)
_ERRORS = {
    "Error": _object(("error",), error=_KEEL_ERROR),
    "V2Error": _object(("error", "code"), **{**_ERROR_FIELDS, "error": _STR}),
    "MLflowError": _object(
        ("error_code", "message", "error"),
        error_code={"enum": sorted({c for c, _ in scoring.CODES.values()})},
        message=_STR,
        error=_KEEL_ERROR,
    ),
}

# What the non-inference endpoints answer.
_LOADED = _object(
    ("name", "serves", "version", "ready"),
    name=_STR,
    serves=_STR,
    version={"type": ["integer", "null"]},
    ready=_BOOL,
)
_STATIC = {
    "Health": _object(("status",), status={"const": "ok"}),
    "Ready": _object(
        ("status", "models"),
        status={"const": "ready"},
        models={"type": "object", "additionalProperties": _STR},
    ),
    "Models": _object(("models",), models={"type": "array", "items": _LOADED}),
    "V2Server": _object(
        ("name", "version", "extensions"),
        name=_STR,
        version=_STR,
        extensions={"type": "array", "items": _STR},
    ),
    "V2Live": _object(("live",), live={"const": True}),
    "V2Ready": _object(("ready",), ready={"const": True}),
    "V2ModelReady": _object(("name", "ready"), name=_STR, ready={"const": True}),
    "V2TensorMeta": _object(
        ("name", "datatype", "shape"),
        name=_STR,
        datatype={"enum": _DATATYPES},
        shape={"type": "array", "items": _INT},
    ),
    "V2Meta": _object(
        ("name", "versions", "platform", "inputs", "outputs"),
        name=_STR,
        versions={"type": "array", "items": _STR},
        platform=_STR,
        inputs={"type": "array", "items": _ref("V2TensorMeta")},
        outputs={"type": "array", "items": _ref("V2TensorMeta")},
        parameters={"type": "object"},
    ),
    "V2OutputTensor": _object(
        ("name", "datatype", "shape"),
        name=_STR,
        datatype={"enum": _DATATYPES},
        shape={"type": "array", "items": _INT},
        data={"type": "array", "items": {"type": ["number", "string", "boolean"]}},
        parameters=_object(binary_data_size=_INT),
    ),
    "V2InferResponse": _object(
        ("model_name", "model_version", "id", "outputs"),
        model_name=_STR,
        model_version=_STR,
        id=_STR,
        outputs={"type": "array", "items": _ref("V2OutputTensor")},
    ),
    "PredictResponse": _object(
        ("model", "version", "request_id", "predictions"),
        model=_STR,
        version=_INT,
        request_id=_STR,
        predictions={
            "type": "array",
            "items": {
                "oneOf": [
                    _object(
                        ("label", "probabilities"),
                        label={"type": ["string", "number", "boolean"]},
                        probabilities={"type": "object", "additionalProperties": _NUM},
                    ),
                    _object(("prediction",), prediction={"type": ["number", "null"]}),
                ]
            },
        },
        explanations={
            "type": "array",
            "description": "With explain=true: each row's SHAP values per raw feature",
            "items": _object(
                ("output", "expected_value", "contributions"),
                output=_NUM,
                expected_value=_NUM,
                contributions={"type": "object", "additionalProperties": _NUM},
                space=_STR,
                method=_STR,
                **{"class": {"type": ["string", "number", "boolean", "null"]}},
            ),
        },
    ),
    "InvocationsResponse": _object(
        ("predictions", "model", "version"),
        predictions={"type": "array", "items": {"type": ["string", "number", "boolean", "null"]}},
        probabilities={"type": "array", "items": {"type": "array", "items": _NUM}},
        model=_STR,
        version=_INT,
        ignored_params={
            "type": "array",
            "items": _STR,
            "description": "the params given: keel's models take none, so they are ignored",
        },
    ),
    "Reloaded": _object(
        ("reloaded",),
        reloaded={
            "type": "array",
            "items": _object(
                ("model", "ok", "changed"),
                model=_STR,
                variant=_STR,
                ok=_BOOL,
                changed=_BOOL,
                error=_object(("code",), code=_STR),
                **{"from": {"type": ["integer", "null"]}, "to": {"type": ["integer", "null"]}},
            ),
        },
    ),
    "ReleaseState": _object(
        ("name", "model", "sticky_header", "variants", "shadow", "requests"),
        name=_STR,
        model=_STR,
        sticky_header=_STR,
        variants={"type": "array", "items": {"type": "object"}},
        shadow={"type": ["object", "null"]},
        requests=_INT,
    ),
}


def _row(spec: Any, title: str) -> dict[str, Any]:
    """One row as JSON Schema: every column required, numbers that are finite as float32."""
    row = {**spec.json_schema(), "title": title}
    kinds = ("number", "boolean")
    numbers = [n for n, k in zip(spec.names, spec.kinds, strict=True) if k in kinds]
    if numbers:
        bounded = {"exclusiveMinimum": -F32_OVERFLOW, "exclusiveMaximum": F32_OVERFLOW}
        row["allOf"] = [{"properties": dict.fromkeys(numbers, bounded)}]
    return row


def _columns(row: dict[str, Any], max_rows: int) -> dict[str, Any]:
    """A row's schema turned into ``{column: [value, ...]}`` (one array per column)."""
    props = {
        n: {"type": "array", "items": t, "minItems": 1, "maxItems": max_rows}
        for n, t in row["properties"].items()
    }
    out = {**row, "properties": props, "title": row["title"].replace(" row", " columns")}
    if "allOf" in row:
        bounds = row["allOf"][0]["properties"]
        out["allOf"] = [{"properties": {n: {"items": b} for n, b in bounds.items()}}]
    return out


def _inference(
    rows: list[dict[str, Any]],
    inputs: list[str],
    max_rows: int,
    tensors: Sequence[Any] = (),
    explains: bool = True,
) -> dict[str, Any]:
    """The request bodies of the three inference protocols (``inputs``: the served column
    inputs; ``tensors``: the served tensor inputs; ``explains``: whether a served model
    reads columns, which the server explains)."""
    row = {"oneOf": rows} if rows else {"type": "object"}
    records = {"type": "array", "items": _ref("Row"), "minItems": 1, "maxItems": max_rows}
    scalar = {"type": ["number", "string", "boolean", "null"]}
    if tensors:  # a tensor is a row's value in dataframe_split's data too
        scalar = {"type": ["number", "string", "boolean", "null", "array"]}
    by_column = [_columns(r, max_rows) for r in rows]
    columns = {"oneOf": by_column} if by_column else {"type": "object"}
    split = _object(
        ("columns", "data"),
        columns={"type": "array", "items": _STR, "uniqueItems": True},
        data={"type": "array", "items": {"type": "array", "items": scalar}, "minItems": 1},
    )
    shapes = {
        "type": "array",
        "prefixItems": [{"type": "integer", "minimum": 1, "maximum": max_rows}, {"const": 1}],
        "minItems": 1,
        "maxItems": 2,
    }
    binary = _object(binary_data_size={"type": "integer", "minimum": 0})
    tensor = _object(
        ("name", "shape", "datatype"),
        name={"enum": inputs} if inputs or not tensors else _STR,
        shape=shapes,
        datatype={"enum": _DATATYPES},
        data={"type": "array"},
        parameters=binary,
    )
    if tensors:
        declared = [_v2_tensor(t, max_rows, binary) for t in tensors]
        tensor = {"oneOf": ([tensor] if inputs else []) + declared}
    return {
        "Row": row,
        "PredictRequest": _object(
            ("rows",),
            rows=records,
            key={"type": ["string", "integer", "null"]},
            explain={"type": "boolean"}
            if explains
            else {"const": False, "description": "tensor models are not explained here"},
        ),
        "InvocationsRequest": {"oneOf": [_mlflow(f, split, records, columns) for f in _FORMATS]},
        "V2Tensor": tensor,
        "V2InferRequest": _object(
            ("inputs",),
            id=_STR,
            inputs={"type": "array", "items": _ref("V2Tensor"), "minItems": 1},
            outputs={
                "type": "array",
                "items": _object(("name",), name=_STR, parameters=_object(binary_data=_BOOL)),
            },
            parameters=_object(binary_data_output=_BOOL),
        ),
    }


def _v2_tensor(t: Any, max_rows: int, binary: dict[str, Any]) -> dict[str, Any]:
    """An OIP v2 tensor of a tensor input: its name, ``[N, *shape]`` and datatype."""
    dims = [{"type": "integer", "minimum": 1, "maximum": max_rows}, *map(_const, t.shape)]
    return _object(
        ("name", "shape", "datatype"),
        name=_const(t.name),
        shape={
            "type": "array",
            "prefixItems": dims,
            "minItems": len(dims),
            "maxItems": len(dims),
        },
        datatype=_const(t.datatype),
        data={"type": "array"},
        parameters=binary,
    )


def _const(value: Any) -> dict[str, Any]:
    return {"const": value}


def _mlflow(fmt: str, split: Any, records: Any, columns: Any) -> dict[str, Any]:
    """One of MLflow's formats; a body carries exactly one of them."""
    body = split if fmt == "dataframe_split" else records
    if fmt in ("inputs", "instances"):
        body = {"oneOf": [records, columns]}
    others = {f: False for f in _FORMATS if f != fmt}
    params = {
        "type": ["object", "null"],
        "description": "MLflow's inference parameters: keel's models take none, so each is "
        "ignored (and listed in the answer's ignored_params)",
    }
    return {
        "type": "object",
        "properties": {fmt: body, **others, "params": params},
        "required": [fmt],
    }


_CSV = {
    "type": "string",
    "description": "CSV rows (RFC 4180, UTF-8): a header naming the model's columns, or with "
    "none (or header=absent) the model's columns in their order; an empty field is missing",
}


def _errors_of(e: Any, keys: bool) -> list[str]:
    """The error codes an endpoint answers with by design."""
    codes = []
    if keys and e.scope:
        codes += ["unauthorized", "forbidden"]
    if e.body:
        codes += ["invalid_json", "payload_too_large", "unsupported_media_type", "invalid_input"]
        if e.request is not None:
            codes += ["too_many_rows", "invalid_tensor"]
    return codes + list(e.errors)


def _responses(e: Any, keys: bool) -> dict[str, Any]:
    media = {"application/json": {"schema": _ref(e.response) if e.response else {"type": "object"}}}
    if e.path in ("/metrics", "/version"):
        media = {"text/plain": {"schema": _STR}}
    elif e.request == "V2InferRequest":
        media["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    out: dict[str, Any] = {"200": {"description": "OK", "content": media}}
    mlflow = e.tag == "mlflow"
    by_status: dict[int, list[str]] = {}
    for code in _errors_of(e, keys):
        by_status.setdefault((scoring.STATUS if mlflow else STATUS)[code], []).append(code)
    error = _ref("V2Error" if e.path.startswith("/v2") else "Error")
    for status, codes in sorted(by_status.items()):
        schema: dict[str, Any] = error
        if mlflow:
            schema = _ref("MLflowError")
        out[str(status)] = {
            "description": "An error with code " + " or ".join(codes),
            "content": {"application/json": {"schema": schema}},
        }
    return out


def _parameters(e: Any, names: list[str], releases: list[str], versions: list[str]) -> list:
    def named(among: list[str]) -> dict[str, Any]:
        return {"type": "string", "enum": among} if among else _STR

    params = []
    for part in e.path.split("/"):
        if not part.startswith("{"):
            continue
        name = part[1:-1]
        if name == "version":
            schema = named(versions)
        else:
            schema = named(releases if e.path.startswith("/admin") else names)
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name in e.query:
        params.append({"name": name, "in": "query", "required": False, "schema": named(names)})
    return params


def _operation(e: Any, keys: bool, params: list[dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": e.summary,
        "tags": [e.tag],
        "operationId": f"{e.method.lower()}_{e.path.strip('/').replace('/', '_') or 'root'}",
        "parameters": params,
        "responses": _responses(e, keys),
    }
    if e.request:
        content = {"application/json": {"schema": _ref(e.request)}}
        if e.request == "InvocationsRequest":
            content["text/csv"] = {"schema": _CSV}
        op["requestBody"] = {"required": True, "content": content}
    notes = []
    if e.request in ("InvocationsRequest", "V2InferRequest"):
        invalid = "400" if e.tag == "mlflow" else "422"
        notes.append(
            "Columns and tensors must hold as many values as there are rows (the shape), and "
            f"every model input must be given; otherwise {invalid} names the field. A tensor "
            "input of another shape or datatype than the model declares, or holding NaN or "
            "infinite values, is refused with 400 invalid_tensor naming the expected and the "
            "given."
        )
    if keys and e.scope:
        op["security"] = [{"bearer": []}]
        notes.append(f"Needs an API key with the {e.scope!r} scope.")
    if notes:
        op["description"] = " ".join(notes)
    return op


def openapi_document(app: Any) -> dict[str, Any]:
    from importlib.metadata import version

    from keel.serve._routes import ENDPOINTS

    rows, inputs, tensors, versions, explains = [], [], [], set(), not app.slots
    for name, slot in app.slots.items():
        if slot.live is not None:
            spec = slot.live.spec
            rows.append(_row(spec, f"{name} row"))
            columns = [n for n, k in zip(spec.names, spec.kinds, strict=True) if k != "tensor"]
            inputs += [n for n in columns if n not in inputs]
            tensors += [t for t in spec.tensors if t not in tensors]
            explains = explains or not spec.tensors
        versions |= {str(leaf.live.version) for leaf in slot.leaves() if leaf.live is not None}
    names = list(app.slots)
    releases = [n for n, s in app.slots.items() if getattr(s, "release", None) is not None]
    keys = app.keys is not None
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        params = _parameters(e, names, releases, sorted(versions))
        gated = keys and not (e.path == "/metrics" and app.config.public_metrics)
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, gated, params)
    schemas = {
        **_ERRORS,
        **_STATIC,
        **_inference(rows, inputs, app.config.max_request_rows, tensors, explains),
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "keel model server", "version": version("keel")},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if keys:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
