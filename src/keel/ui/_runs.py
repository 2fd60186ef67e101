"""The Runs page (``/runs``) and its API: one page of runs at a time, filtered, sorted and
with the columns chosen, all in the URL (``?experiment=&filter=&sort=&cols=``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from keel.store import _tables
from keel.ui._app import Route
from keel.ui._filter import FilterError
from keel.ui._http import Request, Response, esc, html_response, json_response, query_int
from keel.ui._layout import page
from keel.ui._query import MAX_LIMIT, RunsQuery, column_keys, runs_page

__all__ = ["ROUTES", "query_of"]

_FIRST_PAGE = 100


def query_of(request: Request, limit: int = 50) -> RunsQuery:
    """The runs query a request's parameters ask for (400 naming a bad one)."""
    q = request.query
    cols = (q.get("cols") or "").strip()
    return RunsQuery(
        experiment=q.get("experiment") or None,
        filter=q.get("filter") or None,
        sort=q.get("sort") or "-created_at",
        cols=(cols,) if cols else (),
        offset=query_int(request, "offset", 0, 0, 10**9),
        limit=query_int(request, "limit", limit, 1, MAX_LIMIT),
    )


def api_runs(request: Request) -> Response:
    """``GET /api/runs``: ``{"total", "offset", "limit", "sort", "columns": [{"name",
    "kind", "key"}], "rows": [{"id", "name", "cells": [...]}]}``."""
    request.app.mark_dead_runs()
    return json_response(runs_page(request.app.store, query_of(request)))


def api_columns(request: Request) -> Response:
    """``GET /api/columns?experiment=``: ``{"attributes", "metrics", "params", "tags"}``."""
    return json_response(column_keys(request.app.store, request.query.get("experiment") or None))


def experiments(store: Any) -> list[dict[str, Any]]:
    t = _tables.runs
    with store.read() as conn:
        rows = conn.execute(
            select(t.c.experiment, func.count()).group_by(t.c.experiment).order_by(t.c.experiment)
        ).all()
    return [{"name": name, "runs": n} for name, n in rows]


def api_experiments(request: Request) -> Response:
    """``GET /api/experiments``: ``[{"name", "runs"}]``."""
    return json_response({"experiments": experiments(request.app.store)})


def runs_view(request: Request) -> Response:
    """The page renders at once with its first rows (in the page's JSON block), so the
    table shows without waiting for another request; a bad filter, sort or column shows
    inline above the table."""
    request.app.mark_dead_runs()
    q = query_of(request, limit=_FIRST_PAGE)
    exps = experiments(request.app.store)
    error = None
    try:
        first = runs_page(request.app.store, q)
    except FilterError as exc:
        error = {"message": str(exc), "position": exc.position, "token": exc.token}
        first = None
    state = {
        "experiment": q.experiment or "",
        "filter": q.filter or "",
        "sort": q.sort,
        "cols": request.query.get("cols") or "",
    }
    options = '<option value="">all experiments</option>' + "".join(
        f'<option value="{esc(e["name"])}"{" selected" if e["name"] == q.experiment else ""}>'
        f"{esc(e['name'])} ({e['runs']:,})</option>"
        for e in exps
    )
    err_html = (
        f'<p class="filter-error" id="filter-error" role="alert">{esc(error["message"])}</p>'
        if error
        else '<p class="filter-error" id="filter-error" role="alert" hidden></p>'
    )
    body = f"""
<section class="runs-page">
  <h1>Runs</h1>
  <form class="runs-controls" id="runs-form" method="get" action="/runs">
    <label>Experiment <select name="experiment" id="experiment">{options}</select></label>
    <label class="grow">Filter <input type="text" name="filter" id="filter"
      value="{esc(q.filter or "")}" spellcheck="false" autocomplete="off"
      placeholder='metrics.roc_auc &gt; 0.9 and params.model = "lightgbm"'></label>
    <input type="hidden" name="sort" id="sort" value="{esc(q.sort)}">
    <input type="hidden" name="cols" id="cols" value="{esc(state["cols"])}">
    <button type="submit">Apply</button>
    <button type="button" id="choose-cols">Columns</button>
    <button type="button" id="compare-selected" disabled>Compare selected</button>
  </form>
  {err_html}
  <p class="runs-summary" id="runs-summary" aria-live="polite"></p>
  <div class="col-chooser" id="col-chooser" hidden></div>
  <div class="grid" id="runs-grid" role="grid" aria-label="runs" tabindex="0"></div>
</section>"""
    data = {"state": state, "first": first, "error": error, "page_size": _FIRST_PAGE}
    return html_response(
        page(request.app, "Runs", body, active="/runs", scripts=("runs.js",), data=data)
    )


def home(request: Request) -> Response:
    return Response(b"", 302, [(b"location", b"/runs"), (b"cache-control", b"no-store")])


ROUTES = (
    Route("GET", "/", home),
    Route("GET", "/runs", runs_view),
    Route("GET", "/api/runs", api_runs),
    Route("GET", "/api/columns", api_columns),
    Route("GET", "/api/experiments", api_experiments),
)
