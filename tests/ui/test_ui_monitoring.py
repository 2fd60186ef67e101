"""The Monitoring page over real HTTP: a model's logged traffic (a calm stretch, then one
with age shifted by 25 years, labelled, some rows whose sensitive column is markup), two
monitoring passes that fire an alert to a file (delivered) and a webhook (refused) and
start a pipeline; the page's heat map, performance and fairness come from that log, the
alerts show each delivery, and unknowns and bad parameters are answered 404 and 400."""

from __future__ import annotations

import json
import re
import urllib.parse

import pandas as pd
import pytest
import yaml

from keel import project as keel_project
from keel import registry
from keel.data import ingest
from keel.datasets import adult
from keel.monitor import alert_history, monitor, monitor_passes, timeline
from keel.serve import PredictionLog, ingest_labels
from keel.train import train
from keel.ui import start as start_ui
from tests.monitor.test_monitor_run import _entries
from tests.ui._ui_helpers import XSS, get, get_json

N = 300
T0, T1 = 1_000_000.0, 2_000_000.0
SECRET_ENV = "KEEL_TEST_UI_WEBHOOK_SECRET"


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv(SECRET_ENV, "not-a-real-secret")
    root = tmp_path_factory.mktemp("ui-monitor") / "proj"
    keel_project.init(root, name="m").close()
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["audit"] = {"sensitive": ["sex"]}
    settings["monitor"] = {
        "allow_hosts": ["127.0.0.1:9"],
        "notifiers": {
            "ops-file": {"type": "file", "path": str(root / "alerts.jsonl")},
            "pager": {  # nothing listens on port 9: every delivery fails
                "type": "webhook",
                "url": "http://127.0.0.1:9/hook",
                "secret_env": SECRET_ENV,
                "attempts": 1,
                "timeout_s": 1,
            },
        },
        "alerts": [
            {
                "name": "input-drift",
                "condition": "drift.share > 0.1",
                "notify": ["ops-file", "pager"],
                "pipeline": "retrain.yaml",
            }
        ],
    }
    cfg.write_text(yaml.safe_dump(settings))
    (root / "retrain.yaml").write_text(
        "name: retrain\n"
        "steps:\n"
        "  - {name: hello, kind: python, function: 'tests.pipeline.steps:flaky',\n"
        f"     params: {{counter: '{root / 'calls'}', fail_times: 0}}}}\n"
    )
    proj = keel_project.open_project(root)
    store = proj.store
    df = adult("train").sample(2000, random_state=0)
    df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    mv = train(store, "adult", "income", params={"n_estimators": 20}, seed=0).register(
        store, "adult"
    )
    registry.set_alias(store, mv.ref, "production")
    model = registry.load(store, mv.ref)
    test = adult("test").sample(2 * N, random_state=1).reset_index(drop=True)
    calm, shifted = test.iloc[:N].copy(), test.iloc[N:].copy()
    shifted["age"] = shifted["age"] + 25
    calm_entries = _entries(model, calm, mv.version, 0, T0)
    for e in calm_entries[:40]:
        e["inputs"]["sex"] = XSS
    with PredictionLog(store) as log:
        log.record(calm_entries)
        log.record(_entries(model, shifted, mv.version, N, T1))
    truth = list(calm["income"]) + list(shifted["income"])
    pd.DataFrame({"request_id": [f"r{i}" for i in range(2 * N)], "y": truth}).to_csv(
        root / "labels.csv", index=False
    )
    ingest_labels(store, root / "labels.csv", label_col="y")
    monitor(store, "adult", until=T1, min_labels=50)
    monitor(store, "adult", since=T1, min_labels=50)
    with start_ui(proj) as ui:
        yield ui, proj
    proj.close()
    mp.undo()


def _html(url: str) -> tuple[int, str]:
    status, _, body = get(url)
    return status, body.decode()


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="keel-data">(.*?)</script>', html, re.S)
    assert m, "the page has no data block"
    return json.loads(m.group(1))


def test_the_alert_fired_once_with_one_delivery_ok_and_one_failed(watched):
    _, proj = watched
    (alert,) = alert_history(proj.store, "adult")
    assert alert["rule"] == "input-drift"
    by = {d["notifier"]: d for d in alert["deliveries"]}
    assert by["ops-file"]["ok"] and not by["pager"]["ok"]
    assert "Connection" in by["pager"]["error"] and by["pager"]["attempts"] == 1
    (started,) = alert["triggered"]
    assert started["pipeline"] == "retrain.yaml" and started["status"] == "succeeded"
    assert len(monitor_passes(proj.store, "adult")) == 2


def test_index_lists_the_model_with_its_alerts(watched):
    ui, _ = watched
    status, html = _html(ui.url + "/monitoring")
    assert status == 200 and 'href="/monitoring/adult"' in html
    row = html[html.index('href="/monitoring/adult"') :].split("</tr>")[0]
    assert "input-drift" in row and '<td class="num bad">1</td>' in row
    status, api = get_json(ui.url + "/api/monitoring")
    (m,) = api["models"]
    assert m["alerts"] == 1 and m["failed_deliveries"] == 1 and m["rows"] == 2 * N


def test_windows_of_drift_performance_and_fairness_come_from_the_log(watched):
    ui, proj = watched
    status, html = _html(ui.url + "/monitoring/adult?windows=4&min_labels=50")
    assert status == 200
    tl = _data(html)["timeline"]
    expected = timeline(proj.store, "adult", windows=4, min_labels=50)
    assert tl == json.loads(json.dumps(expected))
    first, *middle, last = tl["windows"]
    assert first["rows"] == N and last["rows"] == N and all(w["rows"] == 0 for w in middle)
    assert not first["drift"]["features"]["age"]["drift"]
    assert last["drift"]["features"]["age"]["drift"] and last["drift"]["share"] > 0.1
    assert first["performance"]["status"] == "ok" and first["performance"]["labeled"] == N
    assert first["fairness"]["sex"]["demographic_parity_difference"]["value"] >= 0
    # the tables beside the pictures say the same
    table = html[html.index('id="drift-table"') :].split("</table>")[0]
    age = table[table.index(">age</th>") :].split("</tr>")[0]
    assert age.count(" drift</td>") == 1 and age.count("—") == 2
    perf = html[html.index('id="performance-table"') :].split("</table>")[0]
    accuracy = first["performance"]["accuracy"]["value"]
    assert f"{accuracy:.4g}" in perf
    fair = html[html.index('id="fairness-table"') :].split("</table>")[0]
    dpd = first["fairness"]["sex"]["demographic_parity_difference"]["value"]
    assert f"{dpd:.4g}" in fair


def test_too_few_labels_says_so(watched):
    ui, _ = watched
    status, html = _html(ui.url + "/monitoring/adult?windows=2&min_labels=100000")
    assert status == 200 and "too few labels (300 of 100000)" in html
    tl = _data(html)["timeline"]
    assert all(w["performance"]["status"] == "too_few_labels" for w in tl["windows"])


def test_alerts_show_each_delivery_and_the_pipeline_started(watched):
    ui, proj = watched
    status, html = _html(ui.url + "/monitoring/adult")
    assert status == 200
    alerts = html[html.index('id="alerts-table"') :].split("</table>")[0]
    assert 'class="ok" data-notifier="ops-file">ops-file: delivered' in alerts
    assert 'class="bad" data-notifier="pager">pager: failed after 1 attempt(s)' in alerts
    (alert,) = alert_history(proj.store, "adult")
    run = alert["triggered"][0]["run"]
    assert f'href="/pipelines/{run}"' in alerts
    passes = html[html.index('id="passes-table"') :].split("</table>")[0]
    assert passes.split("<tbody>")[1].count("<tr>") == 2
    status, api = get_json(ui.url + "/api/monitoring/adult/alerts")
    assert status == 200 and api["alerts"] == json.loads(
        json.dumps(alert_history(proj.store, "adult"))
    )
    status, api = get_json(ui.url + "/api/monitoring/adult/passes?limit=1")
    assert status == 200 and len(api["passes"]) == 1


def test_markup_in_logged_inputs_stays_text(watched):
    ui, _ = watched
    status, html = _html(ui.url + "/monitoring/adult?windows=2&min_labels=50")
    assert status == 200
    tl = _data(html)["timeline"]
    groups = {g["key"] for g in tl["windows"][0]["fairness"]["sex"]["groups"]}
    assert XSS in groups  # the group is there, as data
    assert "<script>alert" not in html  # and nowhere as markup


def test_bad_parameters_are_400_naming_them(watched):
    ui, _ = watched
    for query, name in (
        ("windows=0", "windows"),
        ("windows=abc", "windows"),
        ("windows=49", "windows"),
        ("min_labels=-1", "min_labels"),
        ("window=soon", "window"),
        ("window=" + urllib.parse.quote(XSS), "window"),
    ):
        status, html = _html(ui.url + "/monitoring/adult?" + query)
        assert status == 400 and f"{name}:" in html and "<script>alert" not in html, query
        status, err = get_json(ui.url + "/api/monitoring/adult/timeline?" + query)
        assert status == 400 and err["error"]["message"].startswith(name + ":"), query


def test_unknown_model_is_404_naming_it(watched):
    ui, _ = watched
    for path in ("/monitoring/no-such-model", "/api/monitoring/no-such-model/alerts"):
        status, _, body = get(ui.url + path)
        assert status == 404 and b"no-such-model" in body, path
