"""The comparison report (traffic, latency, agreement, per-version metrics once labels
arrive) read from the prediction log, release files, and `keel compare`."""

from __future__ import annotations

import http.client
import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from keel import project as keel_project
from keel.cli import main
from keel.errors import InvalidInput
from keel.serve import (
    PredictionLog,
    Release,
    comparison,
    ingest_labels,
    load_releases,
    start,
)
from tests.serve._support import TIMEOUT, adult_store, records, train_lgb

N = 240


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A project whose `adult` served N single-row requests as production 50 / candidate 50
    with a shadow; the answers as the callers saw them."""
    root = tmp_path_factory.mktemp("compare")
    proj = keel_project.init(root / "proj", name="compare")
    store = proj.store
    _, df = adult_store(root, rows=1500)  # a second store only to get the same frame
    from keel.data import ingest

    ingest(store, root / "adult.csv", name="adult")
    train_lgb(store, "adult")
    train_lgb(store, "adult", alias="candidate", n_estimators=5, num_leaves=4)
    train_lgb(store, "adult", alias="challenger", n_estimators=10, num_leaves=7)
    release = Release("adult", {"production": 50, "candidate": 50}, shadow="challenger", seed=1)
    answers = []
    truth = df["income"].astype(str).tolist()
    with PredictionLog(store) as log, start(store, [release], sink=log) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        for i in range(N):
            body = json.dumps({"rows": records(df, 1, start=i)}).encode()
            headers = {"x-keel-key": f"k{i}", "Content-Type": "application/json"}
            conn.request("POST", "/models/adult/predict", body, headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200, answer
            answers.append({**answer, "truth": truth[i]})
        conn.close()
        slot = server.app.slots["adult"]
        for _ in range(600):  # the shadow's copies finish after the answers
            info = slot.describe()["shadow"]
            if info["ok"] + info["failed"] >= N:
                break
            time.sleep(0.05)
    yield proj, root, answers
    proj.close()


def _expected(answers, version):
    mine = [a for a in answers if a["version"] == version]
    labels = [a["predictions"][0]["label"] for a in mine]
    truth = [a["truth"] for a in mine]
    probs = [a["predictions"][0]["probabilities"] for a in mine]
    return mine, labels, truth, probs


def test_before_labels_versions_traffic_latency_and_agreement(served):
    proj, _, answers = served
    out = comparison(proj.store, "adult")
    assert set(out["versions"]) == {"1", "2", "3"}
    for version in (1, 2):
        mine = [a for a in answers if a["version"] == version]
        report = out["versions"][str(version)]
        assert report["requests"] == report["rows"] == len(mine) > 0
        assert report["labeled"] == 0 and report["metrics"] == {}
        lat = report["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert out["versions"]["1"]["aliases"] == ["production"]
    assert out["versions"]["3"]["aliases"] == ["challenger"]
    assert out["versions"]["3"]["rows"] == N  # the shadow saw every request
    # the shadow pairs with whichever variant answered each request
    for version in (1, 2):
        pair = out["pairs"][f"{version}:3"]
        assert pair["rows"] == out["versions"][str(version)]["rows"]
        assert 0 <= pair["agree"] <= pair["rows"]
    assert "1:2" not in out["pairs"]  # no request was answered by both live variants


def test_metrics_once_labels_arrive_match_the_callers_view(served, tmp_path):
    proj, _, answers = served
    half = answers[: N // 2]  # labels arrive for half the requests
    path = tmp_path / "labels.csv"
    pd.DataFrame(
        {"request_id": [a["request_id"] for a in half], "y": [a["truth"] for a in half]}
    ).to_csv(path, index=False)
    assert ingest_labels(proj.store, path, model="adult")["matched"] == len(half)
    out = comparison(proj.store, "adult")
    for version in (1, 2):
        mine, labels, truth, probs = _expected(half, version)
        report = out["versions"][str(version)]
        assert report["labeled"] == len(mine)
        accuracy = np.mean([a == b for a, b in zip(labels, truth, strict=True)])
        assert report["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
        y = [t == ">50K" for t in truth]
        if 0 < sum(y) < len(y):
            auc = roc_auc_score(y, [p[">50K"] for p in probs])
            assert report["metrics"]["roc_auc"] == pytest.approx(auc, abs=1e-6)
    assert out["versions"]["3"]["labeled"] == len(half)


def test_time_window(served):
    proj, _, _ = served
    everything = comparison(proj.store, "adult")
    assert comparison(proj.store, "adult", until=0.0)["versions"] == {}
    later = comparison(proj.store, "adult", since=0.0)
    assert later["versions"].keys() == everything["versions"].keys()


def test_cli_compare_json_and_table(served, capsys):
    proj, root, _ = served
    code = main(["compare", "adult", "-C", str(root / "proj"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out["versions"]) == {"1", "2", "3"}
    code = main(["compare", "adult", "-C", str(root / "proj")])
    text = capsys.readouterr().out
    assert code == 0 and "agreement" in text and "production" in text
    code = main(["compare", "adult", "--since", "yesterday", "-C", str(root / "proj")])
    err = capsys.readouterr().err
    assert code == 2 and "--since" in err and "yesterday" in err


def test_entries_of_a_regressor():
    entries = [
        {
            "request_id": "a",
            "model": "m",
            "version": 1,
            "ts": 1.0,
            "latency_ms": 2.0,
            "outputs": {"prediction": 1.0},
        },
        {
            "request_id": "a",
            "model": "m",
            "version": 2,
            "ts": 1.0,
            "latency_ms": 4.0,
            "outputs": {"prediction": 1.5},
        },
        {
            "request_id": "b",
            "model": "m",
            "version": 1,
            "ts": 2.0,
            "latency_ms": 6.0,
            "outputs": {"prediction": 3.0},
        },
        {
            "request_id": "b",
            "model": "m",
            "version": 2,
            "ts": 2.0,
            "latency_ms": 8.0,
            "outputs": {"prediction": 3.0},
        },
        {
            "request_id": "c",
            "model": "other",
            "version": 1,
            "ts": 2.0,
            "outputs": {"prediction": 9.0},
        },
    ]
    out = comparison(entries, "m")
    assert out["pairs"]["1:2"] == {
        "rows": 2,
        "agree": 1,
        "agreement": 0.5,
        "mean_abs_diff": 0.25,
    }
    assert out["versions"]["1"]["latency_ms"]["mean"] == 4.0
    assert comparison(entries, "m", since=1.5)["pairs"]["1:2"]["rows"] == 1
    with pytest.raises(InvalidInput, match="name"):
        comparison(_StoreLike(), None)


class _StoreLike:  # anything that is not a list of entries needs a model name
    pass


def test_release_file(tmp_path):
    good = tmp_path / "release.yaml"
    good.write_text(
        "releases:\n"
        "  - name: adult\n"
        "    variants: {production: 90, candidate: 10}\n"
        "    shadow: challenger\n"
        "  - name: other\n"
    )
    first, second = load_releases(good)
    assert first == Release("adult", {"production": 90, "candidate": 10}, shadow="challenger")
    assert second.variants == {"production": 100}
    single = tmp_path / "one.yaml"
    single.write_text("name: adult\nvariants: {production: 1, '3': 1}\n")
    assert load_releases(single)[0].variants == {"production": 1, "3": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "releases:\n  - name: adult\n    weights: {production: 1}\n",
            r"line 3: unknown field 'weights'",
        ),
        (
            "releases:\n  - name: adult\n    variants: {production: -1}\n",
            r"weight must be > 0, got -1",
        ),
        ("releases:\n  - variants: {production: 1}\n", r"line 2: name: required"),
        ("releases: [\n", r"not valid YAML"),
        ("releases: 3\n", r"expected a list of releases"),
        ("releases:\n  - name: a\n  - name: a\n", r"'a' is given twice"),
        ("releases:\n  - [1, 2]\n", r"line 2: expected a mapping"),
    ],
)
def test_bad_release_files_name_the_field(tmp_path, text, expected):
    path = tmp_path / "release.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=expected):
        load_releases(path)


def test_cli_serve_refuses_a_bad_release_file(tmp_path, capsys):
    root = tmp_path / "proj"
    keel_project.init(root, name="p").close()
    bad = tmp_path / "release.yaml"
    bad.write_text("name: adult\nvariants: {production: 0}\n")
    code = main(["serve", "--release", str(bad), "-C", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and "variants['production']" in err and "release.yaml" in err
    code = main(["serve", "-C", str(root)])
    assert code == 2 and "--release" in capsys.readouterr().err


def test_cli_serve_refuses_a_port_out_of_range(tmp_path, capsys):
    root = tmp_path / "proj"
    keel_project.init(root, name="p").close()
    code = main(["serve", "adult", "--port", "99999", "-C", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and "--port" in err and "99999" in err and "Traceback" not in err


def _registered(store, name, **output_schema):
    from keel import registry

    return registry.register(
        store,
        name,
        artifact_sha=store.blobs.put_bytes(f"not a model: {name}".encode()),
        flavor="sklearn",
        task="classification",
        input_schema=[{"name": "x", "type": "int"}],
        output_schema=output_schema,
    )


def _answers(store, ids, p_yes):
    with PredictionLog(store) as log:
        log.record(
            [
                {
                    "request_id": rid,
                    "model": "m",
                    "version": 1,
                    "ts": 10.0 + i,
                    "inputs": {"x": i},
                    "outputs": {
                        "label": "Yes" if p >= 0.5 else "No",
                        "probabilities": {"No": 1 - p, "Yes": p},
                    },
                }
                for i, (rid, p) in enumerate(zip(ids, p_yes, strict=True))
            ]
        )


def test_a_metric_that_cannot_be_computed_says_why(store, tmp_path):
    _registered(store, "m", classes=["No", "Yes"])
    ids = [f"r{i}" for i in range(6)]
    path = tmp_path / "early.csv"
    pd.DataFrame({"request_id": ids, "y": ["No", "Yes", "Maybe", "Yes", "No", "No"]}).to_csv(
        path, index=False
    )
    # unscoped labels of requests not logged yet have no model to be checked against
    ingest_labels(store, path)
    _answers(store, ids, [0.1, 0.8, 0.6, 0.7, 0.2, 0.4])
    report = comparison(store, "m")["versions"]["1"]
    assert report["labeled"] == 6 and report["invalid_labels"] == 1
    assert report["metrics"] == {"accuracy": pytest.approx(5 / 6)}
    why = report["missing_metrics"]
    assert set(why) == {"roc_auc", "brier"}
    assert why["roc_auc"] == (
        "1 of 6 labelled rows have a label that is no class of the model (e.g. 'Maybe'; "
        "expected 'No' or 'Yes'): ingest corrected labels"
    )


def test_one_class_of_labels_says_why_there_is_no_roc_auc(store, tmp_path):
    _registered(store, "m", classes=["No", "Yes"])
    ids = ["a", "b", "c"]
    _answers(store, ids, [0.1, 0.8, 0.3])
    path = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "y": ["No"] * 3}).to_csv(path, index=False)
    ingest_labels(store, path)
    report = comparison(store, "m")["versions"]["1"]
    assert report["invalid_labels"] == 0 and "roc_auc" not in report["metrics"]
    assert report["missing_metrics"]["brier"] == "the labelled rows hold one class only ('No')"


def test_keel_compare_prints_why_a_metric_is_missing(store, tmp_path, capsys):
    from keel.cli._serve_cmds import comparison_tables

    _registered(store, "m", classes=["No", "Yes"])
    ids = ["a", "b", "c"]
    _answers(store, ids, [0.1, 0.8, 0.3])
    path = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "y": ["No"] * 3}).to_csv(path, index=False)
    ingest_labels(store, path)
    comparison_tables(comparison(store, "m"))
    out = " ".join(capsys.readouterr().out.split())
    assert "1: no roc_auc: the labelled rows hold one class only ('No')" in out
