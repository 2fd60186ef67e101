"""The dashboard's HTTP pieces: its error type, HTML escaping and responses, and the
security headers every answer carries. Requests and JSON come from :mod:`keel.serve`'s
small HTTP layer (one stack, one JSON encoder)."""

from __future__ import annotations

import html
from typing import Any

from keel.errors import KeelError
from keel.serve._http import Request, Response, dumps

__all__ = [
    "CSP",
    "STATUS",
    "Request",
    "Response",
    "UiError",
    "esc",
    "html_response",
    "json_response",
    "query_int",
]

#: The Content-Security-Policy of every answer: scripts, styles and data only from this
#: server, no inline script, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

#: Every error code the dashboard answers with, and its HTTP status.
STATUS: dict[str, int] = {
    "invalid_filter": 400,
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "misdirected": 421,
    "internal": 500,
}


class UiError(KeelError):
    """An answer other than success: a stable ``code`` (its status from :data:`STATUS`),
    a message meant for the reader, and optional ``details`` (e.g. a filter's position and
    token). Nothing else of a failure reaches a response."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS[code]
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def esc(value: Any) -> str:
    """``value`` as text safe in HTML content and in quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def _headers(extra: dict[str, str] | None, cache: str) -> list[tuple[bytes, bytes]]:
    out = [(b"cache-control", cache.encode())]
    out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    return out


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None, cache: str = "no-store"
) -> Response:
    return Response(dumps(obj), status, _headers(headers, cache))


def html_response(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        text.encode("utf-8"), status, _headers(headers, "no-store"), b"text/html; charset=utf-8"
    )


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UiError(
            "invalid_input", f"{name}: expected a whole number, got {raw[:40]!r}"
        ) from None
    if not low <= value <= high:
        raise UiError("invalid_input", f"{name}: expected {low} to {high}, got {value}")
    return value
