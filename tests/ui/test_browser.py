"""keel ui in a real browser (headless Chromium through Playwright) on a project made by the
demo: every page renders without a console error, the runs table sorts and filters, a bad
filter is answered inline, a comparison draws, markup in a run's name stays text, moving an
alias to a model that fails its gates is refused, and no page has a serious or critical
accessibility violation (axe-core).

The selectors the dashboard keeps stable for these tests and for bench/bench_ui.py:
``[data-testid=runs-row]`` (one per run shown, with ``data-run-id``),
``[data-testid=sort-<field>]`` (the header that sorts by a field, e.g.
``sort-metrics.roc_auc``), ``[data-testid=compare-ready]`` (present once a comparison has
drawn its plots), ``#filter`` and ``#filter-error`` on the runs page.

A page not built yet is served by a placeholder (``[data-testid=coming-soon]``): its tests
skip, saying so, until the page lands.
"""

from __future__ import annotations

import json
import os
import re
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


#: Every page of the dashboard: name -> (which server, path). The demo's monitoring act
#: (drift, alerts, the retrain pipeline) is a project of its own, served by ``ui_bikes``.
PAGES = ("runs", "run", "compare", "models", "model", "releases", "monitoring", "pipelines")


def pages(request: pytest.FixtureRequest) -> dict[str, tuple[UiServer, str]]:
    ui = request.getfixturevalue("ui")
    ids = sweep_runs(ui)
    main = {
        "runs": "/runs",
        "run": f"/runs/{ids[0]}",
        "compare": "/compare?runs=" + ",".join(ids),
        "models": "/models",
        "model": f"/models/{MODEL}",
        "releases": "/releases",
    }
    out = {name: (ui, path) for name, path in main.items()}
    bikes = request.getfixturevalue("ui_bikes")
    out |= {"monitoring": (bikes, "/monitoring"), "pipelines": (bikes, "/pipelines")}
    assert tuple(out) == PAGES
    return out


def open_page(page: Any, ui: UiServer, path: str) -> Any:
    """Go to ``path``, check it answered 200, skip while it is a placeholder, and wait until
    its scripts have drawn it."""
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
    page.wait_for_load_state("load")
    page.wait_for_timeout(200)  # let charts and late fetches finish
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
    open_page(page, ui, path)
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


# -- an alias move that the gates refuse -------------------------------------------------


def test_moving_an_alias_to_a_failing_model_is_refused_with_its_gate_results(
    admin_page, page_log, ui_keys, ui_project
):
    from keel import registry

    page_log.allow(r"status of 4\d\d")  # the refusal's own answer
    from keel.project import open_project

    with open_project(ui_project) as proj:
        before = registry.get_version(proj.store, f"{MODEL}@production").version
    assert before != 1
    page = admin_page
    open_page(page, ui_keys, f"/models/{MODEL}")
    form = page.locator("[data-testid=alias-form]")
    form.locator("[name=alias]").fill("production")
    form.locator("[name=version]").select_option("1")  # the search's best: fails fairness
    form.locator("[name=why]").fill("browser test: should be refused")
    form.locator("[type=submit]").click()
    result = page.locator("[data-testid=alias-result]")
    result.wait_for(state="visible")
    text = result.inner_text()
    assert "demographic_parity" in text, text  # the rule that failed, shown
    with open_project(ui_project) as proj:
        assert registry.get_version(proj.store, f"{MODEL}@production").version == before


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
    open_page(page, ui, path)
    violations = axe_check(page)
    assert not violations, f"axe-core on {name}:\n{describe_violations(violations)}"


@pytest.mark.slow
def test_screenshots_of_every_page_for_the_readme(request, page, page_log, tmp_path):
    """<page>.png of every page into KEEL_SCREENSHOTS (`make screenshots`: docs/screenshots,
    as the README shows them), else into a temp folder."""
    shots = Path(SCREENSHOTS_ENV) if SCREENSHOTS_ENV else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    taken, pending = [], []
    for name, (ui, path) in pages(request).items():
        resp = page.goto(ui.url + path, wait_until="load")
        assert resp is not None
        if page.locator(COMING).count() or (resp.status == 404 and name == "model"):
            pending.append(name)
            page_log.allow(re.escape(ui.url + path))  # its 404 while it is pending
            continue
        open_page(page, ui, path)
        shot = page.screenshot(full_page=False)
        assert len(shot) > 5_000, f"{name}: the screenshot is nearly empty"
        (shots / f"{name}.png").write_bytes(shot)
        taken.append(name)
    assert taken, f"no page built yet (pending: {pending})"
