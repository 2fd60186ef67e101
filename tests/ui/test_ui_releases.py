"""The Releases page over real HTTP: a model served on 127.0.0.1 as production 50 /
candidate 50 with a shadow, its answers logged and partly labelled; the page's traffic,
comparison, live server counters and prediction log come from that store and server, a
request id leads back to the CSV the model was trained on, and unknowns and bad
parameters are answered 404 and 400 naming them."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse

import pandas as pd
import pytest
import yaml

from keel import project as keel_project
from keel.data import ingest
from keel.serve import (
    PredictionLog,
    Release,
    check_server_url,
    comparison,
    find_predictions,
    ingest_labels,
    start,
    traffic,
)
from keel.ui import start as start_ui
from tests.serve._support import TIMEOUT, adult_store, records, train_lgb
from tests.ui._ui_helpers import XSS, get, get_json

N = 60


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A project whose ``adult`` served N one-row requests (production 50 / candidate 50,
    shadow challenger), one of them with markup in a text input, labels for the first
    half, a running keel server and keel ui over the project."""
    root = tmp_path_factory.mktemp("releases")
    proj_root = root / "proj"
    keel_project.init(proj_root, name="releases").close()
    cfg = proj_root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["ui"] = {"servers": ["http://192.0.2.10:9"]}
    cfg.write_text(yaml.safe_dump(settings))
    proj = keel_project.open_project(proj_root)
    store = proj.store
    _, df = adult_store(root, rows=1500)
    ingest(store, root / "adult.csv", name="adult")
    train_lgb(store, "adult")
    train_lgb(store, "adult", alias="candidate", n_estimators=5, num_leaves=4)
    train_lgb(store, "adult", alias="challenger", n_estimators=10, num_leaves=7)
    release = Release("adult", {"production": 50, "candidate": 50}, shadow="challenger", seed=1)
    answers = []
    log = PredictionLog(store, flush_seconds=0.2)
    server = start(store, [release], sink=log)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    for i in range(N):
        row = records(df, 1, start=i)
        if i == 7:
            row[0]["workclass"] = XSS
        body = json.dumps({"rows": row}).encode()
        headers = {"x-keel-key": f"k{i}", "Content-Type": "application/json"}
        conn.request("POST", "/models/adult/predict", body, headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        answers.append(answer)
    conn.request(
        "POST",
        "/models/adult/predict",
        b'{"rows": "not rows"}',
        {"Content-Type": "application/json"},
    )
    bad = conn.getresponse()
    bad.read()
    assert bad.status >= 400
    conn.close()
    slot = server.app.slots["adult"]
    for _ in range(600):  # the shadow's copies finish after the answers
        info = slot.describe()["shadow"]
        if info["ok"] + info["failed"] >= N:
            break
        time.sleep(0.05)
    log.flush()
    truth = df["income"].astype(str).tolist()
    labels = pd.DataFrame(
        {"request_id": [a["request_id"] for a in answers[: N // 2]], "y": truth[: N // 2]}
    )
    labels.to_csv(root / "labels.csv", index=False)
    ingest_labels(store, root / "labels.csv", label_col="y")
    with start_ui(proj) as ui:
        yield ui, proj, server, answers
    server.stop()
    log.close()
    proj.close()


def _html(url: str) -> tuple[int, str]:
    status, _, body = get(url)
    return status, body.decode()


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="keel-data">(.*?)</script>', html, re.S)
    assert m, "the page has no data block"
    return json.loads(m.group(1))


def test_index_lists_the_served_model(released):
    ui, *_ = released
    status, html = _html(ui.url + "/releases")
    assert status == 200
    assert 'href="/releases/adult"' in html and "production → 1" in html
    assert 'data-testid="coming-soon"' not in html


def test_traffic_and_comparison_come_from_the_log(released):
    ui, proj, _, answers = released
    status, html = _html(ui.url + "/releases/adult")
    assert status == 200
    data = _data(html)
    expected = traffic(proj.store, "adult", buckets=30)
    assert data["traffic"] == json.loads(json.dumps(expected))
    served = {str(a["version"]) for a in answers}
    assert served <= set(data["traffic"]["versions"]) and "3" in data["traffic"]["versions"]
    total = sum(s["total"]["requests"] for v, s in expected["versions"].items() if v != "3")
    assert total == N  # live answers; the shadow (v3) answered the same requests again
    assert expected["versions"]["3"]["total"]["requests"] == N
    for v, s in expected["versions"].items():
        assert f'<tr data-version="{v}"><th scope="row">{v}</th>' in html
        assert sum(s["requests"]) == s["total"]["requests"]
    cmp = comparison(proj.store, "adult")
    assert 'id="compare-table"' in html and 'id="pairs-table"' in html
    for key, pair in cmp["pairs"].items():
        a, b = key.split(":")
        assert f"{a} (" in html and f"{pair['rows']:,}" in html
    labelled = sum(r["labeled"] for r in cmp["versions"].values())
    assert labelled >= N // 2
    status, api = get_json(ui.url + "/api/releases/adult/compare")
    assert status == 200 and api == json.loads(json.dumps(cmp))


def test_a_window_narrows_and_a_bad_window_is_400(released):
    ui, *_ = released
    status, data = get_json(ui.url + "/api/releases/adult/traffic?window=1h&buckets=12")
    assert status == 200 and data["bucket_s"] in (300, 600)
    assert sum(s["total"]["requests"] for s in data["versions"].values()) == 2 * N
    time.sleep(1.2)  # then nothing is newer than a second
    status, data = get_json(ui.url + "/api/releases/adult/traffic?window=1s&buckets=12")
    assert status == 200 and data["versions"] == {} and data["since"] > time.time() - 5
    for bad in ("yesterday", "0h", "-1h", "1w"):
        status, err = get_json(ui.url + "/api/releases/adult/traffic?window=" + bad)
        assert status == 400 and err["error"]["message"].startswith("window:"), err
    status, html = _html(ui.url + "/releases/adult?window=" + urllib.parse.quote(XSS))
    assert status == 400 and "window:" in html and XSS not in html
    status, err = get_json(ui.url + "/api/releases/adult/traffic?buckets=1")
    assert status == 400 and err["error"]["message"].startswith("buckets:")


def test_request_id_search_finds_the_answers_and_their_lineage_to_the_csv(released):
    ui, proj, _, answers = released
    answer = answers[3]
    rid = answer["request_id"]
    status, html = _html(ui.url + "/releases/adult?request_id=" + rid)
    assert status == 200 and 'id="prediction-found"' in html
    found = find_predictions(proj.store, rid, model="adult")
    assert {f["version"] for f in found} == {answer["version"], 3}  # live and shadow
    assert found[0]["label_true"] is not None  # among the labelled half
    live = next(f for f in found if f["version"] == answer["version"])
    assert live["outputs"]["label"] == answer["predictions"][0]["label"]
    assert f'href="/models/adult?version={answer["version"]}"' in html
    tree = html[html.index('id="prediction-lineage"') :]
    for kind in ("predictions", "model", "run", "dataset", "source"):
        assert f'data-kind="{kind}"' in tree, kind
    assert "adult.csv" in tree
    status, api = get_json(ui.url + f"/api/releases/adult/predictions/{rid}")
    assert status == 200 and len(api["predictions"]) == 2

    def labels(node):
        yield node["kind"], node["label"]
        for p in node["parents"]:
            yield from labels(p)

    for lineage in api["lineage"].values():
        found_kinds = dict(labels(lineage))
        assert found_kinds["source"].endswith("adult.csv")
        assert found_kinds["model"].startswith("adult/")


def test_the_index_searches_every_model(released):
    ui, _, _, answers = released
    status, html = _html(ui.url + "/releases?request_id=" + answers[0]["request_id"])
    assert status == 200 and 'id="prediction-found"' in html and 'data-kind="source"' in html


def test_unknown_and_malformed_request_ids(released):
    ui, *_ = released
    status, html = _html(ui.url + "/releases/adult?request_id=nosuchrequest")
    assert status == 200 and 'id="prediction-missing"' in html and "nosuchrequest" in html
    status, err = get_json(ui.url + "/api/releases/adult/predictions/nosuchrequest")
    assert status == 404 and "nosuchrequest" in err["error"]["message"]
    for bad in (XSS, "<img src=x onerror=alert(1)>", "a b", "x" * 129):
        q = urllib.parse.quote(bad, safe="")
        status, html = _html(ui.url + "/releases/adult?request_id=" + q)
        assert status == 400 and "request_id:" in html, bad
        assert "<script>alert" not in html and "<img" not in html
        if "/" in bad:
            continue  # no path segment holds a '/'
        status, err = get_json(ui.url + "/api/releases/adult/predictions/" + q)
        assert status == 400 and err["error"]["message"].startswith("request_id:")


def test_markup_in_logged_inputs_shows_as_text(released):
    ui, _, _, answers = released
    rid = answers[7]["request_id"]
    status, html = _html(ui.url + "/releases/adult?request_id=" + rid)
    assert status == 200
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_unknown_model_is_404_naming_it(released):
    ui, *_ = released
    for path in ("/releases/no-such-model", "/api/releases/no-such-model/traffic"):
        status, _, body = get(ui.url + path)
        assert status == 404 and b"no-such-model" in body, path


def test_a_running_server_is_read_and_polled(released):
    ui, _, server, _ = released
    q = urllib.parse.urlencode({"server": server.url})
    status, html = _html(ui.url + "/releases/adult?" + q)
    assert status == 200 and 'id="server-section"' in html
    live = _data(html)["live"]
    assert live["ok"], live
    versions = live["models"]["adult"]["versions"]
    assert sum(e["requests"] for v, e in versions.items() if v in ("1", "2")) >= N
    assert sum(e["errors"] for e in versions.values()) >= 1  # the malformed request
    assert live["models"]["adult"]["shadow"]["3"]["ok"] == N
    assert sum(live["models"]["adult"]["variants"]["production"].values()) > 0
    p50 = versions["1"]["p50_ms"]
    assert p50 is not None and 0 < p50 < 10_000
    status, again = get_json(ui.url + "/api/releases/adult/server?" + q)
    assert status == 200 and again["ok"] and again["at"] > live["at"]


def test_only_loopback_or_configured_servers_are_read(released):
    ui, *_ = released
    for bad in ("http://192.0.2.55:80", "http://example.com", "ftp://127.0.0.1:1",
                "http://127.0.0.1:1/metrics", "http://user:pw@127.0.0.1:1"):  # fmt: skip
        q = urllib.parse.urlencode({"server": bad})
        status, err = get_json(ui.url + "/api/releases/adult/server?" + q)
        assert status == 400 and err["error"]["message"].startswith("server:"), (bad, err)
        status, html = _html(ui.url + "/releases/adult?" + q)
        assert status == 400 and "server:" in html
    ok = check_server_url("http://192.0.2.10:9", ["http://192.0.2.10:9"])
    assert ok["address"] is None  # configured in keel.yaml: ui.servers
    q = urllib.parse.urlencode({"server": "http://127.0.0.1:1"})  # loopback, nothing there
    status, down = get_json(ui.url + "/api/releases/adult/server?" + q)
    assert status == 200 and not down["ok"] and "cannot read" in down["error"]
