"""The Monitoring page (``/monitoring``, ``/monitoring/<model>``): a served model's traffic
cut into time windows — drift per feature (a heat map), performance once labels arrive,
fairness over time — then the monitoring passes recorded and the alerts that fired, with
each notifier's delivery (a webhook's failure and its attempts included) and the pipeline
an alert started.

The windows are computed from the prediction log on each view by
:func:`keel.monitor.timeline` (read-only: nothing is recorded and no alert fires); the
passes and alerts are what ``keel monitor run``/``watch`` recorded
(:func:`keel.monitor.monitor_passes`, :func:`keel.monitor.alert_history`).

Query parameters: ``window`` (``all`` or the last ``1h``, ``24h``, ``7d``...), ``windows``
(1 to 48: how many windows to cut it into), ``min_labels`` (labelled rows a window needs
for performance and fairness); a malformed one is answered 400 naming it, an unknown model
404 naming it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from keel.ui._app import Route
from keel.ui._http import Request, Response, esc, html_response, json_response, query_int
from keel.ui._layout import page
from keel.ui._releases import fmt, known_model, model_link, parse_window, window_select
from keel.ui._run import when

__all__ = ["ROUTES"]

#: Disparities drawn over time (the audit's names); others stay in the API.
DISPARITIES = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "disparate_impact_ratio",
)


def _params(request: Request) -> dict[str, Any]:
    window, since, until = parse_window(request)
    return {
        "window": window,
        "since": since,
        "until": until,
        "windows": query_int(request, "windows", 12, 1, 48),
        "min_labels": query_int(request, "min_labels", 100, 1, 10_000_000),
    }


def _timeline(request: Request, name: str, p: dict[str, Any]) -> dict[str, Any]:
    from keel.monitor import timeline

    return timeline(
        request.app.store,
        name,
        since=p["since"],
        until=p["until"],
        windows=p["windows"],
        min_labels=p["min_labels"],
    )


# -- the API ------------------------------------------------------------------------------


def api_monitoring(request: Request) -> Response:
    """``GET /api/monitoring``: each model with logged predictions, its alert count and its
    latest recorded pass."""
    return json_response({"models": _overview(request.app.store)})


def api_timeline(request: Request) -> Response:
    """``GET /api/monitoring/<model>/timeline?window=&windows=&min_labels=``: see
    :func:`keel.monitor.timeline`."""
    name = request.params["model"]
    known_model(request.app.store, name)
    return json_response(_timeline(request, name, _params(request)))


def api_alerts(request: Request) -> Response:
    """``GET /api/monitoring/<model>/alerts?limit=``: :func:`keel.monitor.alert_history`."""
    from keel.monitor import alert_history

    name = request.params["model"]
    known_model(request.app.store, name)
    limit = query_int(request, "limit", 200, 1, 10_000)
    return json_response(
        {"model": name, "alerts": alert_history(request.app.store, name, limit=limit)}
    )


def api_passes(request: Request) -> Response:
    """``GET /api/monitoring/<model>/passes?limit=``: :func:`keel.monitor.monitor_passes`."""
    from keel.monitor import monitor_passes

    name = request.params["model"]
    known_model(request.app.store, name)
    limit = query_int(request, "limit", 100, 1, 10_000)
    return json_response(
        {"model": name, "passes": monitor_passes(request.app.store, name, limit=limit)}
    )


def _overview(store: Any) -> list[dict[str, Any]]:
    from keel.monitor import alert_history, monitor_passes
    from keel.serve import logged_models

    alerts = alert_history(store, limit=10_000)
    out = []
    for m in logged_models(store):
        mine = [a for a in alerts if a.get("model") == m["model"]]
        passes = monitor_passes(store, m["model"], limit=1)
        last = passes[0] if passes else None
        failed = sum(1 for a in mine for d in a["deliveries"] if not d["ok"])
        out.append(
            {
                "model": m["model"],
                "rows": m["rows"],
                "last_ts": m["last_ts"],
                "alerts": len(mine),
                "last_alert": mine[0] if mine else None,
                "failed_deliveries": failed,
                "last_pass": last,
            }
        )
    return out


# -- the pages ------------------------------------------------------------------------------


def monitoring_index(request: Request) -> Response:
    rows = []
    for m in _overview(request.app.store):
        last = m["last_pass"]
        share = (last or {}).get("values", {}).get("drift.share") if last else None
        alert = m["last_alert"]
        rows.append(
            f'<tr><th scope="row"><a href="/monitoring/{esc(quote(m["model"], safe=""))}">'
            f'{esc(m["model"])}</a></th><td class="num">{esc(fmt(m["rows"]))}</td>'
            f"<td>{esc(when(m['last_ts']))}</td>"
            f"<td>{esc(when(last['at']) if last else 'never')}</td>"
            f'<td class="num">{esc(fmt(share))}</td><td class="num">{esc(fmt(m["alerts"]))}</td>'
            f"<td>{esc(alert['message'] if alert else '')}</td>"
            f'<td class="num{" bad" if m["failed_deliveries"] else ""}">'
            f"{esc(fmt(m['failed_deliveries']))}</td></tr>"
        )
    table = (
        '<table class="kv" id="monitoring-table"><thead><tr><th scope="col">model</th>'
        '<th scope="col">predictions</th><th scope="col">last prediction</th>'
        '<th scope="col">last pass</th><th scope="col">drift share then</th>'
        '<th scope="col">alerts</th><th scope="col">latest alert</th>'
        f'<th scope="col">failed deliveries</th></tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
        if rows
        else '<p class="muted" id="monitoring-empty">No predictions logged yet: serve a model '
        "and its traffic is watched here.</p>"
    )
    body = f'<section class="ops-page" id="monitoring"><h1>Monitoring</h1>{table}</section>'
    return html_response(
        page(request.app, "Monitoring", body, active="/monitoring", styles=("ops.css",))
    )


def _window_label(w: dict[str, Any]) -> str:
    return when(w["since"])


def _drift_table(tl: dict[str, Any]) -> str:
    wins = tl["windows"]
    head = "".join(f'<th scope="col">{esc(_window_label(w))}</th>' for w in wins)
    rows = []
    for f in tl["features"]:
        cells = []
        for w in wins:
            d = (w.get("drift") or {}).get("features", {}).get(f)
            if not d:
                cells.append('<td class="muted">—</td>')
                continue
            mark = " drift" if d["drift"] else ""
            cells.append(
                f'<td class="num{" bad" if d["drift"] else ""}" title="{esc(d["test"])} '
                f'p={esc(fmt(d["p_value"]))}">{esc(fmt(d["statistic"], 3))}{esc(mark)}</td>'
            )
        rows.append(f'<tr><th scope="row">{esc(f)}</th>{"".join(cells)}</tr>')
    share = "".join(
        f'<td class="num">{esc(fmt((w.get("drift") or {}).get("share"), 3))}</td>' for w in wins
    )
    return (
        '<details id="drift-details"><summary>The same as a table (statistic per feature and '
        'window; "drift" where its test flags it)</summary><div class="table-scroll">'
        f'<table class="kv" id="drift-table"><thead><tr><th scope="col">feature</th>{head}'
        f'</tr></thead><tbody>{"".join(rows)}<tr><th scope="row">share drifted</th>{share}</tr>'
        "</tbody></table></div></details>"
    )


def _perf_table(tl: dict[str, Any]) -> str:
    wins = [w for w in tl["windows"] if w["rows"]]
    names = sorted(
        {k for w in wins for k, v in (w.get("performance") or {}).items() if isinstance(v, dict)}
    )
    head = "".join(f'<th scope="col">{esc(n)}</th>' for n in names)
    rows = []
    for w in wins:
        perf = w.get("performance") or {}
        status = perf.get("status", "")
        if status == "too_few_labels":
            status = f"too few labels ({perf.get('labeled')} of {perf.get('needed')})"
        cells = "".join(
            f'<td class="num">{esc(fmt((perf.get(n) or {}).get("value")))}</td>' for n in names
        )
        rows.append(
            f'<tr><th scope="row">{esc(_window_label(w))}</th>'
            f'<td class="num">{esc(fmt(w["rows"]))}</td>'
            f'<td class="num">{esc(fmt(w.get("labeled")))}</td><td>{esc(status)}</td>{cells}</tr>'
        )
    if not rows:
        return '<p class="muted">No traffic in this window.</p>'
    return (
        '<div class="table-scroll"><table class="kv" id="performance-table"><thead><tr>'
        '<th scope="col">window from</th><th scope="col">rows</th><th scope="col">labelled</th>'
        f'<th scope="col">status</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        "</div>"
    )


def _fair_table(tl: dict[str, Any]) -> str:
    if not tl["sensitive"]:
        return (
            '<p class="muted" id="fairness-none">No sensitive columns: name them in keel.yaml '
            "(<code>audit: {sensitive: [sex]}</code>) to watch fairness over time.</p>"
        )
    wins = [w for w in tl["windows"] if w["rows"]]
    cols = [(c, d) for c in tl["sensitive"] for d in DISPARITIES]
    head = "".join(f'<th scope="col">{esc(c)}: {esc(d.replace("_", " "))}</th>' for c, d in cols)
    rows = []
    for w in wins:
        fair = w.get("fairness") or {}
        if fair.get("status") != "ok":
            note = f"{fair.get('status', '')} ({fair.get('labeled')} labelled)"
            cells = f'<td colspan="{len(cols)}" class="muted">{esc(note)}</td>'
        else:
            cells = "".join(
                f'<td class="num">{esc(fmt(((fair.get(c) or {}).get(d) or {}).get("value")))}</td>'
                for c, d in cols
            )
        rows.append(f'<tr><th scope="row">{esc(_window_label(w))}</th>{cells}</tr>')
    return (
        '<div class="table-scroll"><table class="kv" id="fairness-table"><thead><tr>'
        f'<th scope="col">window from</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></div>"
    )


def _passes_table(passes: list[dict[str, Any]]) -> str:
    if not passes:
        return (
            '<p class="muted" id="passes-empty">No monitoring pass recorded yet '
            "(<code>keel monitor run MODEL</code> or <code>keel monitor watch</code>).</p>"
        )
    keys = ("performance.roc_auc", "performance.accuracy", "performance.r2", "performance.mae")
    rows = []
    for p in passes:
        v, w = p["values"], p["window"] or {}
        metric = next(((k.split(".", 1)[1], v[k]) for k in keys if k in v), None)
        rows.append(
            f"<tr><td>{esc(when(p['at']))}</td><td>{esc(p['served'] or '')}</td>"
            f'<td class="num">{esc(fmt(w.get("rows")))}</td>'
            f'<td class="num">{esc(fmt(w.get("labeled")))}</td>'
            f"<td>{esc(when(w.get('ts_min')))} – {esc(when(w.get('ts_max')))}</td>"
            f'<td class="num">{esc(fmt(v.get("drift.share"), 3))}</td>'
            f"<td>{esc(f'{metric[0]} {fmt(metric[1])}' if metric else '—')}</td></tr>"
        )
    return (
        '<table class="kv" id="passes-table"><thead><tr><th scope="col">at</th>'
        '<th scope="col">served</th><th scope="col">rows</th><th scope="col">labelled</th>'
        '<th scope="col">traffic from – to</th><th scope="col">drift share</th>'
        f'<th scope="col">performance</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _alerts_table(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return '<p class="muted" id="alerts-empty">No alert has fired.</p>'
    rows = []
    for a in alerts:
        deliveries = "".join(
            f'<li class="{"ok" if d["ok"] else "bad"}" data-notifier="{esc(d["notifier"])}">'
            f"{esc(d['notifier'])}: "
            + (
                "delivered"
                if d["ok"]
                else f"failed after {esc(d.get('attempts') or 1)} attempt(s): {esc(d['error'])}"
            )
            + "</li>"
            for d in a["deliveries"]
        )
        started = "".join(
            f'<li><a href="/pipelines/{esc(quote(str(t["run"]), safe=""))}">'
            f"{esc(t['pipeline'])}</a> ({esc(t['status'])})</li>"
            for t in a["triggered"]
            if t.get("run")
        )
        rows.append(
            f'<tr class="severity-{esc(a.get("severity"))}"><td>{esc(when(a.get("at")))}</td>'
            f"<td>{esc(a.get('rule'))}</td><td>{esc(a.get('severity'))}</td>"
            f"<td><code>{esc(a.get('condition'))}</code></td>"
            f'<td class="num">{esc(fmt(a.get("value")))}</td>'
            f"<td><code>{esc(a.get('window'))}</code></td>"
            f'<td><ul class="deliveries">{deliveries}</ul></td>'
            f"<td>{f'<ul>{started}</ul>' if started else ''}</td></tr>"
        )
    return (
        '<div class="table-scroll"><table class="kv" id="alerts-table"><thead><tr>'
        '<th scope="col">fired</th><th scope="col">rule</th><th scope="col">severity</th>'
        '<th scope="col">condition</th><th scope="col">value</th><th scope="col">window</th>'
        '<th scope="col">deliveries</th><th scope="col">pipeline started</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def monitoring_view(request: Request) -> Response:
    from keel.monitor import alert_history, monitor_passes

    store = request.app.store
    name = request.params["model"]
    known_model(store, name)
    p = _params(request)
    tl = _timeline(request, name, p)
    alerts = alert_history(store, name)
    passes = monitor_passes(store, name, limit=50)
    q = quote(name, safe="")
    if tl["served"]:
        about = (
            f'Against the training data of <a href="{esc(model_link(tl["served"]))}">'
            f"{esc(tl['served'])}</a>; {len(tl['windows'])} windows of "
            f"{esc(when(tl['since']))} – {esc(when(tl['until']))}."
        )
    else:
        about = "No logged predictions in this window."
    body = f"""
<article class="ops-page" id="monitor" data-model="{esc(name)}">
  <h1>Monitoring · <span class="model-name">{esc(name)}</span></h1>
  <p class="muted" id="monitor-about">{about}
    <a href="/releases/{esc(q)}">Its traffic and releases</a>.</p>
  <form class="ops-controls" method="get" action="/monitoring/{esc(q)}" id="monitor-form">
    <label>Window <select name="window" id="window">{window_select(p["window"])}</select></label>
    <label>Cut into <input type="text" inputmode="numeric" name="windows" id="windows"
      value="{esc(p["windows"])}" size="3"></label>
    <label>Labels a window needs <input type="text" inputmode="numeric" name="min_labels"
      id="min-labels" value="{esc(p["min_labels"])}" size="6"></label>
    <button type="submit">Show</button>
  </form>
  <section id="drift-section">
    <h2>Drift per feature</h2>
    <div id="drift-heatmap" class="svg-chart"></div>
    <div id="drift-share" class="curves"></div>
    {_drift_table(tl) if tl["features"] else ""}
  </section>
  <section id="performance-section">
    <h2>Performance once labels arrive</h2>
    <div id="performance-charts" class="curves"></div>
    {_perf_table(tl)}
  </section>
  <section id="fairness-section">
    <h2>Fairness over time</h2>
    <div id="fairness-charts" class="curves"></div>
    {_fair_table(tl)}
  </section>
  <section id="alerts-section">
    <h2>Alerts that fired</h2>
    {_alerts_table(alerts)}
  </section>
  <section id="passes-section">
    <h2>Monitoring passes recorded</h2>
    {_passes_table(passes)}
  </section>
</article>"""
    return html_response(
        page(
            request.app,
            f"Monitoring · {name}",
            body,
            active="/monitoring",
            scripts=("vendor/uPlot.iife.min.js", "ops.js", "monitoring.js"),
            styles=("vendor/uPlot.min.css", "ops.css"),
            data={"model": name, "timeline": tl, "disparities": list(DISPARITIES)},
        )
    )


ROUTES = (
    Route("GET", "/monitoring", monitoring_index),
    Route("GET", "/monitoring/{model}", monitoring_view),
    Route("GET", "/api/monitoring", api_monitoring),
    Route("GET", "/api/monitoring/{model}/timeline", api_timeline),
    Route("GET", "/api/monitoring/{model}/alerts", api_alerts),
    Route("GET", "/api/monitoring/{model}/passes", api_passes),
)
