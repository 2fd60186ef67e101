"""The route table: every endpoint once, with its auth scope, body kind and OpenAPI text.
The handlers of the inference protocols live in :mod:`keel.serve._protocols`, MLflow's
scoring protocol in :mod:`keel.serve._mlflow`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from keel.serve import _mlflow as m
from keel.serve import _protocols as p
from keel.serve._errors import ServeError
from keel.serve._http import Request, Response

__all__ = ["ENDPOINTS", "Endpoint", "Router"]

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route. ``scope``: the API key scope it needs (None: public). ``body``: None (no
    body), ``json`` (application/json) or ``oip`` (JSON, no content type, or binary
    tensors). ``request``/``response``: OpenAPI component names. ``query``: the query
    parameters it reads (each names a served model). ``errors``: the error codes the handler
    itself may answer with (auth, content type, body and size errors follow from ``scope``
    and ``body``)."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: str | None = "predict"
    body: str | None = None
    request: str | None = None
    response: str | None = None
    query: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


E = Endpoint
_MODEL = ("model_not_found", "not_ready")
ENDPOINTS: tuple[Endpoint, ...] = (
    E(
        "GET",
        "/healthz",
        p.healthz,
        "The process is alive.",
        "health",
        scope=None,
        response="Health",
    ),
    E(
        "GET",
        "/readyz",
        p.readyz,
        "Every routed model is loaded and warm.",
        "health",
        scope=None,
        response="Ready",
        errors=("not_ready",),
    ),
    # needs a key when the server has keys, unless it runs with public_metrics
    E("GET", "/metrics", p.metrics, "Prometheus metrics.", "health"),
    E("GET", "/openapi.json", p.openapi, "This document.", "health"),
    E(
        "GET",
        "/models",
        p.list_models,
        "The routed models and the versions answering.",
        "keel",
        response="Models",
    ),
    E(
        "POST",
        "/models/{name}/predict",
        p.predict,
        "Predict rows: {rows: [{column: value}]}.",
        "keel",
        body="json",
        request="PredictRequest",
        response="PredictResponse",
        errors=_MODEL,
    ),
    # MLflow's scoring server (mlflow models serve): its health routes are public, as there
    E(
        "GET",
        "/ping",
        m.ping,
        "MLflow's health check: 200 once every model is loaded.",
        "mlflow",
        scope=None,
        response="Health",
        errors=("not_ready",),
    ),
    E(
        "GET",
        "/health",
        m.ping,
        "MLflow's health check (as /ping).",
        "mlflow",
        scope=None,
        response="Health",
        errors=("not_ready",),
    ),
    E("GET", "/version", m.version, "The server's version, as text.", "mlflow", scope=None),
    # body None: the handler takes JSON and CSV, and answers its own content-type errors
    E(
        "POST",
        "/invocations",
        m.invocations,
        "MLflow scoring: JSON (dataframe_split, dataframe_records, inputs or instances, "
        "with params) or CSV; ?model=NAME.",
        "mlflow",
        request="InvocationsRequest",
        response="InvocationsResponse",
        query=("model",),
        errors=(
            "invalid_json",
            "payload_too_large",
            "unsupported_media_type",
            "invalid_input",
            "too_many_rows",
            "invalid_tensor",
            *_MODEL,
        ),
    ),
    E(
        "GET",
        "/v2",
        p.v2_server,
        "Server metadata (Open Inference Protocol v2).",
        "v2",
        response="V2Server",
    ),
    E("GET", "/v2/health/live", p.v2_live, "Liveness.", "v2", scope=None, response="V2Live"),
    E(
        "GET",
        "/v2/health/ready",
        p.v2_ready,
        "Readiness.",
        "v2",
        scope=None,
        response="V2Ready",
        errors=("not_ready",),
    ),
    E(
        "GET",
        "/v2/models/{name}",
        p.v2_metadata,
        "Model metadata.",
        "v2",
        response="V2Meta",
        errors=_MODEL,
    ),
    E(
        "GET",
        "/v2/models/{name}/versions/{version}",
        p.v2_metadata,
        "Model version metadata.",
        "v2",
        response="V2Meta",
        errors=_MODEL,
    ),
    E(
        "GET",
        "/v2/models/{name}/ready",
        p.v2_model_ready,
        "Model readiness.",
        "v2",
        response="V2ModelReady",
        errors=_MODEL,
    ),
    E(
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        p.v2_model_ready,
        "Model version readiness.",
        "v2",
        response="V2ModelReady",
        errors=_MODEL,
    ),
    E(
        "POST",
        "/v2/models/{name}/infer",
        p.v2_infer,
        "Inference with typed tensors (BYTES for text, FP32 for numbers).",
        "v2",
        body="oip",
        request="V2InferRequest",
        response="V2InferResponse",
        errors=_MODEL,
    ),
    E(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        p.v2_infer,
        "Inference on a given version.",
        "v2",
        body="oip",
        request="V2InferRequest",
        response="V2InferResponse",
        errors=_MODEL,
    ),
    E(
        "POST",
        "/admin/reload",
        p.admin_reload,
        "Re-resolve aliases and swap in new versions (?model=NAME for one).",
        "admin",
        scope="admin",
        response="Reloaded",
        query=("model",),
        errors=("model_not_found",),
    ),
    E(
        "GET",
        "/admin/release/{name}",
        p.admin_release,
        "A release's config (variants, weights, shadow) and per-variant request counts.",
        "admin",
        scope="admin",
        response="ReleaseState",
        errors=("model_not_found",),
    ),
)


class _Routed(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...


_E = TypeVar("_E", bound=_Routed)


class Router(Generic[_E]):
    """Match a method and a path to an endpoint and its path parameters (an endpoint is
    anything with a ``method`` and a ``path``: the model server's and the dashboard's)."""

    def __init__(self, endpoints: tuple[_E, ...]) -> None:
        self.endpoints = endpoints
        self._static: dict[str, dict[str, _E]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, _E]]] = []
        patterns: dict[str, dict[str, _E]] = {}
        for e in endpoints:
            if "{" in e.path:
                patterns.setdefault(e.path, {})[e.method] = e
            else:
                self._static.setdefault(e.path, {})[e.method] = e
        for path, by_method in patterns.items():
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
            self._dynamic.append((re.compile(f"^{regex}$"), by_method))

    def match(self, method: str, path: str) -> tuple[_E, dict[str, str]]:
        by_method, params = self._static.get(path), {}
        if by_method is None:
            for regex, candidates in self._dynamic:
                m = regex.match(path)
                if m is not None:
                    by_method, params = candidates, m.groupdict()
                    break
        if by_method is None:
            raise ServeError(
                "not_found", "there is no such route; GET openapi.json lists the routes"
            )
        endpoint = by_method.get(method)
        if endpoint is None:
            allowed = ", ".join(sorted(by_method))
            raise ServeError(
                "method_not_allowed",
                f"method {method[:10]} is not allowed here; allowed: {allowed}",
                headers={"allow": allowed},
            )
        return endpoint, params


def route_table() -> list[dict[str, Any]]:
    """The routes as plain data (for docs and the CLI)."""
    return [
        {"method": e.method, "path": e.path, "scope": e.scope, "summary": e.summary}
        for e in ENDPOINTS
    ]
