"""The server's middlewares: each small, each ``(app, **options)``, composed in
:func:`compose` and nowhere else.

Order, outermost first: request id → metrics → errors → routing → auth → content type →
body limit → the endpoint. Per-request facts travel in ``scope["keel"]``: ``request_id``,
``model`` and ``version`` (set by the endpoint that answered), ``error_code``, and
``status`` once the answer has started (the one ``send`` wrapper, :class:`RequestId`'s, sets
it; metrics and errors read it).

A middleware that only looks at the request before passing it on (request id, routing, auth,
content type, body limit) is a plain function returning the next app's awaitable, not a
coroutine of its own: each request then resumes five frames fewer every time it waits.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable
from typing import Any

from keel.serve._errors import ServeError
from keel.serve._http import ClientDisconnected, Request, dumps

__all__ = ["compose"]

log = logging.getLogger("keel.serve")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
# Request ids need to be unique, not secret: Python reseeds its generator from the OS at
# start and in every forked worker.
_random_bits = random.getrandbits


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class RequestId:
    """Echo a sane ``x-request-id`` or make one; put it in ``scope["keel"]`` and the answer,
    and the answer's status in ``scope["keel"]["status"]``."""

    def __init__(self, app: Any, worker: int = 0) -> None:
        self.app = app
        #: answered with every response: the worker's number when there are several
        self.extra = ((b"x-keel-worker", str(worker).encode()),) if worker else ()

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        given = _header(scope, b"x-request-id")
        rid = (
            given
            if given is not None and _REQUEST_ID.match(given)
            else b"%016x" % _random_bits(64)  # no system call per request
        )
        state = scope["keel"] = {"request_id": rid.decode(), "t0": time.perf_counter()}
        extra = ((b"x-request-id", rid), *self.extra)

        def send_with_id(message: dict[str, Any]) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            return send(message)

        return self.app(scope, receive, send_with_id)


class Metrics:
    """Count every answer and time it, by model, version, endpoint and status."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            state = scope["keel"]
            model, version = state.get("model", ""), str(state.get("version", ""))
            route = scope.get("route")
            endpoint = route.path if route is not None else "unmatched"
            key = (model, version, endpoint, state.get("status", 500))
            counted = self._children.get(key)
            if counted is None:  # a label set's first answer: look its series up once
                m = self.metrics
                counted = self._children[key] = (
                    m.requests.labels(model, version, endpoint, str(key[3])),
                    m.latency.labels(model, version, endpoint),
                )
            counted[0].inc()
            counted[1].observe(time.perf_counter() - state["t0"])
            if "error_code" in state:
                self.metrics.errors.labels(model, version, state["error_code"]).inc()


class Errors:
    """Turn any failure into a JSON error with a stable code; never a traceback or a path.
    Unexpected exceptions are logged here, with the request id, and answered with 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        state = scope["keel"]
        try:
            await self.app(scope, receive, send)
            return
        except ServeError as exc:
            # Drop the traceback: its frames (one holds the body read so far) would form a
            # cycle with ``error`` that only the garbage collector frees, megabytes a time.
            error = exc.with_traceback(None)
        except ClientDisconnected:
            state["error_code"] = "client_disconnected"
            return
        except Exception:
            log.exception("request %s failed", state["request_id"])
            error = ServeError(
                "internal",
                "the server failed to answer this request; quote the request id when you report it",
            )
        state["error_code"] = error.code
        route = scope.get("route")
        if route is not None and route.tag == "mlflow":
            # an MLflow route answers in MLflow's shape even before its handler ran
            # (401/403 from Auth, 413 from a declared Content-Length)
            from keel.serve._mlflow import as_mlflow

            error = as_mlflow(error)
        if "status" in state:
            return  # too late to answer (it has started); the connection closes
        flat = scope["path"].startswith("/v2")  # the Open Inference Protocol's error shape
        body = dumps(error.body(state["request_id"], flat))
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        if "ref" in state:
            headers.append((b"keel-model-version", state["ref"].encode()))
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Routing:
    """Find the endpoint: ``scope["route"]`` and ``scope["path_params"]``; 404 or 405."""

    def __init__(self, app: Any, router: Any) -> None:
        self.app = app
        self.router = router

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        route, params = self.router.match(scope["method"], scope["path"])
        scope["route"], scope["path_params"] = route, params
        return self.app(scope, receive, send)


class Auth:
    """With a key ring, every route but the public ones (and the paths in ``public``) needs
    ``Authorization: Bearer KEY`` (401 without a known key) whose scopes allow the route
    (403 otherwise)."""

    def __init__(self, app: Any, keys: Any, public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.keys = keys
        self.public = public

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        route = scope["route"]
        needed = None if route.path in self.public else route.scope
        if self.keys is not None and needed is not None:
            raw = _header(scope, b"authorization") or b""
            kind, _, token = raw.decode("latin-1").partition(" ")
            key = self.keys.check(token.strip()) if kind.lower() == "bearer" else None
            if key is None:
                given = kind.lower() == "bearer" and token.strip()
                raise ServeError(
                    "unauthorized",
                    "the API key is not one this server knows (or it was revoked)"
                    if given
                    else "this route needs an API key: send Authorization: Bearer <key>",
                    headers={"www-authenticate": 'Bearer realm="keel"'},
                )
            if not key.allows(needed):
                raise ServeError("forbidden", f"this API key lacks the {needed!r} scope")
            scope["keel"]["key"] = key.name
        return self.app(scope, receive, send)


class ContentType:
    """Bodies must be JSON. The Open Inference Protocol routes also take a request with no
    content type (as Triton's clients send) and the binary tensor extension."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        kind = scope["route"].body
        if kind is not None:
            raw = _header(scope, b"content-type")
            if raw == b"application/json":  # what nearly every client sends
                return self.app(scope, receive, send)
            media, *params = (raw or b"").decode("latin-1").lower().split(";")
            media = media.strip()
            charsets = [p.strip()[8:].strip('" ') for p in params if p.strip()[:8] == "charset="]
            ok = media == "application/json" and all(c in ("utf-8", "utf8") for c in charsets)
            if kind == "oip" and not ok:
                binary = _header(scope, b"inference-header-content-length") is not None
                ok = raw is None or (media == "application/octet-stream" and binary)
            if not ok:
                got = repr(media[:60]) if raw is not None else "none"
                raise ServeError(
                    "unsupported_media_type",
                    f"content type {got} is not accepted; send JSON with "
                    "Content-Type: application/json",
                )
        return self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over ``max_bytes`` (413): by Content-Length up front, and by counting
    while the body streams in, so a lying or chunked client is stopped too."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ServeError:
        return ServeError(
            "payload_too_large", f"the request body is over the limit of {self.max_bytes} bytes"
        )

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        declared = chunked = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == b"transfer-encoding":
                chunked = value
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            raise self._too_large()
        if declared is not None and chunked is None:
            # the HTTP parser hands on exactly Content-Length bytes: nothing to count
            return self.app(scope, receive, send)
        seen = [0]

        async def receive_limited() -> dict[str, Any]:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.max_bytes:
                raise self._too_large()
            return message

        return self.app(scope, receive_limited, send)


async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The innermost app: call the matched endpoint and send what it returns."""
    response = await scope["route"].handler(Request(scope, receive, scope["path_params"]))
    await response(send)


def compose(
    router: Any,
    metrics: Any,
    keys: Any,
    max_body_bytes: int,
    public_metrics: bool = False,
    worker: int = 0,
) -> Any:
    """The server's HTTP stack, outermost first."""
    app: Any = BodyLimit(dispatch, max_bytes=max_body_bytes)
    app = ContentType(app)
    app = Auth(app, keys=keys, public=frozenset({"/metrics"} if public_metrics else ()))
    app = Routing(app, router=router)
    app = Errors(app)
    app = Metrics(app, metrics=metrics)
    return RequestId(app, worker)
