"""keel ui over real HTTP on 127.0.0.1 and a real store: paging and sorting, escaping and
the security headers, 404s without traces, the live event stream, the bind and host
rules, API keys and CSRF, and reading while training writes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import pytest

from keel.errors import InvalidInput
from keel.train import start_run
from keel.ui import start
from keel.ui._filter import parse_field
from tests.ui._ui_helpers import XSS, all_runs, get, get_json, make_runs, q, value_of


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with 40 varied runs, one named with markup (with an artifact and lineage),
    served by keel ui."""
    from keel import registry
    from keel.store import Store

    root = tmp_path_factory.mktemp("ui-api")
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    ids = make_runs(store, 40)
    run = start_run(store, "escaping", tags={"name": XSS, "note": XSS})
    run.log_params({"model": '"><img src=x onerror=alert(2)>'})
    run.log_metrics({"loss": 0.5}, step=0)
    run.log_metrics({"loss": 0.25}, step=1)
    run.log_artifact("plots/roc curve.txt", b"the bytes\n")
    data_sha = store.blobs.put_bytes(b"a data set")
    run.add_input("dataset", data_sha, "train")
    run.end()
    registry.register(
        store,
        "xss-model",
        artifact_sha=store.blobs.put_bytes(b"not a model"),
        flavor="sklearn",
        task="classification",
        input_schema=[],
        output_schema={},
        run_id=run.id,
    )
    with start(store, poll_s=0.05) as ui:
        yield ui, store, ids, run.id
    store.close()


# -- paging and sorting -------------------------------------------------------------------


def _order(runs: list[dict], field_name: str, descending: bool) -> list[str]:
    """The order the API promises: runs lacking the field last, a param's numbers before its
    texts, ties by newest first, then by id."""
    field = parse_field(field_name)
    runs = sorted(runs, key=lambda r: r["id"])
    runs = sorted(runs, key=lambda r: r["created_at"], reverse=True)
    if field.kind == "params":
        texts = sorted(
            (r for r in runs if value_of(r, field, "text") is not None),
            key=lambda r: value_of(r, field, "text"),
            reverse=descending,
        )
        nums = [r for r in texts if value_of(r, field, "number") is not None]
        nums = sorted(nums, key=lambda r: value_of(r, field, "number"), reverse=descending)
        others = [r for r in texts if value_of(r, field, "number") is None]
        present = nums + others
    else:
        present = sorted(
            (r for r in runs if value_of(r, field, "any") is not None),
            key=lambda r: value_of(r, field, "any"),
            reverse=descending,
        )
    seen = {r["id"] for r in present}
    return [r["id"] for r in present] + [r["id"] for r in runs if r["id"] not in seen]


SORTS = [
    "-created_at",
    "created_at",
    "-metrics.roc_auc",
    "metrics.roc_auc",
    "metrics.`val loss`",
    "-params.lr",
    "params.lr",
    "params.depth",
    "-params.model",
    "tags.kind",
    "-name",
    "status",
    "-seed",
]


@pytest.mark.parametrize("sort", SORTS)
def test_pages_concatenate_to_the_whole_sorted_list(served, sort):
    ui, store, _, _ = served
    runs = all_runs(store)
    want = _order(runs, sort.lstrip("-"), sort.startswith("-"))
    got, offset = [], 0
    while True:
        status, page = get_json(f"{ui.url}/api/runs?{q(sort=sort, limit=7, offset=offset)}")
        assert status == 200, page
        assert page["total"] == len(runs)
        got += [r["id"] for r in page["rows"]]
        if len(page["rows"]) < 7:
            break
        offset += 7
    assert got == want


def test_python_sort_ties_hold_for_equal_values(served):
    # equal values keep the newest-first order: the sort is total, so pages never overlap
    ui, store, _, _ = served
    status, page = get_json(f"{ui.url}/api/runs?{q(sort='status', limit=500)}")
    ids = [r["id"] for r in page["rows"]]
    assert len(ids) == len(set(ids)) == page["total"]


def test_filter_and_experiment_narrow_the_total(served):
    ui, store, _, _ = served
    runs = all_runs(store)
    n_a = sum(r["experiment"] == "exp-a" for r in runs)
    _, page = get_json(f"{ui.url}/api/runs?{q(experiment='exp-a', limit=3)}")
    assert page["total"] == n_a and len(page["rows"]) == 3
    failed = q(experiment="exp-a", filter='status = "failed"', limit=500)
    _, page = get_json(f"{ui.url}/api/runs?{failed}")
    assert page["total"] == sum(
        r["experiment"] == "exp-a" and r["status"] == "failed" for r in runs
    )


def test_chosen_columns_come_back_in_order_with_their_values(served):
    ui, store, ids, _ = served
    cols = "metrics.roc_auc,params.model,tags.kind,name,metrics.`val loss`,params.absent"
    _, page = get_json(f"{ui.url}/api/runs?{q(cols=cols, sort='seed', limit=500)}")
    names = [c["name"] for c in page["columns"]]
    assert names == [
        "metrics.roc_auc",
        "params.model",
        "tags.kind",
        "name",
        "metrics.`val loss`",
        "params.absent",
    ]
    by_id = {r["id"]: r for r in all_runs(store)}
    for row in page["rows"]:
        run = by_id[row["id"]]
        roc, model, kind, name, val_loss, absent = row["cells"]
        assert roc == run["metrics"].get("roc_auc")
        assert model == run["params"].get("model")
        assert kind == run["tags"].get("kind")
        assert name == run["tags"].get("name")
        assert val_loss == run["metrics"].get("val loss")
        assert absent is None


def test_default_columns_are_attributes_then_the_page_runs_metrics_and_params(served):
    ui, _, _, _ = served
    _, page = get_json(f"{ui.url}/api/runs?{q(experiment='exp-b')}")
    names = [c["name"] for c in page["columns"]]
    assert names[:5] == ["name", "experiment", "status", "created_at", "wall_time"]
    assert "metrics.roc_auc" in names and "params.model" in names
    assert "metrics.`val loss`" in names


@pytest.mark.parametrize(
    "params,where",
    [
        ({"filter": "metrics.roc_auc >> 0.9"}, (17, ">>")),
        ({"sort": "-bogus"}, (2, "bogus")),
        ({"cols": "name,params.,status"}, (6, "params.")),
    ],
)
def test_bad_filter_sort_or_columns_are_400_naming_position_and_token(served, params, where):
    ui, _, _, _ = served
    status, body = get_json(f"{ui.url}/api/runs?{q(**params)}")
    assert status == 400
    err = body["error"]
    assert err["code"] == "invalid_filter"
    assert (err["position"], err["token"]) == where
    assert str(where[0]) in err["message"]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "x"}, {"offset": "-1"}])
def test_bad_paging_is_400_naming_the_parameter(served, params):
    ui, _, _, _ = served
    status, body = get_json(f"{ui.url}/api/runs?{q(**params)}")
    assert status == 400 and body["error"]["code"] == "invalid_input"
    assert next(iter(params)) in body["error"]["message"]


def test_the_runs_page_shows_a_bad_filter_inline(served):
    ui, _, _, _ = served
    status, _, body = get(f"{ui.url}/runs?{q(filter='metrics.x > ')}")
    text = body.decode()
    assert status == 200
    assert 'id="filter-error"' in text and "position 13" in text
    assert 'value="metrics.x &gt;"' in text or 'value="metrics.x &gt; "' in text


# -- escaping and headers -------------------------------------------------------------------


def _pages(ui: Any, run_id: str, ids: list[str]) -> list[str]:
    return [
        "/runs",
        f"/runs?{q(experiment='escaping')}",
        f"/runs?{q(filter=XSS)}",
        f"/runs/{run_id}",
        f"/compare?runs={run_id},{ids[0]}",
        "/compare",
        "/models",
        f"/runs/{XSS}",
    ]


def test_markup_in_names_params_and_tags_is_escaped_in_every_page(served):
    ui, _, ids, run_id = served
    for path in _pages(ui, run_id, ids):
        _, headers, body = get(ui.url + urllib.request.quote(path, safe="/?=&,"))
        text = body.decode()
        assert headers["content-type"].startswith("text/html")
        assert "<script>alert(1)" not in text, path
        assert "<img src=x" not in text, path
        # the only script elements are ours: external files and the inert JSON block
        for chunk in text.split("<script")[1:]:
            assert chunk.startswith((' src="/static/', ' type="application/json"')), (path, chunk)
    _, _, body = get(f"{ui.url}/runs/{run_id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body.decode()
    assert "onerror=alert(2)" in body.decode()  # shown, as text


def test_the_json_block_cannot_be_closed_by_data(served):
    ui, _, _, run_id = served
    _, _, body = get(f"{ui.url}/runs?{q(experiment='escaping')}")
    text = body.decode()
    block = text.split('<script type="application/json" id="keel-data">', 1)[1]
    block = block.split("</script>", 1)[0]
    assert "<" not in block and ">" not in block
    data = json.loads(block)
    assert data["first"]["rows"][0]["name"] == XSS


@pytest.mark.parametrize(
    "path", ["/runs", "/api/runs", "/static/keel.js", "/nope", "/api/nope", "/compare"]
)
def test_every_answer_has_a_strict_csp_and_the_security_headers(served, path):
    ui, _, _, _ = served
    _, headers, _ = get(ui.url + path)
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_pages_use_only_scripts_and_styles_shipped_in_the_package(served):
    ui, _, ids, run_id = served
    import re

    for path in ["/runs", f"/runs/{run_id}", f"/compare?runs={run_id},{ids[0]}"]:
        _, _, body = get(ui.url + path)
        text = body.decode()
        refs = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|svg)[^"]*)"', text)
        assert refs and all(r.startswith("/static/") for r in refs), refs
        for ref in refs:
            status, headers, data = get(ui.url + ref.replace("&amp;", "&"))
            assert status == 200 and data, ref
            assert "immutable" in headers["cache-control"]
        assert "http://" not in text.replace(ui.url, "") and "https://" not in text


def test_vendored_uplot_ships_with_its_licence(served):
    ui, _, _, _ = served
    status, _, body = get(ui.url + "/static/vendor/uPlot.LICENSE")
    assert status == 200 and b"MIT" in body
    status, headers, body = get(ui.url + "/static/vendor/uPlot.iife.min.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")


# -- 404s and errors ------------------------------------------------------------------------


def _clean(body: bytes, *secrets: str) -> None:
    text = body.decode()
    assert "Traceback" not in text and "site-packages" not in text and 'File "' not in text
    for s in secrets:
        assert s not in text


@pytest.mark.parametrize(
    "path,what",
    [
        ("/runs/0000nosuchrun0000", "0000nosuchrun0000"),
        ("/no/such/page", "/no/such/page"),
        ("/compare?runs=0000nosuch,1111nosuch", "0000nosuch"),
    ],
)
def test_unknown_pages_are_html_404s_saying_what_was_not_found(served, path, what, tmp_path):
    ui, store, _, _ = served
    status, headers, body = get(ui.url + path)
    assert status == 404
    assert headers["content-type"].startswith("text/html")
    assert what in body.decode()
    assert 'nav aria-label="main"' in body.decode()
    _clean(body, str(store.blobs.root))


@pytest.mark.parametrize(
    "path,what",
    [
        ("/api/runs/0000nosuchrun0000", "0000nosuchrun0000"),
        ("/api/runs/0000nosuchrun0000/metrics", "0000nosuchrun0000"),
        ("/api/runs/0000nosuchrun0000/events", "0000nosuchrun0000"),
        ("/api/nope", "/api/nope"),
        ("/static/nope.js", "nope.js"),
    ],
)
def test_unknown_api_routes_are_json_404s(served, path, what):
    ui, store, _, _ = served
    status, headers, body = get(ui.url + path)
    assert status == 404
    if path.startswith("/api"):
        err = json.loads(body)["error"]
        assert err["code"] == "not_found" and what in err["message"] and err["request_id"]
    assert what in body.decode()
    _clean(body, str(store.blobs.root))


def test_an_unknown_artifact_is_a_404_and_a_known_one_downloads(served):
    ui, _, _, run_id = served
    status, body = get_json(f"{ui.url}/api/runs/{run_id}/artifact?{q(name='nope')}")
    assert status == 404 and "nope" in body["error"]["message"]
    status, headers, data = get(
        f"{ui.url}/api/runs/{run_id}/artifact?{q(name='plots/roc curve.txt')}"
    )
    assert status == 200 and data == b"the bytes\n"
    assert headers["content-disposition"].startswith("attachment")
    assert headers["content-type"] == "application/octet-stream"


def test_a_wrong_method_is_405(served):
    ui, _, _, _ = served
    req = urllib.request.Request(ui.url + "/api/runs", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 405


def test_an_unexpected_failure_is_a_500_with_only_a_request_id(served, monkeypatch):
    ui, store, _, _ = served
    from keel.ui import _runs

    def boom(*a, **k):
        raise RuntimeError(f"secret detail at {store.blobs.root}")

    monkeypatch.setattr(_runs, "runs_page", boom)
    status, headers, body = get(ui.url + "/api/runs")
    assert status == 500
    err = json.loads(body)["error"]
    assert err["code"] == "internal" and err["request_id"] == headers["x-request-id"]
    _clean(body, "secret detail", str(store.blobs.root))


# -- the run page's data -------------------------------------------------------------------


def test_run_api_has_params_metrics_artifacts_and_environment(served):
    ui, _, _, run_id = served
    status, run = get_json(f"{ui.url}/api/runs/{run_id[:10]}")  # a unique prefix will do
    assert status == 200 and run["id"] == run_id
    assert run["name"] == XSS and run["params"]["model"].startswith('"><img')
    assert run["metrics"] == {"loss": 0.25} and run["metric_counts"] == {"loss": 2}
    assert run["artifacts"][0]["name"] == "plots/roc curve.txt"
    assert "python" in run["env"]


def test_metric_histories_come_as_typed_columns(served):
    ui, _, ids, run_id = served
    _, body = get_json(f"{ui.url}/api/runs/{run_id}/metrics?keys=loss")
    assert body["metrics"] == {"loss": {"steps": [0, 1], "values": [0.5, 0.25]}}


def test_a_hundred_thousand_points_come_back_as_two_arrays(tmp_path):
    from keel.store import Store, _tables

    store = Store.open(f"sqlite:///{tmp_path}/s.db", tmp_path / "blobs")
    run = start_run(store, "big")
    n = 100_000
    rows = [
        {"run_id": run.id, "key": "loss", "value": 1.0 / (i + 1), "step": i, "ts": 0.0}
        for i in range(n)
    ]
    store.append(_tables.metrics, rows)
    run.end()
    with start(store) as ui:
        t0 = time.perf_counter()
        _, body = get_json(f"{ui.url}/api/runs/{run.id}/metrics?keys=loss")
        seconds = time.perf_counter() - t0
    h = body["metrics"]["loss"]
    assert len(h["steps"]) == len(h["values"]) == n
    assert h["steps"][:3] == [0, 1, 2] and h["values"][-1] == 1.0 / n
    assert seconds < 10  # generous: the machine is shared; the point is the shape
    store.close()


def test_lineage_runs_from_data_set_to_run_to_model_version(served):
    ui, _, _, run_id = served
    _, graph = get_json(f"{ui.url}/api/runs/{run_id}/lineage")
    kinds = {n["kind"]: n for n in graph["nodes"]}
    assert set(kinds) >= {"dataset", "run", "model"}
    assert kinds["dataset"]["depth"] < kinds["run"]["depth"] < kinds["model"]["depth"]
    assert kinds["model"]["label"] == "xss-model/1"
    pairs = {(e["from"].split(":")[0], e["to"].split(":")[0]) for e in graph["edges"]}
    assert ("dataset", "run") in pairs and ("run", "model") in pairs


def test_compare_api_and_curves(served):
    ui, store, ids, _ = served
    _, body = get_json(f"{ui.url}/api/compare?runs={ids[0]},{ids[1]},{ids[2]}")
    assert [r["id"] for r in body["runs"]] == ids[:3]
    runs = {r["id"]: r for r in body["runs"]}
    for k in body["param_keys"]:
        values = {json.dumps(runs[i]["params"].get(k)) for i in ids[:3]}
        assert (k in body["differing"]) == (len(values) > 1)
    _, curves = get_json(f"{ui.url}/api/compare/curves?{q(runs=','.join(ids[:3]), key='loss')}")
    assert [c["id"] for c in curves["runs"]] == ids[:3]
    assert all(len(c["steps"]) == len(c["values"]) >= 1 for c in curves["runs"])


@pytest.mark.parametrize("n", [1, 101])
def test_compare_takes_two_to_a_hundred_runs(served, n):
    ui, _, ids, _ = served
    runs = ",".join((ids * 3)[:1] if n == 1 else [f"{i:032x}" for i in range(n)])
    status, body = get_json(f"{ui.url}/api/compare?runs={runs}")
    assert status == 400 and "100" in body["error"]["message"]


# -- live updates ----------------------------------------------------------------------------


def _read_events(url: str, out: list, done: threading.Event) -> None:
    with urllib.request.urlopen(url, timeout=30) as resp:
        out.append(("headers", {k.lower(): v for k, v in resp.headers.items()}))
        event: dict[str, str] = {}
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event:  # a bare "retry:" block is no event
                    out.append((event.get("event"), event.get("data")))
                event = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            event[name] = value
    done.set()


def test_the_event_stream_delivers_a_point_logged_after_connecting_and_ends(served):
    ui, store, _, _ = served
    run = start_run(store, "live", tags={"name": "live"})
    run.log_metrics({"loss": 1.0}, step=0)
    events: list = []
    done = threading.Event()
    reader = threading.Thread(
        target=_read_events, args=(f"{ui.url}/api/runs/{run.id}/events", events, done)
    )
    reader.start()
    deadline = time.monotonic() + 10
    while not any(e[0] == "status" for e in events) and time.monotonic() < deadline:
        time.sleep(0.02)
    run.log_metrics({"loss": 0.5, "acc": 0.7}, step=1)
    deadline = time.monotonic() + 10
    while not any(e[0] == "metrics" for e in events) and time.monotonic() < deadline:
        time.sleep(0.02)
    run.end()
    assert done.wait(10), "the stream ends once the run does"
    reader.join(5)
    assert events[0][1]["content-type"].startswith("text/event-stream")
    kinds = [e[0] for e in events[1:]]
    assert kinds[0] == "status" and kinds[-1] == "end"
    points = [json.loads(d)["metrics"] for k, d in events if k == "metrics"]
    merged: dict = {}
    for p in points:
        for key, h in p.items():
            merged.setdefault(key, {"steps": [], "values": []})
            merged[key]["steps"] += h["steps"]
            merged[key]["values"] += h["values"]
    # only what was logged after connecting, as columns
    assert merged == {
        "loss": {"steps": [1], "values": [0.5]},
        "acc": {"steps": [1], "values": [0.7]},
    }
    statuses = [json.loads(d)["status"] for k, d in events if k == "status"]
    assert statuses == ["running", "finished"]


def test_a_stream_resumes_after_the_last_event_id(served):
    ui, store, _, _ = served
    run = start_run(store, "live")
    run.log_metrics({"loss": 1.0}, step=0)
    run.log_metrics({"loss": 0.9}, step=1)
    run.end()
    events: list = []
    done = threading.Event()
    _read_events(f"{ui.url}/api/runs/{run.id}/events?after=0", events, done)
    metrics = [json.loads(d)["metrics"] for k, d in events if k == "metrics"]
    assert metrics == [{"loss": {"steps": [0, 1], "values": [1.0, 0.9]}}]
    assert [e[0] for e in events[1:]][-1] == "end"


# -- binding, hosts, keys, CSRF -----------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_non_loopback_host_is_refused_without_keys(served, host):
    _, store, _, _ = served
    with pytest.raises(InvalidInput, match="API keys"):
        start(store, host=host)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2"])
def test_loopback_names_are_served_without_keys(served, host):
    _, store, _, _ = served
    with start(store, host=host) as ui:
        status, _, _ = get(ui.url + "/runs")
        assert status == 200


def test_a_request_for_another_host_name_is_refused(served):
    # a page elsewhere reaching 127.0.0.1 through a name it controls (DNS rebinding)
    ui, _, _, _ = served
    status, _, body = get(ui.url + "/api/runs", {"Host": "evil.example:80"})
    assert status == 421
    for host in ("localhost", f"localhost:{ui.port}", f"127.0.0.1:{ui.port}"):
        assert get(ui.url + "/api/runs", {"Host": host})[0] == 200


def test_with_keys_every_route_but_static_needs_a_key(served, tmp_path):
    import base64

    from keel.serve import KeyRing, add_key

    _, store, _, _ = served
    path = tmp_path / "keys.json"
    reader, _ = add_key(path, "reader", ["predict"])
    ring = KeyRing.from_file(path)
    with start(store, host="127.0.0.1", keys=ring) as ui:
        status, headers, _ = get(ui.url + "/runs")
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert get(ui.url + "/api/runs")[0] == 401
        assert get(ui.url + "/api/runs", {"Authorization": "Bearer keel_wrong"})[0] == 401
        assert get(ui.url + "/api/runs", {"Authorization": f"Bearer {reader}"})[0] == 200
        basic = base64.b64encode(f"anyone:{reader}".encode()).decode()
        assert get(ui.url + "/runs", {"Authorization": f"Basic {basic}"})[0] == 200
        assert get(ui.url + "/static/keel.css")[0] == 200
        # with keys any Host is answered: the key, not the name, decides
        assert (
            get(
                ui.url + "/api/runs", {"Authorization": f"Bearer {reader}", "Host": "dash.example"}
            )[0]
            == 200
        )


def test_state_changing_requests_need_same_origin_and_the_csrf_header(served):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from keel.serve._routes import Router
    from keel.ui import Route, UiApp
    from keel.ui._http import json_response

    _, store, _, _ = served
    app = UiApp(store)
    posted = []

    def echo(request):
        posted.append(1)
        return json_response({"ok": True})

    app.routes = (*app.routes, Route("POST", "/api/echo", echo, scope="admin"))
    app.router = Router(app.routes)
    app._stack = app._compose()

    def call(headers: dict[str, str]) -> int:
        sent: list = []

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/echo",
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
        # A thread of its own: the browser tests' Playwright (sync API) may hold an event loop
        # in this one when both modules run in one session.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, app(scope, receive, send)).result()
        return sent[0]["status"]

    host = {"host": "127.0.0.1:8765"}
    assert call(host) == 403
    assert call({**host, "origin": "http://evil.example"}) == 403
    assert call({**host, "origin": "http://evil.example", "x-keel-csrf": "1"}) == 403
    assert call({**host, "origin": "http://127.0.0.1:8765"}) == 403
    assert not posted
    assert call({**host, "origin": "http://127.0.0.1:8765", "x-keel-csrf": "1"}) == 200
    assert posted == [1]


# -- a store being written while it is read ------------------------------------------------


def test_the_dashboard_reads_a_store_that_training_writes_at_the_same_time(served):
    ui, store, ids, _ = served
    stop = threading.Event()
    written = [0]
    problems: list = []

    def train() -> None:
        try:
            while not stop.is_set():
                run = start_run(store, "concurrent", tags={"name": f"c{written[0]}"})
                run.log_params({"lr": 0.1, "model": "rf"})
                for step in range(20):
                    run.log_metrics({"loss": 1 / (step + 1), "roc_auc": step / 20}, step=step)
                    written[0] += 1
                run.end()
        except Exception as exc:  # pragma: no cover - reported below
            problems.append(exc)

    writer = threading.Thread(target=train)
    writer.start()
    paths = [
        "/api/runs?sort=-metrics.roc_auc&filter=" + urllib.request.quote("metrics.loss < 0.5"),
        "/api/runs?experiment=concurrent",
        f"/api/runs/{ids[0]}",
        "/runs?experiment=concurrent",
        f"/compare?runs={ids[0]},{ids[1]}",
        "/api/columns",
    ]
    try:
        deadline = time.monotonic() + 4
        n = 0
        while time.monotonic() < deadline:
            for path in paths:
                status, _, body = get(ui.url + path)
                assert status == 200, (path, body[:300])
                n += 1
            _, page = get_json(ui.url + "/api/runs?experiment=concurrent&limit=1")
            if page["rows"]:
                rid = page["rows"][0]["id"]
                for path in (f"/api/runs/{rid}/metrics", f"/runs/{rid}"):
                    status, _, body = get(ui.url + path)
                    assert status == 200, (path, body[:300])
    finally:
        stop.set()
        writer.join(30)
    assert not problems, problems
    assert written[0] > 0 and n > 0


# -- the command ---------------------------------------------------------------------------


def test_keel_ui_refuses_a_non_loopback_host_without_keys(tmp_path, capsys):
    from keel.cli import main

    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    capsys.readouterr()
    code = main(["ui", "--host", "0.0.0.0", "--port", "0", "-C", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and "API keys" in err and "keel ui --keys" in err
    code = main(["ui", "--port", "70000", "-C", str(root)])
    assert code == 2 and "--port" in capsys.readouterr().err


def test_keel_ui_is_listed_in_the_help(capsys):
    from keel.cli import main

    assert main(["ui", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "--keys" in out


def test_every_static_file_is_declared_as_package_data():
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["keel"]
    static = root / "src" / "keel" / "ui" / "static"
    files = [
        p.relative_to(root / "src" / "keel").as_posix() for p in static.rglob("*") if p.is_file()
    ]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) for pat in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
