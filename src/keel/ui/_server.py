"""Run the dashboard on the model server's stack: uvicorn with keel.serve's guarded
httptools protocol, its host resolution and bind, and its rule that only a loopback address
may be served without API keys."""

from __future__ import annotations

import logging
import threading
from typing import Any

from keel.errors import InvalidInput, KeelError
from keel.serve._server import (
    BackgroundServer,
    _bind,
    check_port,
    is_loopback,
    uvicorn_server,
)
from keel.ui._app import UiApp, create_app

__all__ = ["RunningUi", "serve", "start"]

log = logging.getLogger("keel.ui")

_HEAD_TIMEOUT_S = 5.0
_MAX_CONNECTIONS = 1024


def _check_bind(host: str, app: UiApp) -> None:
    if not is_loopback(host) and app.keys is None:
        raise InvalidInput(
            f"ui: refusing to listen on {host!r} without API keys, since anyone who can reach "
            "it could read every run, model and prediction; give keys (keel ui --keys FILE, "
            "made by 'keel key') or listen on 127.0.0.1"
        )


def _uvicorn(app: UiApp, log_level: str, access_log: bool) -> Any:
    return uvicorn_server(
        app,
        head_timeout_s=_HEAD_TIMEOUT_S,
        max_connections=_MAX_CONNECTIONS,
        log_level=log_level,
        access_log=access_log,
        graceful_s=3,
    )


def _prepare(
    project_or_store: Any,
    host: str,
    port: int,
    keys: Any,
    poll_s: float,
    log_level: str,
    access_log: bool,
) -> tuple[UiApp, Any, Any]:
    app = create_app(project_or_store, keys=keys, poll_s=poll_s)
    _check_bind(host, app)
    check_port(port)
    if keys is None:  # loopback only: answer only requests addressed to it (DNS rebinding)
        bare = host.strip("[]").lower()
        app.allowed_hosts = frozenset({"localhost", "127.0.0.1", "[::1]", bare, f"[{bare}]"})
    sock = _bind(host, port)
    server = _uvicorn(app, log_level, access_log)
    app.server = server
    return app, sock, server


class RunningUi(BackgroundServer):
    """A dashboard running in a background thread: ``url``, ``app``, :meth:`stop` (also on
    leaving a ``with`` block)."""

    app: UiApp

    def stop(self, timeout: float = 15) -> None:
        self.app.closing.set()  # live streams end at their next poll
        super().stop(timeout)


def start(
    project_or_store: Any = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    keys: Any = None,
    poll_s: float = 0.5,
    log_level: str = "warning",
    access_log: bool = False,
    ready_timeout: float = 30,
) -> RunningUi:
    """Serve the dashboard in a background thread (port 0: any free port); returns once it
    answers. ``start(...).url`` is where to point a browser."""
    app, sock, server = _prepare(project_or_store, host, port, keys, poll_s, log_level, access_log)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="keel-ui", daemon=True
    )
    thread.start()
    running = RunningUi(app, server, thread, *sock.getsockname()[:2])
    deadline = threading.Event()
    waited = 0.0
    while not server.started and thread.is_alive() and waited < ready_timeout:
        deadline.wait(0.01)
        waited += 0.01
    if not server.started:
        running.stop()
        sock.close()
        raise KeelError("ui: the dashboard did not start")
    return running


def serve(
    project_or_store: Any = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    keys: Any = None,
    poll_s: float = 0.5,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the dashboard until interrupted. Refuses a non-loopback ``host`` without
    ``keys``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app, sock, server = _prepare(project_or_store, host, port, keys, poll_s, log_level, access_log)
    log.info("keel ui: http://%s:%s", *sock.getsockname()[:2])
    try:
        server.run(sockets=[sock])
    finally:
        app.closing.set()
        sock.close()
