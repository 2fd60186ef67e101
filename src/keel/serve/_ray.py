"""keel's model server as Ray Serve replicas: ``keel serve --ray --replicas N``.

Each replica is one Ray actor running keel's own ASGI app (:func:`create_app`), built on the
replica from the project folder: the same routes, releases, API keys, batching and
prediction log as ``keel serve``, and the same answers. Ray Serve's HTTP proxy takes the
requests on ``host:port`` and spreads them over the replicas, which may sit on any node of
the cluster (each opens the project's store: a shared folder, or PostgreSQL for teams).

A replica reports ready to Ray only once its models are loaded, so the proxy never sends a
request to a replica that would answer 503. Every answer carries ``x-keel-worker``: the
replica's rank, from 1.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, KeelError

__all__ = ["APP_NAME", "RayServer", "check_replicas", "serve_on_ray", "start_on_ray"]

log = logging.getLogger("keel.serve")

APP_NAME = "keel"
MAX_REPLICAS = 1024


def check_replicas(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPLICAS:
        raise InvalidInput(
            f"--replicas: expected a whole number from 1 to {MAX_REPLICAS}, got {n!r}"
        )
    return n


@dataclass
class RayServer:
    """Replicas deployed on Ray Serve; :meth:`stop` removes them (and the local Ray, when
    this process started one)."""

    url: str
    replicas: int
    _executor: Any

    def stop(self) -> None:
        from ray import serve

        try:
            serve.delete(APP_NAME)
        finally:
            _teardown(self._executor)


def _replica_app(
    root: str,
    routes: list[Any],
    keys_file: str | None,
    log_sample: float,
    settings: dict[str, Any],
) -> Callable[[], Any]:
    """A builder Ray Serve calls on each replica: keel's app for the project at ``root``."""

    def build() -> Any:
        from keel.project import open_project
        from keel.serve._app import create_app
        from keel.serve._auth import KeyRing
        from keel.serve._predlog import PredictionLog
        from ray import serve

        rank: Any = serve.get_replica_context().rank  # a ReplicaRank (an int in older Ray)
        number = int(getattr(rank, "rank", rank)) + 1
        proj = open_project(root)  # held for the replica's life; the app closes its sink
        ring = KeyRing.from_file(keys_file) if keys_file else None
        sink = PredictionLog(proj.store, sample_rate=log_sample)
        return create_app(proj.store, routes, keys=ring, sink=sink, worker=number, **settings)

    return build


def start_on_ray(
    project_root: str | Path,
    routes: list[Any],
    *,
    replicas: int = 2,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    keys_file: str | Path | None = None,
    log_sample: float = 1.0,
    cpus_per_replica: float = 1.0,
    **settings: Any,
) -> RayServer:
    """Deploy ``routes`` of the project at ``project_root`` as ``replicas`` Ray Serve
    replicas behind ``host:port``, on the Ray cluster at ``address`` (else ``RAY_ADDRESS``,
    else a local Ray started here); returns once every replica has loaded its models."""
    from keel.executors import RayExecutor
    from keel.serve._server import is_loopback

    check_replicas(replicas)
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port: expected a port number 0-65535, got {port}")
    if not is_loopback(host) and keys_file is None:
        raise InvalidInput(
            f"serve: refusing to listen on {host!r} without API keys, since anyone who can "
            "reach it could call the models; give keys (keel serve --keys FILE) or listen on "
            "127.0.0.1"
        )
    if keys_file is not None:
        from keel.serve._auth import KeyRing

        KeyRing.from_file(keys_file)  # a bad key file is refused before any replica starts
    root = str(Path(project_root).resolve())
    ex = RayExecutor(address=address)  # else the cluster RAY_ADDRESS names, else a local Ray
    ex._ray()
    try:
        from ray import serve

        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        build = _replica_app(
            root, list(routes), str(keys_file) if keys_file else None, log_sample, settings
        )
        deployment: Any = serve.deployment(
            serve.ingress(build)(),
            name="keel-server",
            num_replicas=replicas,
            ray_actor_options={"num_cpus": cpus_per_replica},
            max_ongoing_requests=256,
        )
        serve.run(deployment.bind(), name=APP_NAME, route_prefix="/", blocking=False)
        server = RayServer(f"http://{host}:{port}", replicas, ex)
    except BaseException as exc:  # Ctrl-C during the start included: remove what started
        _teardown(ex)
        if isinstance(exc, KeelError | KeyboardInterrupt):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise KeelError(f"serve --ray: the replicas did not start: {first}") from None
    return server


def _teardown(ex: Any) -> None:
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001 - best effort: Ray may be what failed
        log.warning("serve --ray: Ray Serve did not shut down cleanly", exc_info=True)
    finally:
        ex.close()


def serve_on_ray(project_root: str | Path, routes: list[Any], **options: Any) -> None:
    """:func:`start_on_ray`, then block until SIGINT or SIGTERM and remove the replicas."""
    server = start_on_ray(project_root, routes, **options)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(
            f"keel serving on {server.url} with {server.replicas} Ray Serve replicas "
            "(Ctrl-C stops)",
            flush=True,
        )
        stop.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        server.stop()
