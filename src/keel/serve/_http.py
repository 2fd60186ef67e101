"""The little HTTP layer the server needs on top of ASGI: a request view, a response,
reading a body, and JSON in and out (orjson)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from keel.serve._errors import ServeError

__all__ = ["Request", "Response", "dumps", "json_response", "parse_json"]

_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class ClientDisconnected(Exception):
    """The client went away before its body arrived."""


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_DUMP_OPTIONS)


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; invalid UTF-8, NaN/Infinity literals and nesting deeper
    than 1,024 levels are refused with ``invalid_json`` (400)."""
    if not body:
        raise ServeError("invalid_json", "the request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ServeError("invalid_json", f"the request body is not valid JSON: {exc}") from None


class Request:
    """A view over one ASGI HTTP request: ``params`` from the path, ``state`` shared with the
    middlewares (request id, the model and version that answered, the error code)."""

    __slots__ = ("_headers", "_query", "params", "receive", "scope")

    def __init__(self, scope: dict[str, Any], receive: Any, params: dict[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.params = params
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    @property
    def app(self) -> Any:
        return self.scope["app"]

    @property
    def state(self) -> dict[str, Any]:
        return self.scope["keel"]

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]
            }
        return self._headers

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            query = self.scope.get("query_string", b"")
            self._query = (
                dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
            )
        return self._query

    async def body(self) -> bytes:
        """The whole body; its size is kept in ``state["body_bytes"]``."""
        chunks = []
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.scope["keel"]["body_bytes"] = len(body)
        return body

    async def json(self) -> Any:
        return parse_json(await self.body())


class Response:
    """A complete response: status, body bytes, extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
        media_type: bytes = b"application/json",
    ) -> None:
        self.body = body
        self.status = status
        self.headers = [
            (b"content-type", media_type),
            (b"content-length", str(len(body)).encode()),
            *(headers or ()),
        ]

    async def __call__(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return Response(dumps(obj), status, extra)
