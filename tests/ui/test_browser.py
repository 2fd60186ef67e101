"""keel ui in a real browser (headless Chromium through Playwright) on a project made by the
demo: every page renders without a console error, the runs table sorts and filters, a bad
filter is answered inline, a comparison draws, markup in a run's name or in an alias move's
reason stays text, moving an alias to a model that fails its gates is refused (and moved
only with an override reason), a version shows its evidence as figures and its model card
in place and as downloads, a request id is found with its lineage back to the source file,
the drift heat map and the pipeline's step graph are drawn, and no page has a serious or
critical accessibility violation (axe-core). The screenshot test writes the README's
pictures (1280x800, once each page's charts are drawn).

The selectors the dashboard keeps stable for these tests and for bench/bench_ui.py:
``[data-testid=runs-row]`` (one per run shown, with ``data-run-id``),
``[data-testid=sort-<field>]`` (the header that sorts by a field, e.g.
``sort-metrics.roc_auc``), ``[data-testid=compare-ready]`` (present once a comparison has
drawn its plots), ``#filter`` and ``#filter-error`` on the runs page; on the Models pages
``alias-form``, ``alias-result``, ``failed-rules``, ``history-row`` (``data-gate``),
``version-row``, ``gate-check``, ``figure`` (``data-section``), ``card``, ``card-md``,
``card-html``, ``no-evidence``; ``#request-id``, ``#prediction-found`` and
``#prediction-lineage`` (``li[data-kind]``) on a release page, ``#drift-heatmap[data-ready]``
on a monitoring page and ``#step-graph[data-ready]`` on a pipeline run's.

A page not built yet is served by a placeholder (``[data-testid=coming-soon]``): its tests
skip, saying so, until the page lands.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import (
    SWEEP,
    SWEEP_RUNS,
    XSS_EXPERIMENT,
    XSS_NAME,
    UiServer,
    axe_check,
    describe_violations,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` sets KEEL_SCREENSHOTS=docs/screenshots (what the README shows); a plain
# test run writes them to a temp folder, so it leaves the work tree as it was.
SCREENSHOTS_ENV = os.environ.get("KEEL_SCREENSHOTS")
COMING = "[data-testid=coming-soon]"
ROW = "[data-testid=runs-row]"
MODEL = "adult-income"


def api(ui: UiServer, path: str) -> Any:
    with urllib.request.urlopen(ui.url + path, timeout=30) as resp:
        return json.loads(resp.read())


def sweep_runs(ui: UiServer, n: int = 3) -> list[str]:
    """Ids of ``n`` runs of the sweep (each with curves of 20 steps), newest first."""
    q = urllib.parse.urlencode({"experiment": SWEEP, "sort": "-created_at", "limit": 50})
    rows = api(ui, f"/api/runs?{q}")["rows"]
    assert len(rows) == SWEEP_RUNS
    return [r["id"] for r in rows[:n]]


def xss_run(ui: UiServer) -> str:
    q = urllib.parse.urlencode({"experiment": XSS_EXPERIMENT})
    (row,) = api(ui, f"/api/runs?{q}")["rows"]
    return str(row["id"])


#: Every page of the dashboard, by the name of its screenshot. The demo's monitoring act
#: (drift, alerts, the retrain pipeline) is a project of its own, served by ``ui_bikes``.
PAGES = (
    "runs",
    "run",
    "compare",
    "models",
    "model",
    "version",
    "releases",
    "release",
    "monitoring",
    "monitor",
    "pipelines",
    "pipeline",
)
#: Where a screenshot is taken, when not at the top of its page: the element scrolled to the
#: top of the viewport (the version page's evidence as pictures, under its metadata).
SHOT_AT = {"version": "#version section:has([data-testid=figure]) > h2"}
#: What shows that a page has drawn what it draws after loading (its charts, its table).
READY = {
    "runs": ROW,
    "compare": "[data-testid=compare-ready]",
    "models": "[data-testid=models-row]",
    "model": "[data-testid=gate-check]",
    "version": "[data-testid=card]",
    "releases": "#releases-table",
    "release": "#traffic-charts[data-ready]",
    "monitoring": "#monitoring-table",
    "monitor": "#drift-heatmap[data-ready]",
    "pipelines": "#pipelines-table",
    "pipeline": "#step-graph[data-ready]",
}


def production_version(ui: UiServer) -> int:
    return int(api(ui, f"/api/models/{MODEL}")["aliases"]["production"])


def bikes_model(bikes: UiServer) -> str:
    """The model of the demo's monitoring act (the one with logged traffic and an alert)."""
    (row,) = api(bikes, "/api/monitoring")["models"]
    return str(row["model"])


def bikes_pipeline_run(bikes: UiServer) -> str:
    """The id of the newest run of the demo's retrain pipeline."""
    runs = api(bikes, "/api/pipelines")["runs"]
    assert runs, "the demo ran its retrain pipeline"
    return str(runs[0]["id"])


def pages(request: pytest.FixtureRequest) -> dict[str, tuple[UiServer, str]]:
    ui = request.getfixturevalue("ui")
    ids = sweep_runs(ui, 6)
    main = {
        "runs": "/runs",
        "run": f"/runs/{ids[0]}",
        "compare": "/compare?"
        + urllib.parse.urlencode({"runs": ",".join(ids), "metric": "roc_auc"}),
        "models": "/models",
        "model": f"/models/{MODEL}",
        "version": f"/models/{MODEL}/{production_version(ui)}",
        "releases": "/releases",
        "release": f"/releases/{MODEL}",
    }
    out = {name: (ui, path) for name, path in main.items()}
    bikes = request.getfixturevalue("ui_bikes")
    out |= {
        "monitoring": (bikes, "/monitoring"),
        "monitor": (bikes, f"/monitoring/{bikes_model(bikes)}"),
        "pipelines": (bikes, "/pipelines"),
        "pipeline": (bikes, f"/pipelines/{bikes_pipeline_run(bikes)}"),
    }
    assert tuple(out) == PAGES
    return out


def open_page(page: Any, ui: UiServer, path: str, ready: str | None = None) -> Any:
    """Go to ``path``, check it answered 200, skip while it is a placeholder, and wait until
    its scripts have drawn it: ``ready`` (a selector, see :data:`READY`) attached, the
    runs table's rows, a comparison's plots, every chart in or near the viewport drawn,
    fonts loaded and two frames painted (so a screenshot shows the page as a person sees
    it)."""
    resp = page.goto(ui.url + path, wait_until="load")
    assert resp is not None
    if resp.status == 404 and _coming(ui, "/" + path.split("/")[1].split("?")[0]):
        pytest.skip(f"{path}: its section is not built yet (placeholder)")
    assert resp.status == 200, f"{path}: HTTP {resp.status}"
    if page.locator(COMING).count():
        pytest.skip(f"{path}: the page is not built yet (placeholder)")
    page.locator("main h1").first.wait_for(state="visible")
    if path.startswith("/runs") and "/" not in path[1:]:
        page.locator(ROW).first.wait_for(state="visible")
    if path.startswith("/compare"):
        page.locator("[data-testid=compare-ready]").wait_for(state="attached")
    if ready:
        page.locator(ready).first.wait_for(state="attached")
    page.wait_for_load_state("load")
    # a run's curves are fetched as they scroll into view (300 px ahead): those must be drawn
    page.wait_for_function(
        """() => [...document.querySelectorAll('figure.curve[data-key]')].every(f =>
            f.dataset.drawn || f.getBoundingClientRect().top > innerHeight + 300)"""
    )
    page.evaluate(
        """() => document.fonts.ready.then(() => new Promise(r =>
            requestAnimationFrame(() => requestAnimationFrame(() => r(true)))))"""
    )
    page.wait_for_timeout(150)  # late fetches and resize observers settle
    return resp


def _coming(ui: UiServer, path: str) -> bool:
    key = {"authorization": f"Bearer {ui.admin}"} if ui.admin else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(ui.url + path, headers=key)) as resp:
            return 'data-testid="coming-soon"' in resp.read().decode("utf-8", "replace")
    except OSError:
        return False


# -- every page --------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_without_console_errors(request, page, name):
    ui, path = pages(request)[name]
    open_page(page, ui, path, READY.get(name))
    assert page.title(), f"{path} has no title"
    assert "keel" in page.title()
    # the navigation is on every page, and the page is no error page
    assert page.locator("nav[aria-label=main] a").count() >= 6
    # the page fixture fails the test on any console error, page error or dialog


def test_an_unknown_run_gets_a_404_page_that_names_it(page, page_log, ui):
    page_log.allow(r"404 \(Not Found\)")
    resp = page.goto(ui.url + "/runs/0000nosuchrun0000")
    assert resp is not None and resp.status == 404
    assert "0000nosuchrun0000" in page.locator("main").inner_text()


def test_an_unknown_page_gets_a_404_page(page, page_log, ui):
    page_log.allow(r"404 \(Not Found\)")
    resp = page.goto(ui.url + "/no/such/page")
    assert resp is not None and resp.status == 404
    assert "/no/such/page" in page.locator("main").inner_text()


# -- the runs table ----------------------------------------------------------------------


def row_ids(page: Any) -> list[str]:
    return page.locator(ROW).evaluate_all("rows => rows.map(r => r.dataset.runId)")


def test_runs_table_sorts_by_a_metric_server_side(page, ui):
    open_page(page, ui, f"/runs?experiment={SWEEP}")
    before = row_ids(page)
    assert len(before) == SWEEP_RUNS and all(before), "a row per run, each with data-run-id"
    by_auc = [r["id"] for r in api(ui, _runs_q(sort="metrics.roc_auc"))["rows"]]
    assert by_auc != before and by_auc != before[::-1]
    header = page.locator("[data-testid='sort-metrics.roc_auc']")
    header.click()
    page.wait_for_function(
        "([sel, a, b]) => { const s = JSON.stringify([...document.querySelectorAll(sel)]"
        ".map(r => r.dataset.runId)); return s === JSON.stringify(a) || s === JSON.stringify(b); }",
        arg=[ROW, by_auc, by_auc[::-1]],
    )
    first = row_ids(page)
    header.click()  # a second click turns the order round
    page.wait_for_function(
        "([sel, ids]) => JSON.stringify([...document.querySelectorAll(sel)]"
        ".map(r => r.dataset.runId)) === JSON.stringify(ids)",
        arg=[ROW, first[::-1]],
    )
    assert "metrics.roc_auc" in urllib.parse.unquote(page.url), "the sort is in the URL"


def _runs_q(**q: Any) -> str:
    return "/api/runs?" + urllib.parse.urlencode({"experiment": SWEEP, "limit": 100, **q})


def test_runs_table_filters_by_an_expression(page, ui):
    open_page(page, ui, f"/runs?experiment={SWEEP}")
    expr = 'metrics.roc_auc > 0.81 and params.model = "lightgbm"'
    # sweep-i: lightgbm for odd i, roc_auc about 0.70 + 0.02 (5 i mod 12): i = 7, 9, 11
    expected = {f"sweep-{i:02d}" for i in (7, 9, 11)}
    page.fill("#filter", expr)
    page.press("#filter", "Enter")
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length === n", arg=[ROW, len(expected)]
    )
    names = {page.locator(ROW).nth(k).inner_text() for k in range(len(expected))}
    assert {n for n in expected if any(n in t for t in names)} == expected, names
    assert expr in urllib.parse.unquote_plus(page.url), "the filter is in the URL"
    assert page.locator("#filter-error").is_hidden()


def test_a_malformed_filter_shows_an_inline_error_naming_position_and_token(page, page_log, ui):
    page_log.allow(r"400 \(Bad Request\)")
    open_page(page, ui, "/runs")
    page.fill("#filter", "metrics.roc_auc >> 0.9")
    page.press("#filter", "Enter")
    error = page.locator("#filter-error")
    error.wait_for(state="visible")
    text = error.inner_text()
    assert ">" in text and "17" in text, text  # the token and its position (1-based)
    assert page.locator("#filter").input_value() == "metrics.roc_auc >> 0.9"


# -- compare -----------------------------------------------------------------------------


def test_compare_draws_parallel_coordinates_curves_and_a_params_diff(page, ui):
    ids = sweep_runs(ui, 3)
    open_page(page, ui, "/compare?runs=" + ",".join(ids))
    main = page.locator("main")
    for run_id in ids:
        assert main.locator(f"[data-run-id='{run_id}']").count() >= 1, run_id
    assert main.locator("canvas, svg").count() >= 2, "parallel coordinates and curves"


def test_compare_from_the_runs_table_selection(page, ui):
    open_page(page, ui, f"/runs?experiment={SWEEP}")
    boxes = page.locator(f"{ROW} input[type=checkbox]")
    for k in range(2):
        boxes.nth(k).check()
    page.click("#compare-selected")
    page.wait_for_url("**/compare?**")
    page.locator("[data-testid=compare-ready]").wait_for(state="attached")


# -- escaping ----------------------------------------------------------------------------


def _no_injected_markup(page: Any) -> None:
    counts = page.evaluate(
        """() => ({
            scripts: [...document.scripts].filter(s => !s.src && s.type !== 'application/json')
                .length,
            images: document.querySelectorAll('img[src="x"]').length,
        })"""
    )
    assert counts == {"scripts": 0, "images": 0}, counts


def test_markup_in_a_run_name_shows_as_text_on_the_runs_page(page, ui):
    open_page(page, ui, "/runs?" + urllib.parse.urlencode({"experiment": XSS_EXPERIMENT}))
    row = page.locator(ROW).first
    assert XSS_NAME in row.inner_text()
    _no_injected_markup(page)  # and the page fixture fails on any dialog


def test_markup_in_a_run_name_shows_as_text_on_the_run_page(page, ui):
    open_page(page, ui, f"/runs/{xss_run(ui)}")
    text = page.locator("main").inner_text()
    assert XSS_NAME in text and "onerror=alert(2)" in text
    _no_injected_markup(page)


def test_markup_in_a_run_name_shows_as_text_in_a_comparison(page, ui):
    ids = [xss_run(ui), sweep_runs(ui, 1)[0]]
    open_page(page, ui, "/compare?runs=" + ",".join(ids))
    assert XSS_NAME in page.locator("main").inner_text()
    _no_injected_markup(page)


# -- models: alias moves, gates, overrides, evidence, the card ---------------------------

MARKUP = "<img src=x onerror=alert(1)>"


def production_in_store(project: Path) -> int:
    from keel import registry
    from keel.project import open_project

    with open_project(project) as proj:
        return registry.get_version(proj.store, f"{MODEL}@production").version


def move_alias(page: Any, version: str, why: str, override: str | None = None) -> Any:
    """Fill the alias form of the open model page (production to ``version``), with an
    override reason when ``override`` is not None (an empty one too), and submit it."""
    form = page.locator("[data-testid=alias-form]")
    form.locator("[name=alias]").fill("production")
    form.locator("[name=version]").select_option(version)
    form.locator("[name=why]").fill(why)
    if override is not None:
        details = form.locator("details.override")
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        form.locator("[name=override]").fill(override)
    form.locator("[type=submit]").click()
    return page.locator("[data-testid=alias-result]")


def test_moving_an_alias_to_a_failing_model_is_refused_with_its_gate_results(
    admin_page, page_log, ui_keys, ui_project
):
    page_log.allow(r"status of 409")  # the refusal's own answer
    before = production_in_store(ui_project)
    assert before != 1
    page = admin_page
    open_page(page, ui_keys, f"/models/{MODEL}")
    # version 1 is the search's best: it fails the fairness rule
    result = move_alias(page, "1", "browser test: should be refused")
    page.locator(".alias-result.error [data-testid=failed-rules] li").first.wait_for()
    assert "demographic_parity" in result.inner_text()
    rules = page.locator("[data-testid=failed-rules] li").all_inner_texts()
    assert any("demographic_parity" in r for r in rules), rules
    assert "Nothing moved" in result.inner_text()
    assert page.locator("form details.override").get_attribute("open") is not None
    assert production_in_store(ui_project) == before


def test_an_override_with_an_empty_reason_is_refused(admin_page, page_log, ui_keys, ui_project):
    page_log.allow(r"status of 400")
    before = production_in_store(ui_project)
    page = admin_page
    open_page(page, ui_keys, f"/models/{MODEL}")
    result = move_alias(page, "1", "browser test: no reason", override="   ")
    page.locator(".alias-result.error").wait_for()
    text = result.inner_text()
    assert "override" in text and "reason" in text, text
    assert production_in_store(ui_project) == before
    assert page.locator("[data-testid=history-row][data-gate=overridden]").count() == 0


def test_an_override_with_a_reason_moves_the_alias_and_markup_stays_text(
    admin_page, ui_keys, ui_project
):
    """The move is recorded with its reason; a why and a reason that are markup show as
    text, in the history drawn after the move and in the page drawn by the server."""
    from keel import registry
    from keel.project import open_project

    before = production_in_store(ui_project)
    reason = f"browser test: shipped for the demo {MARKUP}"
    page = admin_page
    open_page(page, ui_keys, f"/models/{MODEL}")
    try:
        result = move_alias(page, "1", MARKUP, override=reason)
        page.locator(".alias-result.ok").wait_for()
        assert "overridden" in result.inner_text()
        assert production_in_store(ui_project) == 1
        first = page.locator("[data-testid=history-row]").first
        page.wait_for_function(
            "sel => document.querySelector(sel).dataset.gate === 'overridden'",
            arg="[data-testid=history-row]",
        )
        assert reason in first.inner_text()
        _no_injected_markup(page)
        page.reload(wait_until="load")  # the same history, drawn by the server
        first = page.locator("[data-testid=history-row]").first
        assert first.get_attribute("data-gate") == "overridden"
        assert reason in first.inner_text() and MARKUP in first.inner_text()
        assert page.locator("[data-testid=aliases-table] tr[data-alias=production]").inner_text()
        _no_injected_markup(page)  # and the page fixture fails on any dialog
    finally:
        with open_project(ui_project) as proj:  # put production back, through its gates
            registry.set_alias(
                proj.store, f"{MODEL}/{before}", "production", why="browser test: put back"
            )
    assert production_in_store(ui_project) == before


def test_a_version_page_shows_its_gates_evidence_and_card_in_place(page, ui):
    version = production_version(ui)
    open_page(page, ui, f"/models/{MODEL}/{version}", READY["version"])
    checks = page.locator("[data-testid=gate-check]")
    assert checks.count() >= 3
    assert checks.evaluate_all("rows => rows.every(r => r.dataset.passed === 'true')")
    figures = page.locator("[data-testid=figure]")
    sections = set(figures.evaluate_all("fs => fs.map(f => f.dataset.section)"))
    assert {"performance", "fairness", "explanations"} <= sections, sections
    for section in ("performance", "fairness", "explanations"):
        fig = page.locator(f"[data-testid=figure][data-section={section}]").first
        assert fig.locator("svg, dl").count() >= 1, section
        assert fig.bounding_box()["height"] > 40, f"{section}: its figure has no height"
    card = page.locator("[data-testid=card]")
    card.scroll_into_view_if_needed()
    assert card.is_visible()
    text = card.inner_text()
    assert MODEL in text and len(text) > 500, text[:300]
    assert card.locator("h3, h4").count() >= 2, "the card's headings, shifted under the page's"
    _no_injected_markup(page)  # the card's own scripts and styles are not carried over
    # the page fixture fails on any console error, a refused inline style (CSP) included


def test_the_model_card_downloads_as_markdown_and_html(page, ui):
    version = production_version(ui)
    open_page(page, ui, f"/models/{MODEL}/{version}", READY["version"])
    for testid, kind in (("card-md", "md"), ("card-html", "html")):
        with page.expect_download() as info:
            page.locator(f"#card [data-testid={testid}]").click()
        download = info.value
        assert download.failure() is None
        assert download.suggested_filename == f"{MODEL}-{version}-card.{kind}"
        body = Path(download.path()).read_text(encoding="utf-8")
        assert MODEL in body
        if kind == "md":
            assert body.lstrip().startswith("#"), body[:80]
        else:
            assert body.lstrip().lower().startswith("<!doctype html"), body[:80]


def test_a_version_without_evidence_says_so(page, ui):
    newest = max(api(ui, f"/api/models/{MODEL}")["versions"], key=lambda v: v["version"])
    assert not newest["evidence"], "the demo's newest version (a variant) has no evidence"
    open_page(page, ui, f"/models/{MODEL}/{newest['version']}")
    assert page.locator("[data-testid=no-evidence]").is_visible()
    assert page.locator("[data-testid=figure]").count() == 0


def test_the_model_page_lists_versions_and_history(page, ui):
    open_page(page, ui, f"/models/{MODEL}", READY["model"])
    versions = page.locator("[data-testid=version-row]")
    assert versions.count() == len(api(ui, f"/api/models/{MODEL}")["versions"])
    history = page.locator("[data-testid=history-row]")
    assert history.count() >= 1
    gates = set(history.evaluate_all("rows => rows.map(r => r.dataset.gate)"))
    assert gates and gates <= {"passed", "overridden", "not_gated", "unrecorded", "removed"}


def test_an_unknown_model_gets_a_404_page_that_names_it(page, page_log, ui):
    page_log.allow(r"404 \(Not Found\)")
    resp = page.goto(ui.url + "/models/nope")
    assert resp is not None and resp.status == 404
    assert "nope" in page.locator("main").inner_text()
    assert page.locator("nav[aria-label=main] a").count() >= 6


# -- releases, monitoring, pipelines -------------------------------------------------------


def test_a_request_id_search_finds_the_prediction_and_its_lineage_to_the_source_file(page, ui):
    (logged,) = api(ui, f"/api/releases/{MODEL}/predictions?limit=1")["predictions"]
    rid = logged["request_id"]
    open_page(page, ui, f"/releases/{MODEL}", READY["release"])
    page.fill("#request-id", rid)
    page.locator("#request-search [type=submit]").click()
    found = page.locator("#prediction-found")
    found.wait_for()
    assert found.get_attribute("data-request-id") == rid
    assert rid in urllib.parse.unquote(page.url), "the search is in the URL"
    rows = page.locator("#prediction-table tbody tr")
    assert rows.count() >= 1
    assert f"{MODEL}/{logged['version']}" in page.locator("#prediction-table").inner_text()
    lineage = page.locator("#prediction-lineage")
    # the chain: the log segment, the model version that answered, the run that trained
    # it, the data set it was trained on, and the file that data set was read from
    for kind in ("predictions", "model", "run", "dataset", "source"):
        assert lineage.locator(f"li[data-kind={kind}]").count() >= 1, kind
    chain = lineage.locator(
        "li[data-kind=predictions] li[data-kind=model] li[data-kind=run] "
        "li[data-kind=dataset] li[data-kind=source]"
    )
    assert chain.count() >= 1
    files = chain.all_inner_texts()
    assert any("adult-train.csv" in t for t in files), files  # the demo's training file


def test_the_monitoring_page_draws_the_drift_heat_map_with_feature_names(page, ui_bikes):
    model = bikes_model(ui_bikes)
    timeline = api(ui_bikes, f"/api/monitoring/{model}/timeline")
    features, windows = timeline["features"], timeline["windows"]
    assert features and windows
    open_page(page, ui_bikes, f"/monitoring/{model}", READY["monitor"])
    heat = page.locator("#drift-heatmap-svg")
    assert heat.is_visible()
    cells = heat.locator("g.cell")
    assert cells.count() == len(features) * len(windows)
    shown = set(cells.evaluate_all("gs => gs.map(g => g.dataset.feature)"))
    assert shown == set(features)
    labels = set(heat.locator(":scope > text").all_text_contents())
    assert {f[:23] for f in features} <= {t.rstrip("…")[:23] for t in labels}, labels
    assert heat.locator("g.cell[data-drift=true]").count() >= 1, "the demo's seasonal drift"
    assert page.locator("#drift-share figure.chart[data-drawn]").count() == 1


def test_the_pipeline_page_draws_the_step_graph(page, ui_bikes):
    run_id = bikes_pipeline_run(ui_bikes)
    graph = api(ui_bikes, f"/api/pipelines/{run_id}")
    steps = [s["name"] for s in graph["steps"]]
    open_page(page, ui_bikes, f"/pipelines/{run_id}", READY["pipeline"])
    svg = page.locator("#step-graph-svg")
    assert svg.is_visible()
    nodes = svg.locator("g.node")
    assert nodes.evaluate_all("gs => gs.map(g => g.dataset.step)") == steps
    assert svg.locator("path.edge").count() == len(graph["edges"])
    assert all(nodes.nth(k).bounding_box()["width"] > 20 for k in range(len(steps)))
    assert page.locator("#step-durations[data-ready] svg").count() == 1
    for step in steps:
        assert page.locator(f"#steps-table tr[data-step={step}]").count() == 1, step


def test_state_changes_need_the_admin_key_and_the_csrf_header(browser, ui_keys):
    """The alias form's endpoint, called as another site or with a read key, is refused."""
    creds = {"username": "admin", "password": ui_keys.admin, "origin": ui_keys.url}
    ctx = browser.new_context(http_credentials=creds)
    try:
        page = ctx.new_page()
        open_page(page, ui_keys, f"/models/{MODEL}")
        action = page.locator("[data-testid=alias-form]").evaluate("f => f.action")
    finally:
        ctx.close()
    body = {"alias": "production", "version": 1, "why": "test"}
    ctx = browser.new_context()
    try:
        req = ctx.request
        admin = {"authorization": f"Bearer {ui_keys.admin}"}
        reader = {"authorization": f"Bearer {ui_keys.reader}"}
        origin = {"origin": ui_keys.url, "x-keel-csrf": "1"}
        no_header = req.post(action, headers={**admin, "origin": ui_keys.url}, data=body)
        assert no_header.status == 403, no_header.text()
        other_site = req.post(
            action, headers={**admin, "origin": "http://evil.test", "x-keel-csrf": "1"}, data=body
        )
        assert other_site.status == 403, other_site.text()
        read_only = req.post(action, headers={**reader, **origin}, data=body)
        assert read_only.status == 403, read_only.text()
        no_key = req.post(action, headers=origin, data=body)
        assert no_key.status == 401, no_key.text()
    finally:
        ctx.close()


# -- accessibility and screenshots -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", PAGES)
def test_no_serious_or_critical_accessibility_violations(request, page, name):
    ui, path = pages(request)[name]
    open_page(page, ui, path, READY.get(name))
    violations = axe_check(page)
    assert not violations, f"axe-core on {name}:\n{describe_violations(violations)}"


@pytest.mark.slow
def test_screenshots_of_every_page_for_the_readme(request, page, tmp_path):
    """<page>.png of every page (1280x800, once its charts are drawn) into KEEL_SCREENSHOTS
    (`make screenshots`: docs/screenshots, as the README shows them), else into a temp
    folder."""
    shots = Path(SCREENSHOTS_ENV) if SCREENSHOTS_ENV else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    assert page.viewport_size == {"width": 1280, "height": 800}
    for name, (ui, path) in pages(request).items():
        open_page(page, ui, path, READY.get(name))
        if name in SHOT_AT:
            page.locator(SHOT_AT[name]).evaluate("e => e.scrollIntoView({block: 'start'})")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(true)))")
        page.mouse.move(0, 0)  # no hover state or chart cursor in the picture
        shot = page.screenshot(full_page=False, animations="disabled", caret="hide")
        assert len(shot) > 5_000, f"{name}: the screenshot is nearly empty"
        (shots / f"{name}.png").write_bytes(shot)
    assert set(PAGES) <= {f.stem for f in shots.glob("*.png")}
