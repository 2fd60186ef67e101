"""The ASGI application: its settings, its slots, loading and atomic reloads, lifespan."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel import config
from keel.errors import InvalidInput, KeelError
from keel.serve._metrics import ServerMetrics
from keel.serve._middleware import compose
from keel.serve._release import Release, ReleaseSlot
from keel.serve._routes import ENDPOINTS, Router
from keel.serve._slot import Deployment, Route, Slot, load_deployment

__all__ = ["KeelApp", "ServeConfig", "create_app"]

log = logging.getLogger("keel.serve")
_UNSEEN = object()


@dataclass(frozen=True)
class ServeConfig:
    """Every setting of the model server, with its default.

    alias: the alias a route serves when it names no alias or version.
    threads: ONNX Runtime intra-op threads per model session.
    max_batch_rows: most rows merged into one session run.
    max_wait_ms: how long a batch may wait for requests already being received (0: never).
    max_request_rows: most rows in one request (413 past it).
    max_body_bytes: largest request body (413 past it), checked while it streams in.
    run_in_thread: run sessions in a thread per model (True) or always on the event loop.
    inline_run_us: runs expected (from warm-up timings) to take less than this run on the
        event loop even with run_in_thread: the hand-off to the model's thread and back
        costs CPU (a wake-up each way and the GIL changing hands), and it buys overlap of
        parsing with the run only where a core is free for it. 5 ms keeps an ordinary
        batch (a 100-row tree-ensemble run takes ~1.3 ms) on the loop, which costs ~0.3 ms
        less CPU a 100-row request on a 2-core machine; a longer run (a big batch, a large
        network) goes to the thread so the loop keeps reading requests and answering
        /healthz. Several cores: scale out with ``keel serve --workers``.
    export_missing: export a version that has no ONNX graph yet when loading it.
    watch_seconds: how often to look for alias moves in the registry; a route whose alias
        moved is reloaded by itself (0: never; reload with ``POST /admin/reload``).
    head_timeout_s: a connection whose request head (request line and headers) is not
        complete this many seconds after it opened, or after its last answer, is closed.
    max_connections: most open connections; one opened past it is answered 503 and closed
        at once (also uvicorn's ``limit_concurrency``: in-flight requests are bounded too).
        Each connection holds a file descriptor: ``serve`` raises the soft ``RLIMIT_NOFILE``
        to fit when the hard limit allows.
    max_string_bytes: longest string value (UTF-8 bytes) in a request (422 past it, naming
        the row and field; the request is not logged). Default: ``KEEL_MAX_STRING_BYTES``.
    public_metrics: answer ``/metrics`` without a key although the server has keys (it
        names every model, version and monitor gauge, so by default it needs one).
    worker: this process's number among ``keel serve --workers N`` (from 1), answered in
        every response's ``x-keel-worker`` header; 0: the server is one process.
    release_file: the YAML file the releases came from (``keel serve --release``), looked at
        every ``watch_seconds``: when it changes, each release whose weights, variants or
        shadow changed is rebuilt (new variants loaded and warmed first) and swapped in
        whole, so a canary change reaches every worker within ``watch_seconds`` plus the
        load time. A file keel refuses, or one that adds or drops a route (a restart does
        that), leaves the running releases as they are, logged and recorded as a
        ``serve.release_failed`` event.
    """

    alias: str = "production"
    threads: int = 1
    max_batch_rows: int = 256
    max_wait_ms: float = 1.0
    max_request_rows: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    run_in_thread: bool = True
    inline_run_us: float = 5000.0
    export_missing: bool = True
    watch_seconds: float = 2.0
    head_timeout_s: float = 5.0
    max_connections: int = 4096
    public_metrics: bool = False
    worker: int = 0
    release_file: str | None = None
    max_string_bytes: int = dataclasses.field(
        default_factory=lambda: config.get_int("KEEL_MAX_STRING_BYTES")
    )

    def __post_init__(self) -> None:
        ints = (
            "threads",
            "max_batch_rows",
            "max_request_rows",
            "max_body_bytes",
            "max_connections",
            "max_string_bytes",
        )
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInput(f"serve setting {name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.inline_run_us, int | float) or self.inline_run_us < 0:
            raise InvalidInput(
                f"serve setting inline_run_us: expected a number >= 0, got {self.inline_run_us!r}"
            )
        if not isinstance(self.max_wait_ms, int | float) or not 0 <= self.max_wait_ms <= 1000:
            raise InvalidInput(
                f"serve setting max_wait_ms: expected 0 to 1000, got {self.max_wait_ms!r}"
            )
        watch = self.watch_seconds
        if isinstance(watch, bool) or not isinstance(watch, int | float) or not 0 <= watch <= 3600:
            raise InvalidInput(f"serve setting watch_seconds: expected 0 to 3600, got {watch!r}")
        head = self.head_timeout_s
        if isinstance(head, bool) or not isinstance(head, int | float) or not 0 < head <= 300:
            raise InvalidInput(
                f"serve setting head_timeout_s: expected more than 0, at most 300, got {head!r}"
            )


class KeelApp:
    """The model server as an ASGI app. Models load in the background at startup (the
    lifespan): ``/healthz`` answers at once, ``/readyz`` once every route is loaded."""

    def __init__(
        self,
        store: Any,
        routes: list[str | Route | Release],
        *,
        config: ServeConfig | None = None,
        keys: Any = None,
        sink: Any = None,
    ) -> None:
        self.store = store
        self.config = config or ServeConfig()
        parsed = [
            r if isinstance(r, Route | Release) else Route.parse(r, self.config.alias)
            for r in routes
        ]
        for r in parsed:
            if isinstance(r, Release):
                r.check()
        if not parsed:
            raise InvalidInput("serve: give at least one model to serve, e.g. adult@production")
        names = [r.name for r in parsed]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidInput(f"serve: route name(s) {', '.join(twice)} given twice; use NAME=REF")
        if keys is not None and not len(keys):
            raise InvalidInput("serve: auth is on but the key ring is empty; add a key")
        for r in parsed:
            if isinstance(r, Release):
                r.resolve(store)
        self.slots: dict[str, Slot | ReleaseSlot] = {
            r.name: ReleaseSlot(r) if isinstance(r, Release) else Slot(r) for r in parsed
        }
        self.keys = keys
        self.sink = sink
        self.metrics = ServerMetrics()
        self._monitor_seen: dict[str, int] = {}  # model -> newest monitor event gauged
        self.router = Router(ENDPOINTS)
        self.started = threading.Event()  # set when the first load of every route is done
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stack = compose(
            self.router,
            self.metrics,
            keys,
            self.config.max_body_bytes,
            public_metrics=self.config.public_metrics,
            worker=self.config.worker,
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task] = set()
        self._release_stamp = _file_stamp(self.config.release_file)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["app"] = self
            await self._stack(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    def default_slot(self) -> Slot | ReleaseSlot:
        return next(iter(self.slots.values()))

    @property
    def ready(self) -> bool:
        return all(s.live is not None for s in self.slots.values())

    # -- lifespan --------------------------------------------------------------------

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.loop = asyncio.get_running_loop()
                if self.config.worker:
                    # one of several workers on a shared port takes connections only once
                    # its models are loaded (uvicorn listens after startup completes), so a
                    # restarted worker never answers 503 while the others could answer
                    await self._start()
                else:
                    self._spawn(self._start())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        try:
            await self.reload()
            # Long-lived objects (libraries, sessions) leave the collector's view, so a
            # full collection under load scans only what requests create.
            gc.freeze()
        finally:
            self.started.set()
        if self.config.watch_seconds > 0:
            self._spawn(self._watch(self.config.watch_seconds))

    async def _stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        for top in self.slots.values():
            for slot in top.leaves():
                if slot.live is not None:
                    await slot.live.retire()
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception:
                log.exception("closing the prediction sink failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- reload ----------------------------------------------------------------------

    async def reload(self, name: str | None = None) -> list[dict[str, Any]]:
        """Re-resolve each route (or route ``name``): a version that moved is loaded, warmed
        and swapped in at once; if it fails to load the current one keeps serving. Each
        outcome is recorded as a ``serve.reload`` / ``serve.reload_failed`` event."""
        tops = [self.slots[name]] if name is not None else list(self.slots.values())
        slots = [leaf for top in tops for leaf in top.leaves()]
        return list(await asyncio.gather(*(self._reload_slot(s) for s in slots)))

    def reload_threadsafe(self, name: str | None = None, timeout: float = 300) -> list[dict]:
        """:meth:`reload` from another thread than the server's."""
        if self.loop is None:
            raise InvalidInput("serve: the app is not running")
        return asyncio.run_coroutine_threadsafe(self.reload(name), self.loop).result(timeout)

    async def _reload_slot(self, slot: Slot) -> dict[str, Any]:
        name = slot.route.name
        lock_key = name if slot.variant is None else f"{name}\0{slot.variant}"
        async with self._locks.setdefault(lock_key, asyncio.Lock()):
            old = slot.live
            result: dict[str, Any] = {"model": name, "from": old.version if old else None}
            if slot.variant is not None:
                result["variant"] = slot.variant
            try:
                dep = await asyncio.to_thread(self._load_if_moved, slot)
            except Exception as exc:
                code = exc.code if isinstance(exc, KeelError) else "load_failed"
                log.error("serve: loading %s for route %r failed: %s", slot.route.ref, name, exc)
                slot.failure = f"{type(exc).__name__}: {exc}"
                self.metrics.reloads.labels(name, "failed").inc()
                await self._event("serve.reload_failed", slot, old, None, code, slot.failure)
                return {**result, "ok": False, "changed": False, "error": {"code": code}}
            if dep is None:
                return {**result, "ok": True, "changed": False, "to": result["from"]}
            dep.start(self.config, self._on_batch(name, dep), slot.arrivals)
            slot.swap(dep)
            self.metrics.loaded.labels(name, str(dep.version)).set(1)
            if old is not None and not self._still_served(name, old.version):
                self.metrics.loaded.labels(name, str(old.version)).set(0)
                self._spawn(old.retire())
            self.metrics.reloads.labels(name, "swapped").inc()
            await self._event("serve.reload", slot, old, dep, None, None)
            log.info("serve: route %r now serves %s", name, dep.ref)
            return {**result, "ok": True, "changed": True, "to": dep.version}

    # -- alias watch -----------------------------------------------------------------

    async def _watch(self, every: float) -> None:
        """Poll the registry's alias moves (the newest ``alias_events`` id: one cheap
        query) and reload each slot whose alias now resolves to another version than the
        one it last tried. A move is acted on after a short grace, so an operator's
        ``POST /admin/reload`` right after it does the swap and this finds nothing to do."""
        mark: Any = _UNSEEN  # the first look also catches moves made during startup
        while True:
            try:
                now = await asyncio.to_thread(self._alias_mark)
                if now != mark:
                    await asyncio.sleep(min(0.5, every))
                    await self.reload_moved()
                mark = now
                if self.config.release_file is not None:
                    await self.reload_release_file()
                await asyncio.to_thread(self.refresh_monitor_gauges)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("serve: watching the registry for alias moves failed")
            await asyncio.sleep(every)

    # -- release file watch ----------------------------------------------------------

    async def reload_release_file(self) -> list[dict[str, Any]]:
        """Apply the release file if it changed since it was last read (see
        ``ServeConfig.release_file``): one result per release in it, or one failure."""
        path = self.config.release_file
        stamp = _file_stamp(path)
        if path is None or stamp == self._release_stamp:
            return []
        self._release_stamp = stamp
        try:
            releases = await asyncio.to_thread(self._read_release_file, path)
        except Exception as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error(
                "serve: release file %s not applied (the running releases stay): %s", path, why
            )
            await self._release_event("serve.release_failed", path, {"error": why[:1000]})
            return [{"file": path, "ok": False, "error": why}]
        results = []
        for release in releases:
            results.append(await self._apply_release(release))
        return results

    def _read_release_file(self, path: str) -> list[Release]:
        from keel.serve._release import load_releases

        releases = load_releases(path)
        served = {name for name, top in self.slots.items() if isinstance(top, ReleaseSlot)}
        given = {r.name for r in releases}
        if given != served:
            added, dropped = sorted(given - served), sorted(served - given)
            what = "; ".join(
                [f"adds route(s) {', '.join(added)}"] * bool(added)
                + [f"drops route(s) {', '.join(dropped)}"] * bool(dropped)
            )
            raise InvalidInput(
                f"release file {path}: {what}; a running server changes the releases it "
                "serves, not its routes (restart it for that)"
            )
        for release in releases:
            release.resolve(self.store)
        return releases

    async def _apply_release(self, release: Release) -> dict[str, Any]:
        """Swap in ``release`` for the route of that name: variants it keeps keep their
        loaded versions; new ones are loaded first, and if one fails the old release stays."""
        old = self.slots[release.name]
        assert isinstance(old, ReleaseSlot)
        if old.release == release:
            return {"release": release.name, "ok": True, "changed": False}
        new = ReleaseSlot(release, reuse=old)
        fresh = [leaf for leaf in new.leaves() if leaf.live is None]
        loaded = await asyncio.gather(*(self._reload_slot(leaf) for leaf in fresh))
        if not all(r["ok"] for r in loaded):
            for leaf in fresh:
                if leaf.live is not None:
                    self._spawn(leaf.live.retire())
            why = "; ".join(
                f"{r.get('variant')}: {(r.get('error') or {}).get('code')}"
                for r in loaded
                if not r["ok"]
            )
            log.error("serve: release %r not changed: %s", release.name, why)
            await self._release_event(
                "serve.release_failed",
                self.config.release_file,
                {"release": release.name, "error": why},
            )
            return {"release": release.name, "ok": False, "changed": False, "error": why}
        self.slots[release.name] = new  # one assignment: a request sees the old or the new
        kept = set(map(id, new.leaves()))
        for leaf in old.leaves():
            if id(leaf) not in kept and leaf.live is not None:
                if not self._still_served(release.name, leaf.live.version):
                    self.metrics.loaded.labels(release.name, str(leaf.live.version)).set(0)
                self._spawn(leaf.live.retire())
        weights = {variant: weight for variant, weight in new.weights}
        log.info("serve: release %r now %s", release.name, weights)
        await self._release_event(
            "serve.release",
            self.config.release_file,
            {"release": release.name, "variants": weights, "shadow": release.shadow},
        )
        return {"release": release.name, "ok": True, "changed": True, "variants": weights}

    async def _release_event(self, kind: str, path: str | None, payload: dict[str, Any]) -> None:
        def write() -> None:
            with self.store.write() as conn:
                self.store.add_event(
                    conn, kind, str(path), {**payload, "worker": self.config.worker}
                )

        try:
            await asyncio.to_thread(write)
        except Exception:
            log.exception("serve: recording %s failed", kind)

    def refresh_monitor_gauges(self) -> None:
        """Set ``keel_monitor_value`` from the newest ``monitor`` event of each served model
        (written by ``keel monitor run``): drift share, performance, fairness, window size."""
        import json

        from sqlalchemy import select

        from keel.store import _tables

        t = _tables.events
        models = {leaf.route.model for top in self.slots.values() for leaf in top.leaves()}
        with self.store.read() as conn:
            for model in models:
                row = conn.execute(
                    select(t.c.id, t.c.payload_json)
                    .where(t.c.kind == "monitor", t.c.subject == model)
                    .order_by(t.c.id.desc())
                    .limit(1)
                ).first()
                if row is None or self._monitor_seen.get(model) == row.id:
                    continue
                self._monitor_seen[model] = row.id
                values = json.loads(row.payload_json).get("values") or {}
                for path, value in values.items():
                    if _GAUGED.match(path) and isinstance(value, int | float):
                        self.metrics.monitor.labels(model, path).set(float(value))

    def _alias_mark(self) -> Any:
        from sqlalchemy import func, select

        from keel.store import _tables

        with self.store.read() as conn:
            return conn.execute(select(func.max(_tables.alias_events.c.id))).scalar()

    async def reload_moved(self) -> list[dict[str, Any]]:
        """Reload the slots served by an alias that now names another version than the
        one each last loaded or tried (a version that failed is not retried until the
        alias moves again, or an admin reload)."""
        from keel import registry

        def moved(slot: Slot) -> bool:
            if slot.route.alias is None:
                return False
            try:
                version = registry.get_version(self.store, slot.route.ref).version
            except Exception:
                return slot.target is not None  # gone: reload once, recording the failure
            return version != slot.target

        slots = [leaf for top in self.slots.values() for leaf in top.leaves()]
        flags = await asyncio.to_thread(lambda: [moved(s) for s in slots])
        todo = [s for s, m in zip(slots, flags, strict=True) if m]
        return list(await asyncio.gather(*(self._reload_slot(s) for s in todo)))

    def _still_served(self, name: str, version: int) -> bool:
        leaves = self.slots[name].leaves()
        return any(s.live is not None and s.live.version == version for s in leaves)

    def _load_if_moved(self, slot: Slot) -> Deployment | None:
        from keel import registry

        try:
            mv = registry.get_version(self.store, slot.route.ref)
        except Exception:
            slot.target = None
            raise
        slot.target = mv.version
        live = slot.live
        if live is not None and (live.model, live.version) == (mv.name, mv.version):
            return None
        return load_deployment(self.store, mv.ref, self.config)

    async def _event(
        self, kind: str, slot: Slot, old: Any, new: Any, code: str | None, why: str | None
    ) -> None:
        payload = {
            "route": slot.route.name,
            "serves": slot.route.ref,
            "from": old.ref if old else None,
            "to": new.ref if new else None,
            "error_code": code,
            "error": why[:1000] if why else None,
        }

        def write() -> None:
            with self.store.write() as conn:
                self.store.add_event(conn, kind, slot.route.name, payload)

        try:
            await asyncio.to_thread(write)
        except Exception:
            log.exception("serve: recording the %s event failed", kind)

    # -- shadow traffic --------------------------------------------------------------

    def shadow_copy(self, top: Any, feed: dict[str, Any], n: int, meta: Any) -> None:
        """Send a copy of an answered request to ``top``'s shadow, in the background; what
        becomes of it never reaches the caller (failures are counted and logged)."""
        shadow = getattr(top, "shadow", None)
        if shadow is None:
            return
        try:
            counts = top.shadow_counts
            if top.shadow_in_flight >= top.release.max_shadow_in_flight:
                counts["dropped"] += 1
                self.metrics.shadow.labels(top.release.name, "", "dropped").inc()
                return
            counts["sent"] += 1
            top.shadow_in_flight += 1
            self._spawn(self._shadow_run(top, shadow, feed, n, meta))
        except Exception:  # pragma: no cover - never let the shadow reach the caller
            log.exception("serve: sending a shadow copy failed")

    async def _shadow_run(self, top: Any, shadow: Slot, feed: Any, n: int, meta: Any) -> None:
        name, version, outcome = top.release.name, "", "ok"
        try:
            await asyncio.sleep(0)  # let the caller's answer go first
            dep = shadow.pick()
            version = str(dep.version)
            await asyncio.wait_for(dep.submit(feed, n, meta), timeout=top.release.shadow_timeout_s)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except TimeoutError:
            outcome = "timeout"
            log.warning("serve: the shadow of %r (%s) timed out", name, shadow.route.ref)
        except Exception as exc:
            outcome = "error"
            log.warning("serve: the shadow of %r (%s) failed: %s", name, shadow.route.ref, exc)
        finally:
            top.shadow_in_flight -= 1
            key = "ok" if outcome == "ok" else "failed"
            top.shadow_counts[key] += 1
            self.metrics.shadow.labels(name, version, outcome).inc()

    # -- after each batch ------------------------------------------------------------

    def _on_batch(self, name: str, dep: Deployment) -> Any:
        rows = self.metrics.batch_rows.labels(name, str(dep.version))
        requests = self.metrics.batch_requests.labels(name, str(dep.version))

        def on_batch(items: list[Any], feed: Any, outputs: dict[str, Any], seconds: float) -> None:
            rows.observe(sum(item.n for item in items))
            requests.observe(len(items))
            if self.sink is not None:
                asyncio.get_running_loop().call_soon(
                    self._log_batch, name, dep, items, feed, outputs, time.perf_counter()
                )

        return on_batch

    def _log_batch(
        self, name: str, dep: Deployment, items: list[Any], feed: Any, outputs: dict, done: float
    ) -> None:
        try:
            if hasattr(self.sink, "record_block"):  # columns, encoded off the request path
                self.sink.record_block(dep.block_of(items, feed, outputs, done))
                return
            entries, offset = [], 0
            for item in items:
                request_id, ts, t0 = item.meta
                latency = (done - t0) * 1000.0
                outs = dep.outputs_of(outputs, offset, offset + item.n)
                for row, out in zip(dep.rows_of(item), outs, strict=True):
                    entries.append(
                        {
                            "request_id": request_id,
                            "model": dep.model,
                            "version": dep.version,
                            "inputs": row,
                            "outputs": out,
                            "latency_ms": latency,
                            "ts": ts,
                        }
                    )
                offset += item.n
            self.sink.record(entries)
        except Exception:
            log.exception("serve: handing predictions to the sink failed")


#: The monitor values exported as gauges (the rest stay in the event: per-feature tests,
#: group tables, intervals).
_GAUGED = re.compile(
    r"^(drift\.share|drift\.n_drifted|window\.(rows|labeled)|quality\.[a-z_]+"
    r"|performance\.[a-z0-9_]+|fairness\.[^.]+\.[a-z_]+"
    r"|prediction_drift\.[a-z]+\.(statistic|drift))$"
)


def store_of(project_or_store: Any) -> Any:
    """A Store from a Store, a Project, a project folder, or None (the current project)."""
    from keel.project import Project, open_project
    from keel.store import Store

    if isinstance(project_or_store, Store):
        return project_or_store
    if isinstance(project_or_store, Project):
        return project_or_store.store
    if project_or_store is None or isinstance(project_or_store, str | Path):
        return open_project(project_or_store).store
    raise InvalidInput(
        f"serve: expected a Store, a Project or a project folder, got "
        f"{type(project_or_store).__name__}"
    )


def create_app(
    project_or_store: Any,
    routes: list[str | Route | Release] | str | Release,
    *,
    keys: Any = None,
    sink: Any = None,
    config: ServeConfig | None = None,
    **settings: Any,
) -> KeelApp:
    """The ASGI app serving ``routes`` (``"adult"``, ``"adult@candidate"``, ``"adult/3"``,
    ``"name=adult@candidate"``, or a :class:`Release` serving several versions by
    weight) from a project or store. ``settings`` override fields of
    :class:`ServeConfig` (e.g. ``max_batch_rows=64``)."""
    unknown = set(settings) - {f.name for f in dataclasses.fields(ServeConfig)}
    if unknown:
        raise InvalidInput(f"serve: unknown setting(s) {', '.join(sorted(unknown))}")
    cfg = dataclasses.replace(config or ServeConfig(), **settings)
    routes = [routes] if isinstance(routes, str | Route | Release) else list(routes)
    return KeelApp(store_of(project_or_store), routes, config=cfg, keys=keys, sink=sink)


def _file_stamp(path: str | None) -> tuple[int, int, int] | None:
    """What tells a changed file: its inode, size and modification time (ns)."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
