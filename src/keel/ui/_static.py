"""The dashboard's own scripts and styles, and the vendored ones (``static/vendor``, each
with its licence), served from the package: nothing comes from a CDN. Only files that
ship in ``static/`` are served, looked up by name (no path is ever joined from a request).
A URL made by :meth:`UiApp.static_url` carries the file's hash and is cached for a year."""

from __future__ import annotations

import hashlib
from functools import cache

from keel.ui._app import STATIC, Route
from keel.ui._http import Request, Response, UiError

__all__ = ["ROUTES"]

_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".txt": b"text/plain; charset=utf-8",
}


@cache
def _files() -> dict[str, tuple[bytes, str, bytes]]:
    """``{relative name: (bytes, sha256 prefix, content type)}`` of every servable file."""
    out = {}
    for path in sorted(STATIC.rglob("*")):
        kind = _TYPES.get(path.suffix)
        if "LICENSE" in path.name:
            kind = _TYPES[".txt"]
        if path.is_file() and kind is not None:
            data = path.read_bytes()
            out[path.relative_to(STATIC).as_posix()] = (
                data,
                hashlib.sha256(data).hexdigest()[:12],
                kind,
            )
    return out


def _serve(request: Request, name: str) -> Response:
    found = _files().get(name)
    if found is None:
        raise UiError("not_found", f"there is no static file {name[:100]!r}")
    data, version, kind = found
    etag = f'"{version}"'.encode()
    cache_control = (
        b"public, max-age=31536000, immutable" if request.query.get("v") == version else b"no-cache"
    )
    headers = [(b"etag", etag), (b"cache-control", cache_control)]
    if request.headers.get("if-none-match", "").encode() == etag:
        return Response(b"", 304, headers, kind)
    return Response(data, 200, headers, kind)


def static_file(request: Request) -> Response:
    return _serve(request, request.params["name"])


def vendor_file(request: Request) -> Response:
    return _serve(request, "vendor/" + request.params["name"])


def version_of(name: str) -> str:
    """The hash that :meth:`UiApp.static_url` puts in a file's URL."""
    found = _files().get(name)
    if found is None:
        raise UiError("not_found", f"there is no static file {name[:100]!r}")
    return found[1]


ROUTES = (
    Route("GET", "/static/{name}", static_file, scope=None),
    Route("GET", "/static/vendor/{name}", vendor_file, scope=None),
)
