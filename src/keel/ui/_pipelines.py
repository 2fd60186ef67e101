"""The Pipelines page (``/pipelines``, ``/pipelines/<run id>``): pipeline runs, newest
first, and one run's step graph (an SVG of the steps and the inputs between them, each
coloured by how it ended), its cache hits (and the run each reused output came from), the
steps' durations on a time line, their tries, and the failures with their errors.

Read through :mod:`keel.pipeline`'s API: :func:`~keel.pipeline.list_pipeline_runs`,
:func:`~keel.pipeline.get_pipeline_run` and :func:`~keel.pipeline.get_pipeline_spec` (the
graph as the run recorded it; nothing of a ``python`` step is imported).

Query parameters of the list: ``pipeline`` (a pipeline's name) and ``limit`` (1 to 500);
a malformed one is answered 400 naming it. An unknown run id is a 404 naming it; a prefix
of 8 or more characters is enough.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from keel.errors import NotFound
from keel.ui._app import Route
from keel.ui._http import Request, Response, UiError, esc, html_response, json_response, query_int
from keel.ui._layout import page
from keel.ui._releases import fmt, model_link
from keel.ui._run import when

__all__ = ["ROUTES", "run_graph"]

_PIPELINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_RUN_ID = re.compile(r"[0-9a-f]{1,64}")
#: What a step's output says, shortest first (as ``keel pipeline show`` prints it).
_OUTPUT_KEYS = ("dataset", "model", "alias", "evidence", "passed", "onnx_sha")


def _filters(request: Request) -> tuple[str | None, int]:
    name = (request.query.get("pipeline") or "").strip() or None
    if name is not None and not _PIPELINE.fullmatch(name):
        raise UiError(
            "invalid_input",
            f"pipeline: expected a pipeline's name (letters, digits, '_', '-', '.'; up to 64), "
            f"got {name[:70]!r}",
        )
    return name, query_int(request, "limit", 50, 1, 500)


def _run(store: Any, run_id: str) -> Any:
    from keel.pipeline import get_pipeline_run

    if not _RUN_ID.fullmatch(run_id):
        raise NotFound(f"no pipeline run with id {run_id[:64]!r}; the list is at /pipelines")
    return get_pipeline_run(store, run_id)


def _summary(run: Any) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for s in run.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    failed = [s.name for s in run.steps if s.status == "failed"]
    seconds = (run.ended_at - run.created_at) if run.ended_at else None
    return {
        **{k: v for k, v in run.to_dict().items() if k != "steps"},
        "steps": len(run.steps),
        "counts": counts,
        "failed_steps": failed,
        "seconds": seconds,
        "step_seconds": sum(s.seconds or 0 for s in run.steps),
    }


def _runs(store: Any, name: str | None, limit: int) -> list[dict[str, Any]]:
    from keel.pipeline import get_pipeline_run, list_pipeline_runs

    return [_summary(get_pipeline_run(store, r.id)) for r in list_pipeline_runs(store, name, limit)]


def run_graph(store: Any, run: Any) -> dict[str, Any]:
    """``{"run": {...}, "steps": [{name, kind, inputs, status, attempts, seconds, error,
    source_run, started_at, ended_at, output, cached}], "edges": [{from, to}]}``: the step
    graph of a run, each step as the spec wrote it and as the run recorded it."""
    from keel.pipeline import get_pipeline_spec

    spec = get_pipeline_spec(store, run)
    recorded = {s.name: s for s in run.steps}
    steps, edges = [], []
    for st in spec["steps"]:
        name = str(st.get("name"))
        s = recorded.get(name)
        inputs = [str(i) for i in st.get("inputs") or []]
        steps.append(
            {
                "name": name,
                "kind": st.get("kind"),
                "function": st.get("function"),
                "inputs": inputs,
                "status": s.status if s else "pending",
                "attempts": s.attempts if s else 0,
                "seconds": s.seconds if s else None,
                "error": s.error if s else None,
                "source_run": s.source_run if s else None,
                "started_at": s.started_at if s else None,
                "ended_at": s.ended_at if s else None,
                "output": s.output if s else None,
                "key": s.key if s else "",
                "cached": bool(s and s.status == "cached"),
            }
        )
        edges += [{"from": i, "to": name} for i in inputs]
    return {"run": _summary(run), "description": spec.get("description") or "", "steps": steps,
            "edges": edges}  # fmt: skip


# -- the API ------------------------------------------------------------------------------


def api_pipelines(request: Request) -> Response:
    """``GET /api/pipelines?pipeline=&limit=``: the newest runs with their step counts."""
    name, limit = _filters(request)
    return json_response({"runs": _runs(request.app.store, name, limit)})


def api_pipeline_run(request: Request) -> Response:
    """``GET /api/pipelines/<run id>``: :func:`run_graph`."""
    store = request.app.store
    return json_response(run_graph(store, _run(store, request.params["run_id"])))


# -- the pages ------------------------------------------------------------------------------


def _counts(counts: dict[str, int]) -> str:
    order = ("ran", "cached", "failed", "running", "pending")
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def pipelines_index(request: Request) -> Response:
    name, limit = _filters(request)
    runs = _runs(request.app.store, name, limit)
    rows = []
    for r in runs:
        status = esc(r["status"])
        failed = ", ".join(r["failed_steps"])
        rows.append(
            f'<tr data-run="{esc(r["id"])}"><th scope="row">'
            f'<a href="/pipelines/{esc(r["id"])}"><code>{esc(r["id"][:12])}</code></a></th>'
            f'<td><a href="/pipelines?{esc(urlencode({"pipeline": r["pipeline"]}))}">'
            f"{esc(r['pipeline'])}</a></td>"
            f'<td><span class="badge status-{status}">{status}</span></td>'
            f"<td>{esc(r['executor'])}</td><td>{esc(when(r['created_at']))}</td>"
            f'<td class="num">{esc(fmt(r["seconds"], 3))}</td>'
            f"<td>{esc(_counts(r['counts']))}</td>"
            f'<td class="{"bad" if failed else ""}">{esc(failed)}</td></tr>'
        )
    table = (
        '<table class="kv" id="pipelines-table"><thead><tr><th scope="col">run</th>'
        '<th scope="col">pipeline</th><th scope="col">status</th><th scope="col">executor</th>'
        '<th scope="col">started</th><th scope="col">seconds</th><th scope="col">steps</th>'
        f'<th scope="col">failed step</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        if rows
        else '<p class="muted" id="pipelines-empty">No pipeline runs'
        + (f" of {esc(name)}" if name else "")
        + " yet: <code>keel pipeline run pipeline.yaml</code>.</p>"
    )
    shown = f' of <code>{esc(name)}</code> (<a href="/pipelines">all</a>)' if name else ""
    body = f"""
<section class="ops-page" id="pipelines">
  <h1>Pipelines</h1>
  <p class="muted">The newest {len(runs)} runs{shown}.</p>
  {table}
</section>"""
    return html_response(
        page(request.app, "Pipelines", body, active="/pipelines", styles=("ops.css",))
    )


def _output(output: Any) -> str:
    """A step's output as a line, with links to what it made."""
    if not isinstance(output, dict):
        return esc("" if output is None else str(output)[:80])
    parts = []
    for k in _OUTPUT_KEYS:
        if k not in output:
            continue
        v = output[k]
        if k == "model" and isinstance(v, str):
            parts.append(f'model <a href="{esc(model_link(v))}">{esc(v)}</a>')
        else:
            parts.append(f"{esc(k)} {esc(str(v)[:40])}")
    if not parts:
        import json

        return f"<code>{esc(json.dumps(output, default=str)[:100])}</code>"
    return ", ".join(parts)


def _steps_table(graph: dict[str, Any]) -> str:
    rows = []
    for s in graph["steps"]:
        status = esc(s["status"])
        if s["cached"] and s["source_run"]:
            cache = (
                f'from <a href="/pipelines/{esc(quote(s["source_run"], safe=""))}">'
                f"<code>{esc(s['source_run'][:12])}</code></a>"
            )
        else:
            cache = "hit" if s["cached"] else ""
        error = f'<td class="error">{esc(s["error"])}</td>' if s["error"] else "<td></td>"
        key = f"<code>{esc(s['key'][:12])}</code>" if s["key"] else ""
        rows.append(
            f'<tr id="step-{esc(s["name"])}" class="step-{status}" data-step="{esc(s["name"])}">'
            f'<th scope="row">{esc(s["name"])}</th><td>{esc(s["kind"])}</td>'
            f"<td>{esc(', '.join(s['inputs']))}</td>"
            f'<td><span class="badge status-{status}">{status}</span></td>'
            f'<td class="num">{esc(fmt(s["attempts"]))}</td>'
            f'<td class="num">{esc(fmt(s["seconds"], 3) if s["status"] != "pending" else "")}</td>'
            f"<td>{cache}</td>"
            f"<td>{_output(s['output'])}</td>{error}"
            f"<td>{key}</td></tr>"
        )
    return (
        '<div class="table-scroll"><table class="kv" id="steps-table"><thead><tr>'
        '<th scope="col">step</th><th scope="col">kind</th><th scope="col">inputs</th>'
        '<th scope="col">status</th><th scope="col">tries</th><th scope="col">seconds</th>'
        '<th scope="col">cache</th><th scope="col">output</th><th scope="col">error</th>'
        f'<th scope="col">key</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def pipeline_view(request: Request) -> Response:
    store = request.app.store
    run = _run(store, request.params["run_id"])
    graph = run_graph(store, run)
    r = graph["run"]
    counts = r["counts"]
    cached = counts.get("cached", 0)
    meta = [
        ("id", r["id"]),
        ("pipeline", r["pipeline"]),
        ("executor", r["executor"]),
        ("started", when(r["created_at"])),
        ("ended", when(r["ended_at"])),
        ("wall time", f"{r['seconds']:.2f} s" if r["seconds"] is not None else ""),
        ("steps", _counts(counts)),
        ("cache hits", f"{cached} of {len(graph['steps'])} steps reused a stored output"),
        ("by", r["created_by"]),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta if v != "")
    failed = [s for s in graph["steps"] if s["status"] == "failed"]
    failure = ""
    if failed:
        s = failed[0]
        failure = (
            f'<p class="filter-error" id="run-failure">step {esc(s["name"])} failed after '
            f"{esc(s['attempts'])} {'try' if s['attempts'] == 1 else 'tries'}: "
            f"{esc(s['error'])}\nresume with: keel pipeline run "
            f"FILE --resume {esc(r['id'])}</p>"
        )
    status = esc(r["status"])
    body = f"""
<article class="ops-page" id="pipeline-run" data-run="{esc(r["id"])}">
  <h1>Pipeline <span class="pipeline-name">{esc(r["pipeline"])}</span>
    <span class="badge status-{status}" id="run-status">{status}</span></h1>
  <p class="muted">{esc(graph["description"])}
    <a href="/pipelines?{esc(urlencode({"pipeline": r["pipeline"]}))}">Its other runs</a>.</p>
  <dl class="meta">{dl}</dl>
  {failure}
  <section id="graph-section">
    <h2>Step graph</h2>
    <div id="step-graph" class="svg-chart graph"></div>
  </section>
  <section id="durations-section">
    <h2>Durations</h2>
    <div id="step-durations" class="svg-chart"></div>
  </section>
  <section id="steps-section">
    <h2>Steps</h2>
    {_steps_table(graph)}
  </section>
</article>"""
    return html_response(
        page(
            request.app,
            f"Pipeline {r['pipeline']} {r['id'][:8]}",
            body,
            active="/pipelines",
            scripts=("ops.js", "pipelines.js"),
            styles=("ops.css",),
            data=graph,
        )
    )


ROUTES = (
    Route("GET", "/pipelines", pipelines_index),
    Route("GET", "/pipelines/{run_id}", pipeline_view),
    Route("GET", "/api/pipelines", api_pipelines),
    Route("GET", "/api/pipelines/{run_id}", api_pipeline_run),
)
