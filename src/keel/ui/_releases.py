"""The Releases page (``/releases``, ``/releases/<model>``): a served model's traffic by
version and alias over time, the comparison of the versions that served it (canary against
production, shadow against live, as ``keel compare`` computes it), a running server's own
counters, and the prediction log, searchable by request id with the lineage of one answer
back to the file its model was trained from.

Where the figures come from:

- the stored prediction log (:func:`keel.serve.traffic`, :func:`keel.serve.comparison`,
  :func:`keel.serve.find_predictions`): requests, rows and latency per version over the
  window. The log keeps answers only, so it has no error counts;
- a running server's ``/metrics``, when the page is given ``?server=URL``
  (:func:`keel.serve.server_metrics`): requests, errors by code and latency since it
  started, the release's split between variants and the shadow's outcomes; the page polls
  it and shows the request rate between two reads. Only a server on a loopback address
  (``http://127.0.0.1:PORT``, ``localhost``, ``::1``) or one listed in ``keel.yaml`` under
  ``ui: {servers: [URL, ...]}`` is read; any other URL is answered 400 naming ``server``,
  so the dashboard cannot be used to reach other hosts.

Query parameters: ``window`` (``all``, the default, or the last ``15m``, ``1h``, ``24h``,
``7d``...: a number and s/m/h/d), ``buckets`` (2 to 200), ``server`` and ``request_id``;
a malformed one is answered 400 naming it. An unknown model is a 404 naming it; a
well-formed request id that matches nothing is said so on the page (and is a 404 under
``/api``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote, urlencode

from keel.errors import NotFound
from keel.ui._app import Route
from keel.ui._http import Request, Response, UiError, esc, html_response, json_response, query_int
from keel.ui._layout import page
from keel.ui._run import when

__all__ = [
    "ROUTES",
    "WINDOWS",
    "fmt",
    "known_model",
    "lineage_tree",
    "model_link",
    "parse_window",
    "window_select",
]

#: The windows the pages offer (any other ``<n><s|m|h|d>`` is accepted too).
WINDOWS = ("all", "15m", "1h", "6h", "24h", "7d", "30d")
_WINDOW = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LOG_ROWS = 50


def parse_window(request: Request) -> tuple[str, float | None, float | None]:
    """``(window, since, until)`` from ``?window=``: ``all`` (no bounds) or the last N
    seconds/minutes/hours/days up to now; 400 naming ``window`` otherwise."""
    raw = (request.query.get("window") or "all").strip()
    if raw == "all":
        return raw, None, None
    m = _WINDOW.fullmatch(raw)
    if m is None:
        raise UiError(
            "invalid_input",
            f"window: expected 'all' or a duration such as 15m, 1h, 24h or 7d (a number and "
            f"s, m, h or d), got {raw[:40]!r}",
        )
    now = time.time()
    return raw, now - int(m[1]) * _UNIT[m[2]], now + 1.0


def window_select(current: str) -> str:
    options = list(WINDOWS) + ([current] if current not in WINDOWS else [])
    return "".join(
        f'<option value="{esc(w)}"{" selected" if w == current else ""}>'
        f"{esc('all of it' if w == 'all' else 'last ' + w)}</option>"
        for w in options
    )


def known_model(store: Any, name: str) -> dict[str, Any]:
    """The model's registry entry (``name``, ``aliases``...) or its log summary; 404 naming
    it when it is neither registered nor has logged predictions."""
    from keel import registry
    from keel.serve import logged_models

    for m in registry.list_models(store):
        if m["name"] == name:
            return {"name": name, "aliases": m["aliases"], "registered": True}
    for m in logged_models(store):
        if m["model"] == name:
            return {"name": name, "aliases": {}, "registered": False}
    raise NotFound(f"model {name[:200]!r} is not registered and has no logged predictions")


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def model_link(ref: str) -> str:
    name, _, version = ref.rpartition("/")
    if not name:
        return f"/models/{quote(ref, safe='')}"
    return f"/models/{quote(name, safe='')}?version={quote(version, safe='')}"


def _servers(store: Any) -> list[str]:
    """``keel.yaml``'s ``ui.servers``: the base URLs of servers other than loopback ones
    whose /metrics the dashboard may read."""
    settings = getattr(store, "settings", None) or {}
    ui = settings.get("ui") if isinstance(settings, dict) else None
    if ui is None:
        return []
    servers = ui.get("servers", []) if isinstance(ui, dict) else None
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise UiError(
            "invalid_input",
            "keel.yaml: ui.servers: expected a list of server URLs such as "
            f"http://10.0.0.5:8080, got {str(servers)[:80]!r}",
        )
    return list(servers)


def _server_param(request: Request) -> str | None:
    from keel.serve import check_server_url

    raw = (request.query.get("server") or "").strip()
    if not raw:
        return None
    return str(check_server_url(raw, _servers(request.app.store))["url"])


# -- lineage of one prediction ----------------------------------------------------------------


def _href(kind: str, ident: str) -> str | None:
    if kind == "run":
        return f"/runs/{quote(ident, safe='')}"
    if kind == "model":
        return model_link(ident)
    if kind == "pipeline":
        return f"/pipelines/{quote(ident, safe='')}"
    if kind == "step" and "/" in ident:
        return f"/pipelines/{quote(ident.split('/', 1)[0], safe='')}"
    return None


def lineage_tree(store: Any, kind: str, ident: str, max_depth: int = 8) -> dict[str, Any]:
    """``{"kind", "id", "label", "role", "href", "parents": [...]}``: everything
    ``(kind, ident)`` was made from, through :func:`keel.store.lineage`."""
    from keel.store import describe, lineage

    root = lineage(store, kind, ident, max_depth=max_depth)

    def convert(node: Any) -> dict[str, Any]:
        label = (
            f"prediction log segment {node.id[:12]}…"
            if node.kind == "predictions"
            else str(describe(store, node).get("label") or node.id)
        )
        return {
            "kind": node.kind,
            "id": node.id,
            "label": label,
            "role": node.role,
            "href": _href(node.kind, node.id),
            "parents": [convert(p) for p in node.parents],
        }

    return convert(root)


def _tree_html(node: dict[str, Any]) -> str:
    label = esc(node["label"])
    if node["href"]:
        label = f'<a href="{esc(node["href"])}">{label}</a>'
    role = f' <span class="role">{esc(node["role"])}</span>' if node["role"] else ""
    kids = "".join(_tree_html(p) for p in node["parents"])
    inner = f'<ul class="lineage-tree">{kids}</ul>' if kids else ""
    return (
        f'<li data-kind="{esc(node["kind"])}"><span class="kind">{esc(node["kind"])}</span> '
        f"{label}{role}{inner}</li>"
    )


def _found_html(found: list[dict[str, Any]], store: Any, request_id: str) -> str:
    if not found:
        return (
            f'<p class="notice" id="prediction-missing">No logged prediction has request id '
            f"<code>{esc(request_id)}</code>.</p>"
        )
    rows = []
    for f in found:
        ref = f"{f['model']}/{f['version']}"
        answer = f["label"] if f["label"] is not None else fmt(f["prediction"])
        rows.append(
            f'<tr><td><a href="{esc(model_link(ref))}">{esc(ref)}</a></td>'
            f'<td>{esc(when(f["ts"]))}</td><td class="num">{esc(f["row"])}</td>'
            f'<td>{esc(answer)}</td><td class="num">{esc(fmt(f["score"]))}</td>'
            f"<td>{esc(fmt(f['label_true']))}</td>"
            f'<td class="num">{esc(fmt(f["latency_ms"], 3))}</td></tr>'
        )
    first = found[0]
    trees = []
    for seg in dict.fromkeys(f["segment"] for f in found):
        tree = lineage_tree(store, "predictions", seg)
        trees.append(f'<ul class="lineage-tree root">{_tree_html(tree)}</ul>')
    inputs = json.dumps(first["inputs"], indent=1, ensure_ascii=False, default=str)
    outputs = "\n".join(
        f"{f['model']}/{f['version']}: {json.dumps(f['outputs'], ensure_ascii=False, default=str)}"
        for f in found
    )
    return f"""
<div id="prediction-found" data-request-id="{esc(request_id)}">
  <h3>Request <code>{esc(request_id)}</code></h3>
  <table class="kv" id="prediction-table"><thead><tr><th scope="col">version</th>
    <th scope="col">at</th><th scope="col">row</th><th scope="col">answer</th>
    <th scope="col">score</th><th scope="col">true label</th><th scope="col">ms</th>
  </tr></thead><tbody>{"".join(rows)}</tbody></table>
  <div class="cols2">
    <section><h4>Inputs</h4>
      <pre class="json" id="prediction-inputs" tabindex="0">{esc(inputs)}</pre></section>
    <section><h4>Outputs</h4>
      <pre class="json" id="prediction-outputs" tabindex="0">{esc(outputs)}</pre></section>
  </div>
  <h4>Lineage: this answer, back to its source</h4>
  <div id="prediction-lineage">{"".join(trees)}</div>
</div>"""


# -- the API ------------------------------------------------------------------------------


def _model(request: Request) -> str:
    name = request.params["model"]
    known_model(request.app.store, name)
    return name


def api_releases(request: Request) -> Response:
    """``GET /api/releases``: the models with logged predictions (:func:`keel.serve.
    logged_models`)."""
    from keel.serve import logged_models

    return json_response({"models": logged_models(request.app.store)})


def api_traffic(request: Request) -> Response:
    """``GET /api/releases/<model>/traffic?window=&buckets=``: :func:`keel.serve.traffic`."""
    from keel.serve import traffic

    name = _model(request)
    _, since, until = parse_window(request)
    buckets = query_int(request, "buckets", 30, 2, 200)
    return json_response(
        traffic(request.app.store, name, since=since, until=until, buckets=buckets)
    )


def api_compare(request: Request) -> Response:
    """``GET /api/releases/<model>/compare?window=``: :func:`keel.serve.comparison`."""
    from keel.serve import comparison

    name = _model(request)
    _, since, until = parse_window(request)
    return json_response(comparison(request.app.store, name, since=since, until=until))


def api_log(request: Request) -> Response:
    """``GET /api/releases/<model>/predictions?limit=``: the newest logged predictions."""
    name = _model(request)
    limit = query_int(request, "limit", LOG_ROWS, 1, 1000)
    return json_response({"model": name, "predictions": _newest(request.app.store, name, limit)})


def api_prediction(request: Request) -> Response:
    """``GET /api/releases/<model>/predictions/<request_id>``: the logged answers to that
    request (:func:`keel.serve.find_predictions`) and the lineage of each segment."""
    from keel.serve import find_predictions
    from keel.serve._traffic import check_request_id

    name = _model(request)
    rid = request.params["request_id"]
    _check_rid(rid, check_request_id)
    found = find_predictions(request.app.store, rid, model=name)
    if not found:
        raise NotFound(f"no logged prediction of {name!r} has request id {rid!r}")
    segments = dict.fromkeys(f["segment"] for f in found)
    lineage = {s: lineage_tree(request.app.store, "predictions", s) for s in segments}
    return json_response({"request_id": rid, "predictions": found, "lineage": lineage})


def _check_rid(rid: str, check: Any) -> None:
    try:
        check(rid)
    except Exception as exc:
        raise UiError("invalid_input", str(exc)) from None


def api_server(request: Request) -> Response:
    """``GET /api/releases/<model>/server?server=URL``: that server's ``/metrics`` for the
    model (:func:`keel.serve.server_metrics`; only loopback or ``ui.servers`` URLs)."""
    from keel.serve import server_metrics

    name = _model(request)
    url = _server_param(request)
    if url is None:
        raise UiError("invalid_input", "server: give the running server's URL, e.g. "
                      "http://127.0.0.1:8080")  # fmt: skip
    return json_response(server_metrics(url, model=name, allow=_servers(request.app.store)))


def _newest(store: Any, name: str, limit: int) -> list[dict[str, Any]]:
    from keel.serve import read_predictions

    table = read_predictions(store, name, limit=limit)
    cols = ["request_id", "ts", "version", "latency_ms", "label", "score", "prediction"]
    rows = table.select(cols).to_pylist()
    return list(reversed(rows))


# -- the pages ------------------------------------------------------------------------------


def releases_index(request: Request) -> Response:
    from keel import registry
    from keel.serve import find_predictions, logged_models
    from keel.serve._traffic import check_request_id

    store = request.app.store
    rid = (request.query.get("request_id") or "").strip()
    found_html = ""
    if rid:
        _check_rid(rid, check_request_id)
        found_html = _found_html(find_predictions(store, rid), store, rid)
    aliases = {m["name"]: m["aliases"] for m in registry.list_models(store)}
    rows = "".join(
        f'<tr><th scope="row"><a href="/releases/{esc(quote(m["model"], safe=""))}">'
        f"{esc(m['model'])}</a></th>"
        f"<td>{esc(', '.join(f'{a} → {v}' for a, v in aliases.get(m['model'], {}).items()))}</td>"
        f"<td>{esc(', '.join(map(str, m['versions'])))}</td>"
        f'<td class="num">{esc(fmt(m["rows"]))}</td><td>{esc(when(m["first_ts"]))}</td>'
        f"<td>{esc(when(m['last_ts']))}</td></tr>"
        for m in logged_models(store)
    )
    table = (
        '<table class="kv" id="releases-table"><thead><tr><th scope="col">model</th>'
        '<th scope="col">aliases</th><th scope="col">versions logged</th>'
        '<th scope="col">predictions</th><th scope="col">first</th><th scope="col">last</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="muted" id="releases-empty">No predictions logged yet: serve a model '
        "(<code>keel serve NAME</code>) and its answers are logged here.</p>"
    )
    body = f"""
<section class="ops-page" id="releases">
  <h1>Releases</h1>
  <form class="ops-controls" method="get" action="/releases" role="search" id="request-search">
    <label>Find a prediction by request id
      <input type="text" name="request_id" value="{esc(rid)}" autocomplete="off"
        placeholder="e.g. 4f1c9a0b2d3e4f50"></label>
    <button type="submit">Find</button>
  </form>
  {found_html}
  <h2>Served models</h2>
  {table}
</section>"""
    return html_response(page(request.app, "Releases", body, active="/releases",
                              styles=("ops.css",)))  # fmt: skip


def _traffic_table(tr: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr data-version="{esc(v)}"><th scope="row">{esc(v)}</th>'
        f"<td>{esc(', '.join(s['aliases']))}</td>"
        f'<td class="num">{esc(fmt(s["total"]["requests"]))}</td>'
        f'<td class="num">{esc(fmt(s["total"]["rows"]))}</td>'
        f'<td class="num">{esc(fmt(s["total"]["p50_ms"], 3))}</td>'
        f'<td class="num">{esc(fmt(s["total"]["p99_ms"], 3))}</td>'
        f"<td>{esc(when(s['total']['first_ts']))}</td><td>{esc(when(s['total']['last_ts']))}</td>"
        "</tr>"
        for v, s in tr["versions"].items()
    )
    if not rows:
        return '<p class="muted" id="traffic-empty">No logged predictions in this window.</p>'
    return (
        '<table class="kv" id="traffic-table"><thead><tr><th scope="col">version</th>'
        '<th scope="col">aliases now</th><th scope="col">requests</th><th scope="col">rows</th>'
        '<th scope="col">p50 ms</th><th scope="col">p99 ms</th><th scope="col">first</th>'
        f'<th scope="col">last</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _compare_html(cmp: dict[str, Any]) -> str:
    versions = cmp["versions"]
    if not versions:
        return '<p class="muted" id="compare-empty">No versions served in this window.</p>'
    metrics = sorted({m for v in versions.values() for m in v["metrics"]})
    head = "".join(f'<th scope="col">{esc(m)}</th>' for m in metrics)
    rows = []
    for v, r in versions.items():
        cells = "".join(f'<td class="num">{esc(fmt(r["metrics"].get(m)))}</td>' for m in metrics)
        lat = r["latency_ms"]
        rows.append(
            f'<tr data-version="{esc(v)}"><th scope="row">{esc(v)}</th>'
            f"<td>{esc(', '.join(r['aliases']))}</td>"
            f'<td class="num">{esc(fmt(r["requests"]))}</td>'
            f'<td class="num">{esc(fmt(r["rows"]))}</td>'
            f'<td class="num">{esc(fmt(lat["p50"], 3))}</td>'
            f'<td class="num">{esc(fmt(lat["p95"], 3))}</td>'
            f'<td class="num">{esc(fmt(lat["p99"], 3))}</td>'
            f'<td class="num">{esc(fmt(r["labeled"]))}</td>{cells}</tr>'
        )
    notes = "".join(
        f"<li>version {esc(v)}: no {esc(metric)}: {esc(why)}</li>"
        for v, r in versions.items()
        for metric, why in (r.get("missing_metrics") or {}).items()
    )
    notes_html = f'<ul class="notes" id="compare-notes">{notes}</ul>' if notes else ""

    def named(v: str) -> str:
        aliases = versions.get(v, {}).get("aliases") or []
        return f"{v} ({', '.join(aliases)})" if aliases else v

    pairs = "".join(
        f'<tr><th scope="row">{esc(named(k.split(":")[0]))} vs {esc(named(k.split(":")[1]))}</th>'
        f'<td class="num">{esc(fmt(p["rows"]))}</td><td class="num">{esc(fmt(p["agree"]))}</td>'
        f'<td class="num">{esc(fmt(p["agreement"]))}</td>'
        f'<td class="num">{esc(fmt(p.get("mean_abs_diff")))}</td></tr>'
        for k, p in cmp["pairs"].items()
    )
    pairs_html = (
        "<h3>Agreement on the same requests (shadow and live, or replayed)</h3>"
        '<table class="kv" id="pairs-table"><thead><tr><th scope="col">versions</th>'
        '<th scope="col">rows</th><th scope="col">agree</th><th scope="col">agreement</th>'
        f'<th scope="col">mean |diff|</th></tr></thead><tbody>{pairs}</tbody></table>'
        if pairs
        else '<p class="muted" id="pairs-empty">No request was answered by two versions '
        "(no shadow in this window).</p>"
    )
    return (
        '<table class="kv" id="compare-table"><thead><tr><th scope="col">version</th>'
        '<th scope="col">aliases now</th><th scope="col">requests</th><th scope="col">rows</th>'
        '<th scope="col">p50 ms</th><th scope="col">p95 ms</th><th scope="col">p99 ms</th>'
        f'<th scope="col">labelled</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f"{notes_html}{pairs_html}"
    )


def _log_html(newest: list[dict[str, Any]], name: str, keep: dict[str, str]) -> str:
    if not newest:
        return '<p class="muted" id="log-empty">No logged predictions yet.</p>'
    rows = []
    for p in newest:
        href = f"/releases/{quote(name, safe='')}?" + urlencode(
            {**keep, "request_id": p["request_id"]}
        )
        answer = p["label"] if p["label"] is not None else fmt(p["prediction"])
        rows.append(
            f'<tr><td><a href="{esc(href)}"><code>{esc(p["request_id"])}</code></a></td>'
            f'<td>{esc(when(p["ts"]))}</td><td class="num">{esc(p["version"])}</td>'
            f'<td>{esc(answer)}</td><td class="num">{esc(fmt(p["score"]))}</td>'
            f'<td class="num">{esc(fmt(p["latency_ms"], 3))}</td></tr>'
        )
    return (
        f'<table class="kv" id="log-table"><caption>the newest {len(newest)}</caption><thead><tr>'
        '<th scope="col">request id</th><th scope="col">at</th><th scope="col">version</th>'
        '<th scope="col">answer</th><th scope="col">score</th><th scope="col">ms</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def release_view(request: Request) -> Response:
    from keel.serve import comparison, find_predictions, server_metrics, traffic
    from keel.serve._traffic import check_request_id

    store = request.app.store
    name = request.params["model"]
    info = known_model(store, name)
    window, since, until = parse_window(request)
    buckets = query_int(request, "buckets", 30, 2, 200)
    server = _server_param(request)
    rid = (request.query.get("request_id") or "").strip()
    if rid:
        _check_rid(rid, check_request_id)
    tr = traffic(store, name, since=since, until=until, buckets=buckets)
    cmp = comparison(store, name, since=since, until=until)
    live = server_metrics(server, model=name, allow=_servers(store)) if server else None
    keep = {"window": window, **({"server": server} if server else {})}
    found_html = _found_html(find_predictions(store, rid, model=name), store, rid) if rid else ""
    aliases = ", ".join(f"{a} → {v}" for a, v in info["aliases"].items())
    server_html = ""
    if server:
        server_html = f"""
  <section id="server-section" data-server="{esc(server)}">
    <h2>Live from <code>{esc(server)}</code></h2>
    <p class="muted">Counted by the server since it started (its <code>/metrics</code>); the
      rate is measured between reads, every 5 s while this page is open.</p>
    <p class="filter-error" id="server-error" hidden></p>
    <div id="server-live"></div>
  </section>"""
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in keep.items()
    )
    body = f"""
<article class="ops-page" id="release" data-model="{esc(name)}">
  <h1>Releases · <span class="model-name">{esc(name)}</span></h1>
  <p class="muted" id="aliases">{esc("aliases now: " + aliases if aliases else "no aliases")}</p>
  <form class="ops-controls" method="get" action="/releases/{esc(quote(name, safe=""))}"
    id="release-form">
    <label>Window <select name="window" id="window">{window_select(window)}</select></label>
    <label class="grow">Running server (loopback, or ui.servers in keel.yaml)
      <input type="text" name="server" id="server" value="{esc(server or "")}"
        placeholder="http://127.0.0.1:8080" autocomplete="off"></label>
    <button type="submit">Show</button>
  </form>
  <section id="traffic-section">
    <h2>Traffic by version (from the prediction log)</h2>
    <p class="muted">Error answers are not logged; a running server's counters show them.</p>
    {_traffic_table(tr)}
    <div id="traffic-charts" class="curves"></div>
  </section>
  {server_html}
  <section id="compare-section">
    <h2>Canary, production and shadow</h2>
    {_compare_html(cmp)}
  </section>
  <section id="log-section">
    <h2>Prediction log</h2>
    <form class="ops-controls" method="get" role="search" id="request-search"
      action="/releases/{esc(quote(name, safe=""))}">{hidden}
      <label>Request id <input type="text" name="request_id" id="request-id"
        value="{esc(rid)}" autocomplete="off"></label>
      <button type="submit">Find</button>
    </form>
    {found_html}
    {_log_html(_newest(store, name, LOG_ROWS), name, keep)}
  </section>
</article>"""
    data = {"model": name, "traffic": tr, "server": server, "live": live, "poll_s": 5}
    return html_response(
        page(
            request.app,
            f"Releases · {name}",
            body,
            active="/releases",
            scripts=("vendor/uPlot.iife.min.js", "ops.js", "releases.js"),
            styles=("vendor/uPlot.min.css", "ops.css"),
            data=data,
        )
    )


ROUTES = (
    Route("GET", "/releases", releases_index),
    Route("GET", "/releases/{model}", release_view),
    Route("GET", "/api/releases", api_releases),
    Route("GET", "/api/releases/{model}/traffic", api_traffic),
    Route("GET", "/api/releases/{model}/compare", api_compare),
    Route("GET", "/api/releases/{model}/predictions", api_log),
    Route("GET", "/api/releases/{model}/predictions/{request_id}", api_prediction),
    Route("GET", "/api/releases/{model}/server", api_server),
)
