"""The Pipelines page over real HTTP, on runs made with keel.pipeline: one that ran every
step (one of them after a failed try), the same again from the cache, and one that failed
on a step whose error is markup; the list, the step graph, cache hits, durations and
failures come from the store, and unknowns and bad parameters are 404 and 400."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from keel.datasets import adult
from keel.pipeline import Pipeline, Step, get_pipeline_run, run_pipeline
from keel.store import Store
from keel.ui import start as start_ui
from tests.ui._ui_helpers import XSS, get, get_json

STEPS = "tests.pipeline.steps"


def _etl(csv, counter) -> Pipeline:
    return Pipeline(
        "etl",
        [
            Step("ingest", "ingest", params={"path": str(csv), "name": "adult"}),
            Step("count", function=f"{STEPS}:rows", inputs=["ingest"], params={"scale": 2}),
            Step(
                "flaky",
                function=f"{STEPS}:flaky",
                inputs=["ingest"],
                params={"counter": str(counter), "fail_times": 1},
                retries=1,
                retry_delay=0.01,
            ),
            Step("after", function=f"{STEPS}:rows", inputs=["ingest", "count", "flaky"]),
        ],
        "ingest, count twice over, and a step that fails once",
    )


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-pipelines")
    csv = root / "adult.csv"
    adult("train").sample(300, random_state=0).to_csv(csv, index=False)
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    first = run_pipeline(store, _etl(csv, root / "calls"))
    again = run_pipeline(store, _etl(csv, root / "calls"))
    broken = run_pipeline(
        store,
        Pipeline(
            "broken",
            [
                Step("ingest", "ingest", params={"path": str(csv), "name": "adult"}),
                Step(
                    "check",
                    function=f"{STEPS}:needs_file",
                    inputs=["ingest"],
                    params={"flag": str(root / XSS)},
                ),
                Step("later", function=f"{STEPS}:rows", inputs=["check"]),
            ],
        ),
    )
    assert first.ok and again.ok and not broken.ok
    with start_ui(store) as ui:
        yield ui, store, first, again, broken
    store.close()


def _html(url: str) -> tuple[int, str]:
    status, _, body = get(url)
    return status, body.decode()


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="keel-data">(.*?)</script>', html, re.S)
    assert m, "the page has no data block"
    return json.loads(m.group(1))


def test_the_list_shows_runs_newest_first_with_their_steps(piped):
    ui, _, first, again, broken = piped
    status, html = _html(ui.url + "/pipelines")
    assert status == 200 and 'data-testid="coming-soon"' not in html
    order = [m for m in re.findall(r'<tr data-run="([0-9a-f]+)">', html)]
    assert order == [broken.id, again.id, first.id]
    row = html[html.index(f'<tr data-run="{broken.id}">') :].split("</tr>")[0]
    assert "status-failed" in row and "1 cached, 1 failed, 1 pending" in row and ">check<" in row
    row = html[html.index(f'<tr data-run="{again.id}">') :].split("</tr>")[0]
    assert "4 cached" in row
    status, api = get_json(ui.url + "/api/pipelines?pipeline=etl")
    assert status == 200 and [r["id"] for r in api["runs"]] == [again.id, first.id]
    status, html = _html(ui.url + "/pipelines?pipeline=etl&limit=1")
    assert status == 200 and again.id in html and first.id not in html


def test_a_run_shows_its_step_graph_durations_and_retries(piped):
    ui, store, first, _, _ = piped
    status, html = _html(ui.url + f"/pipelines/{first.id[:10]}")
    assert status == 200
    graph = _data(html)
    assert [s["name"] for s in graph["steps"]] == ["ingest", "count", "flaky", "after"]
    edges = {(e["from"], e["to"]) for e in graph["edges"]}
    assert edges == {("ingest", "count"), ("ingest", "flaky"), ("ingest", "after"),
                     ("count", "after"), ("flaky", "after")}  # fmt: skip
    run = get_pipeline_run(store, first.id)
    for s in graph["steps"]:
        recorded = run[s["name"]]
        assert (s["status"], s["attempts"], s["seconds"]) == (
            recorded.status,
            recorded.attempts,
            recorded.seconds,
        )
    flaky = next(s for s in graph["steps"] if s["name"] == "flaky")
    assert flaky["attempts"] == 2 and flaky["status"] == "ran"
    row = html[html.index('data-step="flaky"') :].split("</tr>")[0]
    assert '<td class="num">2</td>' in row
    assert 'id="step-graph"' in html and 'id="step-durations"' in html
    status, api = get_json(ui.url + f"/api/pipelines/{first.id}")
    assert status == 200 and api == graph


def test_cache_hits_name_the_run_they_came_from(piped):
    ui, _, first, again, _ = piped
    status, html = _html(ui.url + f"/pipelines/{again.id}")
    assert status == 200
    graph = _data(html)
    assert all(s["cached"] and s["source_run"] == first.id for s in graph["steps"])
    assert "4 of 4 steps reused a stored output" in html
    table = html[html.index('id="steps-table"') :]
    assert table.count(f'href="/pipelines/{first.id}"') == 4


def test_a_failed_run_shows_its_error_as_text(piped):
    ui, _, _, _, broken = piped
    status, html = _html(ui.url + f"/pipelines/{broken.id}")
    assert status == 200
    graph = _data(html)
    status_of = {s["name"]: s["status"] for s in graph["steps"]}
    assert status_of == {"ingest": "cached", "check": "failed", "later": "pending"}
    assert 'id="run-failure"' in html and "step check failed" in html
    check = next(s for s in graph["steps"] if s["name"] == "check")
    assert XSS in check["error"]  # the error is there, as data
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is not there yet" in html


def test_unknown_runs_are_404_naming_them(piped):
    ui, *_ = piped
    for rid in ("0123456789abcdef", "nosuchrun", urllib.parse.quote("<img src=x>", safe="")):
        status, html = _html(ui.url + f"/pipelines/{rid}")
        assert status == 404 and "no pipeline run" in html and "<img" not in html
        status, err = get_json(ui.url + f"/api/pipelines/{rid}")
        assert status == 404 and err["error"]["code"] == "not_found"
    status, html = _html(ui.url + "/pipelines/0123456789abcdef")
    assert "0123456789abcdef" in html
    status, html = _html(ui.url + "/pipelines/" + urllib.parse.quote(XSS, safe=""))
    assert status == 404 and "<script>alert" not in html  # its '/' makes it no page at all


def test_bad_parameters_are_400_naming_them(piped):
    ui, *_ = piped
    for query, name in (
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("pipeline=" + urllib.parse.quote(XSS), "pipeline"),
    ):
        status, html = _html(ui.url + "/pipelines?" + query)
        assert status == 400 and f"{name}:" in html and "<script>alert" not in html, query
        status, err = get_json(ui.url + "/api/pipelines?" + query)
        assert status == 400 and err["error"]["message"].startswith(name + ":"), query
