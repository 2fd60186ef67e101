"""The OpenAPI 3.1 document, made from the route table and the models served now."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "row": {"type": "integer"},
                            "field": {"type": "string"},
                            "expected": {"type": "string"},
                            "got": {"type": "string"},
                        },
                    },
                },
            },
            "required": ["code", "message"],
        }
    },
}
_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": ["BYTES", "FP32", "FP64", "INT64", "BOOL"]},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
    "required": ["name", "shape", "datatype"],
}


def _components(rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = {"oneOf": rows} if rows else {"type": "object"}
    records = {"type": "array", "items": row, "minItems": 1}
    return {
        "Row": row,
        "Error": _ERROR,
        "PredictRequest": {
            "type": "object",
            "properties": {"rows": records},
            "required": ["rows"],
        },
        "PredictResponse": {
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "version": {"type": "integer"},
                "request_id": {"type": "string"},
                "predictions": {"type": "array", "items": {"type": "object"}},
            },
        },
        "InvocationsRequest": {
            "type": "object",
            "properties": {
                "dataframe_split": {
                    "type": "object",
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": {"type": "array"}},
                    },
                },
                "dataframe_records": records,
                "inputs": {"oneOf": [records, {"type": "object"}]},
            },
        },
        "InvocationsResponse": {
            "type": "object",
            "properties": {
                "predictions": {"type": "array"},
                "probabilities": {"type": "array", "items": {"type": "array"}},
            },
        },
        "V2Tensor": _TENSOR,
        "V2InferRequest": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}},
                "outputs": {"type": "array", "items": {"type": "object"}},
                "parameters": {"type": "object"},
            },
            "required": ["inputs"],
        },
        "V2InferResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}},
            },
        },
        "V2Meta": {"type": "object"},
    }


def _operation(e: Any, keys: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": e.summary,
        "tags": [e.tag],
        "operationId": f"{e.method.lower()}_{e.path.strip('/').replace('/', '_') or 'root'}",
        "parameters": [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in e.path.split("/")
            if part.startswith("{")
        ],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{e.response}"}
                        if e.response
                        else {"type": "object"}
                    }
                },
            },
            "default": {
                "description": "An error, with a stable code",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if e.request:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{e.request}"}}
            },
        }
    if keys and e.scope:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Needs an API key with the {e.scope!r} scope."
    return op


def openapi_document(app: Any) -> dict[str, Any]:
    from importlib.metadata import version

    from keel.serve._routes import ENDPOINTS

    rows = []
    for name, slot in app.slots.items():
        if slot.live is not None:
            rows.append({**slot.live.spec.json_schema(), "title": f"{name} row"})
    keys = app.keys is not None
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, keys)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "keel model server", "version": version("keel")},
        "paths": paths,
        "components": {"schemas": _components(rows)},
    }
    if keys:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
