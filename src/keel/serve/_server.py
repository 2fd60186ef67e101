"""Run the model server: :func:`serve` (blocking, for the CLI) and :func:`start` (a server
in a background thread, for notebooks and tests). One process, uvicorn's httptools protocol
(with a request-head deadline and a connection bound, see :mod:`keel.serve._conn`) and
uvloop where installed."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from typing import Any

from keel.errors import InvalidInput, KeelError
from keel.serve._app import KeelApp, create_app

__all__ = ["RunningServer", "is_loopback", "serve", "start"]

log = logging.getLogger("keel.serve")


def _addresses(host: str, port: int = 0) -> list[tuple[int, tuple[Any, ...]]]:
    """Every (family, socket address) ``host`` names for listening, resolved as ``bind``
    would: IPv4 in any spelling ``inet_aton`` takes (``127.1``, ``0x7f.1``), IPv6, names."""
    infos = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    return [(family, addr) for family, _, _, _, addr in infos]


def _is_loopback_ip(text: str) -> bool:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback one (127.0.0.0/8, ::1):
    ``localhost``, ``127.1``, ``127.0.0.2``, ``::1``, ``0:0:0:0:0:0:0:1`` and the like."""
    if not host or not host.strip("[]"):
        return False  # every interface
    try:
        addrs = _addresses(host)
    except (OSError, UnicodeError):
        return False
    return bool(addrs) and all(_is_loopback_ip(addr[0]) for _, addr in addrs)


def _check_bind(host: str, app: KeelApp) -> None:
    if not is_loopback(host) and app.keys is None:
        raise InvalidInput(
            f"serve: refusing to listen on {host!r} without API keys, since anyone who can "
            "reach it could call the models; give keys (keel serve --keys FILE) or listen on "
            "127.0.0.1"
        )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on the first address ``host`` resolves to (the one checked)."""
    try:
        family, addr = _addresses(host, port)[0]
    except (OSError, UnicodeError, IndexError):
        raise InvalidInput(f"serve: cannot resolve the host {host!r} to listen on") from None
    try:
        return socket.create_server(addr[:2], family=family, backlog=2048)
    except OSError as exc:
        raise InvalidInput(f"serve: cannot listen on {host}:{port}: {exc.strerror}") from None


def uvicorn_server(
    app: Any,
    *,
    head_timeout_s: float,
    max_connections: int,
    log_level: str,
    access_log: bool,
    graceful_s: float,
) -> Any:
    """A uvicorn server for an ASGI ``app`` on keel's stack: uvloop where installed, the
    guarded httptools protocol (a request-head deadline and a connection bound), no server
    header. The model server and the dashboard both run on it."""
    import importlib.util

    import uvicorn

    from keel.serve._conn import guarded_protocol

    config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=guarded_protocol(head_timeout_s, max_connections),
        limit_concurrency=max_connections + 1,  # the guard refuses connections past it
        lifespan="on",
        log_config=None,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        # uvicorn annotates an int, but hands it to asyncio.timeout, which takes seconds as a float
        timeout_graceful_shutdown=graceful_s,  # type: ignore[arg-type]
    )
    return uvicorn.Server(config)


def _uvicorn(app: KeelApp, log_level: str, access_log: bool) -> Any:
    cfg = app.config
    return uvicorn_server(
        app,
        head_timeout_s=cfg.head_timeout_s,
        max_connections=cfg.max_connections,
        log_level=log_level,
        access_log=access_log,
        graceful_s=10,
    )


def _fit_open_files(max_connections: int) -> None:
    """Raise the soft limit on open files so ``max_connections`` fit (each connection holds
    one), as far as the hard limit allows; warn when it does not."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + 256  # the store, the models, the log
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < want:
        log.warning(
            "serve: the open-file limit (%s) is below --max-connections %s plus what the server "
            "needs; raise it (ulimit -n) or lower --max-connections",
            target,
            max_connections,
        )


def _reload_keys_on_sighup(keys: Any) -> Any:
    """On SIGHUP, have a key ring that follows its file read it again; returns the undo."""
    import signal

    hup = getattr(signal, "SIGHUP", None)
    if hup is None or not hasattr(keys, "reload_soon"):
        return lambda: None
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_hup(signum: int, frame: Any) -> None:
        keys.reload_soon()
        log.info("serve: SIGHUP: the API keys are read again on the next request")

    previous = signal.signal(hup, on_hup)
    return lambda: signal.signal(hup, previous)


class BackgroundServer:
    """A uvicorn server running in a background thread: ``url``, ``app``, :meth:`stop` (also
    on leaving a ``with`` block). The model server's and the dashboard's both are one."""

    def __init__(self, app: Any, server: Any, thread: threading.Thread, host: str, port: int):
        self.app, self.host, self.port = app, host, port
        self._server, self._thread = server, thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 15) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RunningServer(BackgroundServer):
    """A model server running in a background thread; :meth:`reload` swaps its models."""

    app: KeelApp

    def reload(self, name: str | None = None, timeout: float = 300) -> list[dict[str, Any]]:
        return self.app.reload_threadsafe(name, timeout)


def check_port(port: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidInput(f"port: expected a port number 0-65535, got {port!r}")


def _failures(app: KeelApp) -> str:
    return "; ".join(
        f"{name}: {slot.failure or 'not loaded'}"
        for name, slot in app.slots.items()
        if slot.live is None
    )


def _prepare(
    project_or_store: Any,
    routes: Any,
    host: str,
    port: int,
    keys: Any,
    sink: Any,
    log_level: str,
    access_log: bool,
    settings: dict[str, Any],
    sock: socket.socket | None = None,
) -> tuple[KeelApp, Any, Any]:
    """The app, its bound socket and the uvicorn server: what start() and serve() share
    (a worker of ``--workers N`` is given the socket its supervisor bound)."""
    app = create_app(project_or_store, routes, keys=keys, sink=sink, **settings)
    _check_bind(host, app)
    if sock is None:
        check_port(port)
        sock = _bind(host, port)
    return app, sock, _uvicorn(app, log_level, access_log)


def start(
    project_or_store: Any,
    routes: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    keys: Any = None,
    sink: Any = None,
    log_level: str = "warning",
    access_log: bool = False,
    ready_timeout: float = 300,
    **settings: Any,
) -> RunningServer:
    """Serve in a background thread; returns once every route is loaded (port 0: any free
    port, see ``.url``). Raises if a model fails to load, naming it and why."""
    app, sock, server = _prepare(
        project_or_store, routes, host, port, keys, sink, log_level, access_log, settings
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="keel-serve", daemon=True
    )
    thread.start()
    running = RunningServer(app, server, thread, *sock.getsockname()[:2])
    if not app.started.wait(ready_timeout) or not app.ready:
        running.stop()
        sock.close()
        raise KeelError(f"serve: the models did not load: {_failures(app) or 'timed out'}")
    return running


def serve(
    project_or_store: Any,
    routes: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    keys: Any = None,
    sink: Any = None,
    log_level: str = "info",
    access_log: bool = False,
    sock: socket.socket | None = None,
    on_ready: Any = None,
    **settings: Any,
) -> None:
    """Serve ``routes`` until interrupted (Ctrl-C or SIGTERM: in-flight requests finish,
    then uvicorn re-raises the signal, so the process ends as signalled). Refuses a
    non-loopback ``host`` without ``keys``; stops, naming the model and why, if one fails
    to load. A worker of ``keel serve --workers N`` passes the listening ``sock`` its
    supervisor bound and ``on_ready(failure)``, called once the first load is over
    (``failure``: None when every route loaded, else what failed)."""
    if not logging.getLogger().handlers:  # a bare process: show the server's log on stderr
        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app, sock, server = _prepare(
        project_or_store, routes, host, port, keys, sink, log_level, access_log, settings, sock
    )
    _fit_open_files(app.config.max_connections)

    def stop_if_load_failed() -> None:
        app.started.wait()
        if on_ready is not None:
            on_ready(None if app.ready else _failures(app) or "a model did not load")
        if not app.ready:
            server.should_exit = True

    threading.Thread(target=stop_if_load_failed, daemon=True).start()
    log.info("keel serve: listening on %s:%s", *sock.getsockname()[:2])
    restore = _reload_keys_on_sighup(app.keys)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        restore()
    if app.started.is_set() and not app.ready:
        raise KeelError(f"serve: the models did not load: {_failures(app)}")
