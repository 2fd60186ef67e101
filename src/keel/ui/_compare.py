"""The Compare page (``/compare?runs=a,b,c&metric=M``): 2 to 100 runs side by side —
parallel coordinates of their params against a chosen metric, their curves of one metric
overlaid, and a table of params with the differing ones marked."""

from __future__ import annotations

from typing import Any

from keel.ui._app import Route
from keel.ui._http import Request, Response, UiError, esc, html_response, json_response
from keel.ui._layout import page
from keel.ui._records import histories, resolve_run, run_records

__all__ = ["MAX_RUNS", "ROUTES", "comparison"]

MAX_RUNS = 100


def _ids(request: Request) -> list[str]:
    raw = request.query.get("runs") or ""
    ids = list(dict.fromkeys(i.strip() for i in raw.split(",") if i.strip()))
    if len(ids) > MAX_RUNS:
        raise UiError(
            "invalid_input", f"runs: compare at most {MAX_RUNS} runs at once, got {len(ids)}"
        )
    return ids


def comparison(store: Any, ids: list[str]) -> dict[str, Any]:
    """``{"runs": [{id, name, experiment, status, params, metrics}], "param_keys",
    "metric_keys", "differing": [param keys whose values are not all equal]}``."""
    with store.read() as conn:
        full = [resolve_run(conn, i) for i in ids]
        runs = run_records(conn, list(dict.fromkeys(full)))
    pkeys = sorted({k for r in runs for k in r["params"]})
    mkeys = sorted({k for r in runs for k in r["metrics"]})
    _missing = object()
    differing = [k for k in pkeys if len({repr(r["params"].get(k, _missing)) for r in runs}) > 1]
    slim = [
        {k: r[k] for k in ("id", "name", "experiment", "status", "params", "metrics")} for r in runs
    ]
    return {"runs": slim, "param_keys": pkeys, "metric_keys": mkeys, "differing": differing}


def api_compare(request: Request) -> Response:
    """``GET /api/compare?runs=a,b``: see :func:`comparison`."""
    ids = _ids(request)
    if len(ids) < 2:
        raise UiError("invalid_input", "runs: give 2 to 100 run ids, separated by commas")
    return json_response(comparison(request.app.store, ids))


def api_curves(request: Request) -> Response:
    """``GET /api/compare/curves?runs=a,b&key=M``: ``{"key", "runs": [{"id", "steps",
    "values"}]}`` (runs without the metric left out)."""
    ids = _ids(request)
    key = request.query.get("key") or ""
    if not key:
        raise UiError("invalid_input", "key: name the metric whose curves to overlay")
    store = request.app.store
    with store.read() as conn:
        full = list(dict.fromkeys(resolve_run(conn, i) for i in ids))
        found = histories(conn, full, [key])
    runs = [{"id": rid, **found[rid][key]} for rid in full if key in found[rid]]
    return json_response({"key": key, "runs": runs})


def compare_view(request: Request) -> Response:
    ids = _ids(request)
    if len(ids) < 2:
        body = (
            '<section class="compare-page"><h1>Compare runs</h1>'
            '<p id="compare-help">Pick 2 to 100 runs in the <a href="/runs">runs table</a> '
            "(tick their boxes, then <em>Compare selected</em>), or give their ids: "
            "<code>/compare?runs=ID1,ID2</code>.</p></section>"
        )
        return html_response(page(request.app, "Compare", body, active="/compare"))
    data = comparison(request.app.store, ids)
    metric = request.query.get("metric") or ""
    if metric not in data["metric_keys"]:
        metric = _common_metric(data)
    names = {r["id"]: r["name"] or r["id"][:12] for r in data["runs"]}
    head = "".join(
        f'<th scope="col" data-run-id="{esc(r["id"])}">'
        f'<a href="/runs/{esc(r["id"])}">{esc(names[r["id"]])}</a></th>'
        for r in data["runs"]
    )
    differing = set(data["differing"])
    rows = []
    for k in data["param_keys"]:
        cells = "".join(f"<td>{esc(_fmt(r['params'].get(k)))}</td>" for r in data["runs"])
        cls = ' class="differs"' if k in differing else ""
        rows.append(f'<tr{cls}><th scope="row">{esc(k)}</th>{cells}</tr>')
    options = "".join(
        f'<option value="{esc(k)}"{" selected" if k == metric else ""}>{esc(k)}</option>'
        for k in data["metric_keys"]
    )
    body = f"""
<section class="compare-page">
  <h1>Compare {len(data["runs"])} runs</h1>
  <form class="compare-controls" method="get" action="/compare" id="compare-form">
    <input type="hidden" name="runs" value="{esc(",".join(r["id"] for r in data["runs"]))}">
    <label>Metric <select name="metric" id="metric">{options}</select></label>
    <label><input type="checkbox" id="only-differing" checked> only differing params</label>
    <button type="submit">Show</button>
  </form>
  <h2>Parameters against <span id="metric-name">{esc(metric)}</span></h2>
  <p class="muted" id="parallel-note"></p>
  <div id="parallel" class="parallel" tabindex="0" role="region"
    aria-label="parallel coordinates"></div>
  <h2>Curves</h2>
  <div id="compare-curves" class="curves"></div>
  <h2>Parameters</h2>
  <div class="table-scroll" tabindex="0" role="region" aria-label="parameters of each run">
  <table class="diff" id="diff-table">
    <thead><tr><th scope="col">param</th>{head}</tr></thead>
    <tbody>{"".join(rows)}</tbody></table></div>
</section>"""
    return html_response(
        page(
            request.app,
            "Compare",
            body,
            active="/compare",
            scripts=("vendor/uPlot.iife.min.js", "charts.js", "compare.js"),
            styles=("vendor/uPlot.min.css",),
            data={**data, "metric": metric},
        )
    )


def _common_metric(data: dict[str, Any]) -> str:
    """The metric most of the runs have (the first by name among equals)."""
    if not data["metric_keys"]:
        return ""
    have = {k: sum(k in r["metrics"] for r in data["runs"]) for k in data["metric_keys"]}
    return sorted(data["metric_keys"], key=lambda k: (-have[k], k))[0]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    from keel.serve._http import dumps

    return dumps(value).decode()


ROUTES = (
    Route("GET", "/compare", compare_view),
    Route("GET", "/api/compare", api_compare),
    Route("GET", "/api/compare/curves", api_curves),
)
