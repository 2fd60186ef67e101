"""The dashboard as an ASGI app: the route table gathered from the page modules, and the
middlewares, each small, composed in :meth:`UiApp._compose` and nowhere else.

Order, outermost first: security headers → errors → host check → routing → auth → CSRF
→ the endpoint.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, KeelError, NotFound
from keel.serve._errors import ServeError
from keel.serve._routes import Router
from keel.ui._http import SECURITY_HEADERS, Request, UiError, esc, html_response, json_response
from keel.ui._layout import page

__all__ = ["Route", "UiApp", "create_app"]

log = logging.getLogger("keel.ui")
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Route:
    """One route of the dashboard. ``handler(request) -> Response``: a plain function runs
    in a worker thread (store reads block), a coroutine function on the event loop (streams).
    ``scope``: ``read`` (any API key, when the dashboard has keys), ``admin`` (a key with
    the admin scope; the request must also pass the CSRF check), or None (public: static
    files)."""

    method: str
    path: str
    handler: Callable[[Request], Any]
    scope: str | None = "read"


def _routes() -> tuple[Route, ...]:
    from keel.ui import (
        _coming,
        _compare,
        _models,
        _monitoring,
        _pipelines,
        _releases,
        _run,
        _runs,
        _static,
    )

    modules = (_static, _runs, _run, _compare, _models, _releases, _monitoring, _pipelines, _coming)
    routes: list[Route] = []
    seen: set[tuple[str, str]] = set()
    for module in modules:
        for r in module.ROUTES:
            if (r.method, r.path) not in seen:  # the first module to claim a path has it
                seen.add((r.method, r.path))
                routes.append(r)
    return tuple(routes)


class UiApp:
    """The dashboard over one store. ``keys``: a :class:`keel.serve.KeyRing` (None: no
    auth, which :func:`keel.ui.start` allows on loopback only). ``poll_s``: how often a
    live stream looks at the store for new metric points and status changes."""

    def __init__(self, store: Any, *, keys: Any = None, poll_s: float = 0.5) -> None:
        if keys is not None and not len(keys):
            raise InvalidInput("ui: auth is on but the key ring is empty; add a key")
        if not isinstance(poll_s, int | float) or not 0.01 <= poll_s <= 60:
            raise InvalidInput(f"ui: poll_s: expected 0.01 to 60 seconds, got {poll_s!r}")
        self.store = store
        self.keys = keys
        self.poll_s = float(poll_s)
        self.routes = _routes()
        self.router = Router(self.routes)
        self.closing = threading.Event()  # set on shutdown: live streams end
        self.allowed_hosts: frozenset[str] | None = None  # set by start()/serve()
        self.server: Any = None  # the uvicorn server, once started
        self._dead_checked = 0.0
        self._dead_lock = threading.Lock()
        self._stack = self._compose()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["app"] = self
            scope["keel"] = {"request_id": os.urandom(8).hex()}
            await self._stack(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.closing.set()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def mark_dead_runs(self, every: float = 5.0) -> None:
        """Mark failed the ``running`` runs whose process is gone (as reading runs through
        keel.train does), at most every ``every`` seconds; a store that cannot be written
        is left as it is."""
        import time

        from keel.train._tracking import mark_dead_runs

        now = time.monotonic()
        if now - self._dead_checked < every or not self._dead_lock.acquire(blocking=False):
            return
        try:
            self._dead_checked = now
            mark_dead_runs(self.store)
        except KeelError as exc:
            log.warning("ui: checking for dead runs failed: %s", exc)
        finally:
            self._dead_lock.release()

    def static_url(self, name: str) -> str:
        """``/static/NAME?v=HASH``: the hash changes with the file, so it can be cached."""
        from keel.ui._static import version_of

        return f"/static/{name}?v={version_of(name)}"

    def _compose(self) -> Any:
        app: Any = _dispatch
        app = Csrf(app)
        app = Auth(app, self.keys)
        app = Routing(app, self.router)
        app = HostCheck(app)
        app = Errors(app)
        return SecurityHeaders(app)


async def _dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
    route: Route = scope["route"]
    request = Request(scope, receive, scope["path_params"])
    if inspect.iscoroutinefunction(route.handler):
        response = await route.handler(request)
    else:
        response = await asyncio.to_thread(route.handler, request)
    await response(send)


class SecurityHeaders:
    """Every answer carries the CSP and the other security headers, and the request id."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        rid = scope["keel"]["request_id"].encode()

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    *SECURITY_HEADERS,
                    (b"x-request-id", rid),
                ]
            await send(message)

        await self.app(scope, receive, send_secured)


def _is_api(scope: dict[str, Any]) -> bool:
    path = scope["path"]
    return path == "/api" or path.startswith("/api/")


def error_response(scope: dict[str, Any], error: UiError) -> Any:
    """JSON under /api (``{"error": {"code", "message", "request_id", ...details}}``), an
    HTML page elsewhere; never a traceback or a server path."""
    rid = scope["keel"]["request_id"]
    if _is_api(scope):
        body = {"error": {"code": error.code, "message": error.message, **error.details}}
        body["error"]["request_id"] = rid
        return json_response(body, error.status, error.headers)
    title = {404: "Not found", 400: "Bad request"}.get(error.status, "Error")
    text = (
        f'<section class="error-page"><h1>{esc(title)}</h1>'
        f'<p class="error-message">{esc(error.message)}</p>'
        f'<p class="muted">request id {esc(rid)} · <a href="/runs">back to the runs</a></p>'
        "</section>"
    )
    return html_response(page(scope["app"], title, text), error.status, error.headers)


def as_ui_error(exc: BaseException) -> UiError | None:
    """The answer for a known failure (None: an unexpected one)."""
    from keel.ui._filter import FilterError

    if isinstance(exc, UiError):
        return exc
    if isinstance(exc, ServeError):  # from the shared router: not_found, method_not_allowed
        code = exc.code if exc.code in ("not_found", "method_not_allowed") else "invalid_input"
        return UiError(code, exc.message, headers=exc.headers)
    if isinstance(exc, FilterError):
        return UiError("invalid_filter", str(exc), {"position": exc.position, "token": exc.token})
    if isinstance(exc, NotFound):
        return UiError("not_found", str(exc))
    if isinstance(exc, InvalidInput):
        return UiError("invalid_input", str(exc))
    return None


class Errors:
    """Turn any failure into an answer with a stable code; unexpected ones are logged here
    with the request id and answered 500, saying only that."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = [False]

        async def send_tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
            return
        except Exception as exc:
            error = as_ui_error(exc)
            if error is None:
                if isinstance(exc, KeelError):
                    log.error("ui: request %s failed: %s", scope["keel"]["request_id"], exc)
                else:
                    log.exception("ui: request %s failed", scope["keel"]["request_id"])
                error = UiError(
                    "internal",
                    "the dashboard failed to answer; quote the request id when you report it",
                )
        if started[0]:
            return  # too late to answer; the connection closes
        await error_response(scope, error)(send)


_LOOPBACK_V4 = re.compile(r"127\.\d{1,3}\.\d{1,3}\.\d{1,3}")


class HostCheck:
    """Answer only requests whose Host names this server (``app.allowed_hosts``, set when
    it starts), so a web page elsewhere cannot reach a dashboard on 127.0.0.1 through a
    name it controls (DNS rebinding). None: any host (a dashboard with keys)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        allowed = scope["app"].allowed_hosts
        if allowed is not None:
            host = b""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value
                    break
            name = host.decode("latin-1").lower()
            if name.startswith("["):
                name = name.split("]", 1)[0] + "]"
            else:
                name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
            if name not in allowed and not _LOOPBACK_V4.fullmatch(name):
                raise UiError(
                    "misdirected",
                    "this dashboard answers only requests addressed to the host it listens on",
                )
        await self.app(scope, receive, send)


class Routing:
    """Find the route: ``scope["route"]`` and ``scope["path_params"]``; 404 or 405."""

    def __init__(self, app: Any, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        try:
            route, params = self.router.match(method, scope["path"])
        except ServeError as exc:
            if exc.code != "not_found":
                raise
            what = "API route" if _is_api(scope) else "page"
            raise UiError("not_found", f"there is no {what} {scope['path'][:200]}") from None
        scope["route"], scope["path_params"] = route, params
        await self.app(scope, receive, send)


def _token(scope: dict[str, Any]) -> str | None:
    """The API key sent as ``Authorization: Bearer KEY`` or as the password of HTTP Basic
    (which a browser asks for and then sends with every request, fetches included)."""
    import base64

    raw = b""
    for key, value in scope["headers"]:
        if key == b"authorization":
            raw = value
            break
    kind, _, rest = raw.decode("latin-1").partition(" ")
    if kind.lower() == "bearer":
        return rest.strip() or None
    if kind.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class Auth:
    """With a key ring, every route but the public ones needs a known key (401, with a
    Basic challenge so a browser asks for it); ``admin`` routes need the admin scope
    (403)."""

    def __init__(self, app: Any, keys: Any) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        needed = scope["route"].scope
        if self.keys is not None and needed is not None:
            token = _token(scope)
            key = self.keys.check(token) if token else None
            if key is None:
                raise UiError(
                    "unauthorized",
                    "this dashboard needs an API key (made by 'keel key'): give it as the "
                    "password when the browser asks, or send Authorization: Bearer <key>",
                    headers={"www-authenticate": 'Basic realm="keel ui", charset="UTF-8"'},
                )
            if needed == "admin" and not key.allows("admin"):
                raise UiError("forbidden", "this API key lacks the 'admin' scope")
            scope["keel"]["key"] = key.name
        await self.app(scope, receive, send)


class Csrf:
    """Requests that may change state (any method but GET and HEAD) must come from this
    dashboard's own pages: an ``Origin`` (or ``Referer``) of this host, and the header
    ``X-Keel-CSRF: 1``, which a form on another site cannot send and a cross-site script
    cannot send without a preflight this server never grants."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin") or headers.get(b"referer") or b""
            from urllib.parse import urlsplit

            same = urlsplit(origin.decode("latin-1")).netloc == host and bool(host)
            if not same or headers.get(b"x-keel-csrf") != b"1":
                raise UiError(
                    "forbidden",
                    "this request changes state and must come from the dashboard itself "
                    "(same Origin and the X-Keel-CSRF header)",
                )
        await self.app(scope, receive, send)


def store_of(project_or_store: Any) -> Any:
    from keel.serve._app import store_of as serve_store_of

    return serve_store_of(project_or_store)


def create_app(project_or_store: Any = None, *, keys: Any = None, poll_s: float = 0.5) -> UiApp:
    """The dashboard's ASGI app over a Store, a Project, a project folder, or None (the
    project found from the current folder)."""
    return UiApp(store_of(project_or_store), keys=keys, poll_s=poll_s)
