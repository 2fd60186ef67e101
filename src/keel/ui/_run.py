"""The Run page (``/runs/<id>``) and its API: the run's record, metric histories as
columns, an artifact's bytes, its lineage, and a live stream of new points and status
changes while it runs (server-sent events)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import select

from keel.errors import NotFound
from keel.store import _tables
from keel.ui._app import Route
from keel.ui._http import Request, Response, UiError, esc, html_response, json_response
from keel.ui._layout import page
from keel.ui._records import (
    histories,
    last_metric_id,
    lineage_graph,
    metric_counts,
    resolve_run,
    run_records,
)

__all__ = ["ROUTES", "EventStream"]

_M, _R, _A = _tables.metrics, _tables.runs, _tables.artifacts
#: Most metric keys one history request may name.
MAX_KEYS = 100


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _record(store: Any, run_id: str) -> dict[str, Any]:
    with store.read() as conn:
        rid = resolve_run(conn, run_id)
        rec = run_records(conn, [rid], full=True)[0]
        rec["metric_counts"] = metric_counts(conn, rid)
        rec["last_metric_id"] = last_metric_id(conn, rid)
    return rec


def api_run(request: Request) -> Response:
    """``GET /api/runs/<id>``: the run's attributes, ``tags``, ``params``, ``metrics`` (last
    values), ``metric_counts``, ``env``, ``artifacts`` [{name, sha, size}],
    ``last_metric_id``."""
    request.app.mark_dead_runs()
    return json_response(_record(request.app.store, request.params["run_id"]))


def _keys(request: Request) -> list[str]:
    raw = request.query.get("keys") or ""
    keys = [k for k in raw.split(",") if k]
    if len(keys) > MAX_KEYS:
        raise UiError("invalid_input", f"keys: at most {MAX_KEYS} metric keys, got {len(keys)}")
    return keys


def api_metrics(request: Request) -> Response:
    """``GET /api/runs/<id>/metrics?keys=a,b``: ``{"run", "metrics": {key: {"steps": [..],
    "values": [..]}}}`` (no keys: every metric of the run)."""
    store = request.app.store
    keys = _keys(request)
    with store.read() as conn:
        rid = resolve_run(conn, request.params["run_id"])
        if not keys:
            keys = list(metric_counts(conn, rid))[:MAX_KEYS]
        found = histories(conn, [rid], keys)[rid]
    return json_response({"run": rid, "metrics": found})


def api_artifact(request: Request) -> Response:
    """``GET /api/runs/<id>/artifact?name=NAME``: the artifact's bytes, as a download."""
    store = request.app.store
    name = request.query.get("name") or ""
    with store.read() as conn:
        rid = resolve_run(conn, request.params["run_id"])
        row = conn.execute(
            select(_A.c.sha, _A.c.size).where(_A.c.run_id == rid, _A.c.name == name)
        ).first()
    if row is None:
        raise NotFound(f"run {rid[:12]} has no artifact {name[:200]!r}")
    try:
        data = store.blobs.get_bytes(row.sha)
    except Exception:
        raise NotFound(f"the bytes of artifact {name[:200]!r} are missing from the store") from None
    filename = name.rsplit("/", 1)[-1] or "artifact"
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[:100]
    headers = [
        (b"content-disposition", f'attachment; filename="{ascii_name}"'.encode()),
        (b"cache-control", b"no-store"),
    ]
    return Response(data, 200, headers, b"application/octet-stream")


def api_lineage(request: Request) -> Response:
    """``GET /api/runs/<id>/lineage``: ``{"nodes": [{id, kind, label, href, depth}],
    "edges": [{from, to, role}]}``."""
    store = request.app.store
    with store.read() as conn:
        rid = resolve_run(conn, request.params["run_id"])
    return json_response(lineage_graph(store, rid))


class EventStream:
    """``text/event-stream`` of one run: ``metrics`` events (``{"metrics": {key: {"steps",
    "values"}}}``, id: the last metric row sent, so a reconnecting browser resumes there),
    ``status`` events (``{"status", "reason", "ended_at"}``) when it changes, and ``end``
    once the run is no longer running; then the stream closes. The store is polled every
    ``app.poll_s`` seconds; a comment line every 15 s keeps proxies from closing it."""

    def __init__(self, app: Any, run_id: str, after: int, receive: Any) -> None:
        self.app, self.run_id, self.after, self.receive = app, run_id, after, receive
        self.gone = asyncio.Event()

    def _poll(self) -> tuple[dict[str, Any], Any]:
        self.app.mark_dead_runs()  # a run whose process died ends its stream too
        fresh: dict[str, dict[str, list]] = {}
        with self.app.store.read() as conn:
            rows = conn.execute(
                select(_M.c.id, _M.c.key, _M.c.step, _M.c.value)
                .where(_M.c.run_id == self.run_id, _M.c.id > self.after)
                .order_by(_M.c.id)
                .limit(100_000)
            ).all()
            status = conn.execute(
                select(_R.c.status, _R.c.status_reason, _R.c.ended_at).where(_R.c.id == self.run_id)
            ).first()
        for mid, key, step, value in rows:
            col = fresh.setdefault(key, {"steps": [], "values": []})
            col["steps"].append(step)
            col["values"].append(value)
            self.after = mid
        return fresh, status

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                return

    def _stopping(self) -> bool:
        server = getattr(self.app, "server", None)
        return self.app.closing.is_set() or bool(getattr(server, "should_exit", False))

    async def __call__(self, send: Any) -> None:
        from keel.serve._http import dumps

        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        watcher = asyncio.get_running_loop().create_task(self._watch_disconnect())
        last_status, quiet, loop = None, 0.0, asyncio.get_running_loop()
        try:
            await send(
                {"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True}
            )
            while not self.gone.is_set() and not self._stopping():
                t0 = loop.time()
                fresh, status = await asyncio.to_thread(self._poll)
                chunks = []
                if fresh:
                    data = dumps({"metrics": fresh}).decode()
                    chunks.append(f"event: metrics\nid: {self.after}\ndata: {data}\n\n")
                state = (status.status, status.status_reason, status.ended_at) if status else None
                if state != last_status and state is not None:
                    last_status = state
                    data = dumps(
                        {"status": state[0], "reason": state[1], "ended_at": state[2]}
                    ).decode()
                    chunks.append(f"event: status\ndata: {data}\n\n")
                ended = status is None or status.status != "running"
                if ended:
                    chunks.append('event: end\ndata: {"ended": true}\n\n')
                quiet = 0.0 if chunks else quiet + self.app.poll_s
                if quiet >= 15:
                    chunks.append(": keep-alive\n\n")
                    quiet = 0.0
                if chunks:
                    body = "".join(chunks).encode()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if ended:
                    break
                wait = max(0.0, self.app.poll_s - (loop.time() - t0))
                try:
                    await asyncio.wait_for(self.gone.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            watcher.cancel()
            if not self.gone.is_set():
                try:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception:  # the client went away meanwhile
                    pass


async def api_events(request: Request) -> EventStream:
    """``GET /api/runs/<id>/events?after=METRIC_ID``: see :class:`EventStream`. Without
    ``after`` (or ``Last-Event-ID``) only points logged from now on are sent."""
    app = request.app
    given = request.headers.get("last-event-id") or request.query.get("after")
    if given is not None and not given.isdigit():
        raise UiError("invalid_input", f"after: expected a metric row id, got {given[:40]!r}")

    def start() -> tuple[str, int]:
        with app.store.read() as conn:
            rid = resolve_run(conn, request.params["run_id"])
            return rid, int(given) if given is not None else last_metric_id(conn, rid)

    rid, after = await asyncio.to_thread(start)
    return EventStream(app, rid, after, request.receive)


def _table(rows: list[tuple[Any, Any]], head: tuple[str, str], empty: str, cls: str = "") -> str:
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows)
    return (
        f'<table class="kv {esc(cls)}"><thead><tr><th scope="col">{esc(head[0])}</th>'
        f'<th scope="col">{esc(head[1])}</th></tr></thead><tbody>{body}</tbody></table>'
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    from keel.serve._http import dumps

    return dumps(value).decode()


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(size)


def run_view(request: Request) -> Response:
    request.app.mark_dead_runs()
    rec = _record(request.app.store, request.params["run_id"])
    rid = rec["id"]
    title = rec["name"] or rid[:12]
    meta = [
        ("id", rid),
        ("experiment", rec["experiment"]),
        ("status", rec["status"] + (f" ({rec['reason']})" if rec["reason"] else "")),
        ("started", when(rec["created_at"])),
        ("ended", when(rec["ended_at"])),
        ("wall time", f"{rec['wall_time']:.1f} s" if rec["wall_time"] is not None else ""),
        ("seed", rec["seed"] if rec["seed"] is not None else ""),
        ("git commit", rec["git_commit"] or ""),
        ("by", rec["created_by"]),
        ("host / pid", f"{rec['host'] or ''} / {rec['pid'] or ''}"),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta if v != "")
    counts = rec["metric_counts"]
    metric_rows = "".join(
        f'<tr><th scope="row">{esc(k)}</th><td class="num">{esc(_fmt(v))}</td>'
        f'<td class="num">{counts.get(k, 0):,}</td></tr>'
        for k, v in rec["metrics"].items()
    )
    metrics_html = (
        '<table class="kv" id="metrics-table"><thead><tr><th scope="col">metric</th>'
        '<th scope="col">last</th><th scope="col">points</th></tr></thead>'
        f"<tbody>{metric_rows}</tbody></table>"
        if metric_rows
        else '<p class="muted" id="metrics-table">no metrics logged</p>'
    )
    arts = "".join(
        f'<li><a href="/api/runs/{esc(rid)}/artifact?name={esc(_quote(a["name"]))}" download>'
        f'{esc(a["name"])}</a> <span class="muted">{esc(_size(a["size"]))}</span></li>'
        for a in rec["artifacts"]
    )
    env = rec["env"] if isinstance(rec["env"], dict) else {}
    env_rows = [(k, v) for k, v in env.items() if not isinstance(v, dict)]
    env_rows += [(k, v) for k, v in (env.get("packages") or {}).items()]
    status_cls = esc(rec["status"])
    params_html = _table(
        [(k, _fmt(v)) for k, v in rec["params"].items()], ("param", "value"), "no parameters"
    )
    tags = rec["tags"] if isinstance(rec["tags"], dict) else {}
    tags_html = _table(list(tags.items()), ("tag", "value"), "no tags")
    arts_html = f'<ul class="artifacts">{arts}</ul>' if arts else '<p class="muted">none</p>'
    env_html = _table(env_rows, ("name", "version"), "not recorded")
    body = f"""
<article class="run-page" id="run" data-run="{esc(rid)}">
  <h1><span class="run-name">{esc(title)}</span>
    <span class="badge status-{status_cls}" id="run-status">{esc(rec["status"])}</span></h1>
  <dl class="meta">{dl}</dl>
  <div class="cols2">
    <section><h2>Parameters</h2>{params_html}</section>
    <section><h2>Metrics</h2>{metrics_html}</section>
  </div>
  <section><h2>Curves</h2><div id="curves" class="curves"></div></section>
  <section><h2>Lineage</h2><div id="lineage" class="lineage"></div></section>
  <div class="cols2">
    <section><h2>Artifacts</h2>{arts_html}</section>
    <section><h2>Tags</h2>{tags_html}</section>
  </div>
  <section><h2>Environment</h2>{env_html}</section>
</article>"""
    data = {
        "run": {"id": rid, "name": rec["name"], "status": rec["status"]},
        "metric_counts": counts,
        "last_metric_id": rec["last_metric_id"],
        "lineage": lineage_graph(request.app.store, rid),
    }
    return html_response(
        page(
            request.app,
            f"Run {title}",
            body,
            active="/runs",
            scripts=("vendor/uPlot.iife.min.js", "charts.js", "run.js"),
            styles=("vendor/uPlot.min.css",),
            data=data,
        )
    )


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


ROUTES = (
    Route("GET", "/runs/{run_id}", run_view),
    Route("GET", "/api/runs/{run_id}", api_run),
    Route("GET", "/api/runs/{run_id}/metrics", api_metrics),
    Route("GET", "/api/runs/{run_id}/artifact", api_artifact),
    Route("GET", "/api/runs/{run_id}/lineage", api_lineage),
    Route("GET", "/api/runs/{run_id}/events", api_events),
)
