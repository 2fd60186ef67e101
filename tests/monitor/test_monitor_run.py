"""A monitoring pass over a served model's prediction log: drift against the training data,
performance and fairness once labels arrive (or "too few labels"), alerts, the event."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from keel import project as keel_project
from keel import registry
from keel.cli import main
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.monitor import monitor, read_window, training_dataset
from keel.serve import PredictionLog, ingest_labels
from keel.train import train

N = 800
T0, T1 = 1_000_000.0, 2_000_000.0  # two windows of logged traffic


def _entries(model, df, version, start_id, ts):
    inputs = df.drop(columns=["income"])
    proba = model.predict_proba(inputs)
    classes = ["<=50K", ">50K"]
    out = []
    for i, (row, p) in enumerate(zip(inputs.to_dict("records"), proba, strict=True)):
        row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        out.append(
            {
                "request_id": f"r{start_id + i}",
                "model": "adult",
                "version": version,
                "inputs": row,
                "ts": ts + i,
                "outputs": {
                    "label": classes[int(p[1] >= 0.5)],
                    "probabilities": dict(zip(classes, map(float, p), strict=True)),
                },
            }
        )
    return out


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor") / "proj"
    keel_project.init(root, name="m").close()
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["audit"] = {"sensitive": ["sex"]}
    settings["monitor"] = {
        "notifiers": {"file": {"type": "file", "path": str(root / "alerts.jsonl")}},
        "alerts": [
            {
                "name": "input-drift",
                "condition": "drift.features.age.drift > 0.5",
                "notify": ["file"],
                "pipeline": "retrain.yaml",
            }
        ],
    }
    cfg.write_text(yaml.safe_dump(settings))
    (root / "retrain.yaml").write_text(
        "name: retrain\n"
        "steps:\n"
        "  - {name: ingest, kind: ingest, params: {path: adult.csv, name: adult-recent}}\n"
        "  - {name: train, kind: train, inputs: [ingest],\n"
        "     params: {target: income, params: {n_estimators: 20}, register: adult}}\n"
        "  - {name: release, kind: release, inputs: [train], params: {alias: candidate}}\n"
    )
    proj = keel_project.open_project(root)
    store = proj.store
    train_df = adult("train").sample(3000, random_state=0)
    train_df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    mv = train(store, "adult", "income", params={"n_estimators": 30}, seed=0).register(
        store, "adult"
    )
    registry.set_alias(store, mv.ref, "production")
    model = registry.load(store, mv.ref)
    test = adult("test").sample(2 * N, random_state=1).reset_index(drop=True)
    calm, shifted = test.iloc[:N].copy(), test.iloc[N:].copy()
    shifted["age"] = shifted["age"] + 25
    shifted["hours-per-week"] = shifted["hours-per-week"] * 1.6
    with PredictionLog(store) as log:
        log.record(_entries(model, calm, mv.version, 0, T0))
        log.record(_entries(model, shifted, mv.version, N, T1))
    labels = pd.DataFrame({"request_id": [f"r{i}" for i in range(N)], "y": calm["income"]})
    labels.to_csv(root / "labels.csv", index=False)
    ingest_labels(store, root / "labels.csv", label_col="y")
    yield proj, root, mv, calm
    proj.close()


def test_a_calm_window_with_labels(watched):
    proj, _, mv, calm = watched
    res = monitor(proj.store, "adult", until=T1, min_labels=100)
    v = res.values
    assert res.window["rows"] == N and res.window["labeled"] == N
    assert not v["drift"]["features"]["age"]["drift"]
    assert not v["prediction_drift"]["score"]["drift"]
    # 14 tests at p < 0.05 on two samples of real data: a chance flag or two, not more
    assert v["drift"]["share"] <= 0.25 and res.alerts == []
    perf = v["performance"]
    window = read_window(proj.store, "adult", until=T1)
    expected = float((window.outputs["label"] == window.outputs["label_true"]).mean())
    assert perf["status"] == "ok" and perf["labeled"] == N
    assert perf["accuracy"]["value"] == pytest.approx(expected, abs=1e-12)
    assert v["fairness"]["sex"]["demographic_parity_difference"]["value"] >= 0
    assert proj.store.events("monitor")[-1]["payload"]["values"]["window.rows"] == N


def test_a_shifted_window_drifts_alerts_once_and_says_too_few_labels(watched):
    proj, root, _, _ = watched
    res = monitor(proj.store, "adult", since=T1, min_labels=100, now=T1 + 10)
    drift = res.values["drift"]
    assert drift["features"]["age"]["drift"] and drift["features"]["hours-per-week"]["drift"]
    assert not drift["features"]["education"]["drift"]
    # older applicants: the model's scores move too
    assert res.values["prediction_drift"]["score"]["drift"]
    assert res.values["performance"] == {"status": "too_few_labels", "labeled": 0, "needed": 100}
    assert [a["rule"] for a in res.alerts] == ["input-drift"]
    sent = [json.loads(line) for line in (root / "alerts.jsonl").read_text().splitlines()]
    assert sent[-1]["rule"] == "input-drift" and sent[-1]["model"] == "adult"
    # the rule's pipeline retrained and put the new version on the candidate alias
    assert [(t["rule"], t["status"]) for t in res.triggered] == [("input-drift", "succeeded")]
    candidate = registry.get_version(proj.store, "adult@candidate")
    assert candidate.version > registry.get_version(proj.store, "adult@production").version
    again = monitor(proj.store, "adult", since=T1, min_labels=100, now=T1 + 20)
    assert again.alerts == [] and again.triggered == []  # the same window alerts once
    assert len(proj.store.events("alert")) == 1


def test_training_dataset_and_bad_windows(watched):
    proj, _, mv, _ = watched
    from keel.data import get_dataset

    assert get_dataset(proj.store, training_dataset(proj.store, mv.ref)).name == "adult"
    with pytest.raises(InvalidInput, match="no logged predictions"):
        monitor(proj.store, "adult", since=T1 * 10)
    with pytest.raises(InvalidInput, match="min_labels"):
        monitor(proj.store, "adult", min_labels=0)
    with pytest.raises(InvalidInput, match="last"):
        read_window(proj.store, "adult", last=0)


def test_cli_monitor_run(watched, capsys):
    _, root, _, _ = watched
    code = main(
        [
            "monitor",
            "run",
            "adult",
            "--since",
            str(T1),
            "--min-labels",
            "100",
            "-C",
            str(root),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["values"]["drift"]["features"]["age"]["drift"]
    code = main(["monitor", "run", "adult", "--last", "300", "-C", str(root)])
    text = capsys.readouterr().out
    assert code == 0 and "drift" in text and "DRIFT" in text
    code = main(["monitor", "run", "adult", "--last", "5", "--hours", "1", "-C", str(root)])
    assert code == 2 and "one of --last" in capsys.readouterr().err
    assert np.isfinite(out["values"]["seconds"])


def test_cli_drift_between_two_datasets(tmp_path, capsys):
    from keel.datasets import write_bikeshare_csv

    root = tmp_path / "p"
    keel_project.init(root, name="bikes").close()
    paths = write_bikeshare_csv(
        tmp_path, {"winter": ["Jan", "Feb"], "spring": ["March"], "summer": ["July", "Aug"]}
    )
    with keel_project.open_project(root) as proj:
        for name, path in paths.items():
            ingest(proj.store, path, name=name)
    code = main(
        [
            "monitor",
            "drift",
            "winter",
            "summer",
            "--column",
            "temp",
            "--column",
            "hr",
            "--test",
            "temp=psi",
            "-C",
            str(root),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["drift"]["features"]["temp"]["test"] == "psi"
    assert out["drift"]["features"]["temp"]["drift"] and not out["drift"]["features"]["hr"]["drift"]
    code = main(["monitor", "drift", "winter", "summer", "--test", "temp", "-C", str(root)])
    assert code == 2 and "COLUMN=TEST" in capsys.readouterr().err


def test_the_target_is_not_an_expected_input(watched):
    """Served traffic never carries the target: it is not a missing column, and a rule on
    missing columns stays quiet on a window with every input."""
    from keel.monitor.alerts import AlertRule, evaluate
    from keel.monitor.notify import MemoryNotifier

    proj, _, mv, _ = watched
    res = monitor(proj.store, "adult", until=T1, min_labels=100, alerts=False)
    quality = res.values["quality"]
    inputs = {c["name"] for c in mv.input_schema}
    assert "income" not in inputs
    assert quality["missing_columns"] == [] and quality["n_missing_columns"] == 0
    assert "income" not in quality["columns"] and "income" not in quality["columns_with_issues"]
    assert set(quality["columns"]) == inputs
    assert "income" not in res.values["drift"]["features"]
    rule = AlertRule.parse({"name": "missing", "condition": "quality.n_missing_columns > 0"})
    fired = evaluate(
        proj.store, "adult", res.values, rules=[rule], notifiers=[MemoryNotifier()], window="t"
    )
    assert fired == []
    # a window that lacks an input still says so
    from keel.monitor._window import read_window as window_of
    from keel.monitor.drift import Reference
    from keel.monitor.quality import quality_report

    window = window_of(proj.store, "adult", until=T1)
    ref = Reference.from_dataset(proj.store, training_dataset(proj.store, mv.ref))
    short = quality_report(ref, window.inputs.drop(columns=["age"]), columns=sorted(inputs))
    assert short["missing_columns"] == ["age"] and short["n_missing_columns"] == 1


T2 = 3_000_000.0  # traffic of the tests below only (they run last: other windows are open-ended)
T3 = 4_000_000.0
BIG = 1_000_000


def test_monitor_events_stay_small_whatever_the_strings(watched, tmp_path):
    """Requests with megabyte strings (new categories, a sensitive group, a column name):
    each pass stores a bounded summary, never the values."""
    proj, _, mv, calm = watched
    model = registry.load(proj.store, mv.ref)
    rows = calm.iloc[:150].reset_index(drop=True)
    entries = _entries(model, rows, mv.version, 50_000, T2)
    for i, e in enumerate(entries[:8]):
        big = f"{i}" + "x" * BIG
        e["inputs"] |= {"workclass": big, "sex": big, big: 1}
    with PredictionLog(proj.store) as log:
        log.record(entries)
    labels = pd.DataFrame({"request_id": [e["request_id"] for e in entries], "y": rows["income"]})
    labels.to_csv(tmp_path / "big-labels.csv", index=False)
    ingest_labels(proj.store, tmp_path / "big-labels.csv", label_col="y")

    def stored() -> list[int]:
        from sqlalchemy import select

        from keel.store import _tables

        t = _tables.events
        with proj.store.read() as conn:
            q = select(t.c.payload_json).where(t.c.kind == "monitor").order_by(t.c.id)
            return [len(p) for (p,) in conn.execute(q)]

    before = stored()
    for _ in range(3):
        res = monitor(proj.store, "adult", since=T2, until=T3, min_labels=100, alerts=False)
    sizes = stored()[len(before) :]
    assert len(sizes) == 3 and max(sizes) < 64 * 1024, sizes
    assert "x" * 100 not in json.dumps(proj.store.events("monitor")[-1])
    # what the pass returns (and `keel monitor run --json` prints) is bounded too
    shown = json.dumps(res.values, default=str)
    assert len(shown) < 256 * 1024 and "x" * 100 not in shown
    quality = res.values["quality"]["columns"]
    assert quality["workclass"]["unseen"] == 8 and quality["sex"]["unseen"] == 8
    assert all(len(k) <= 64 for k in quality["workclass"]["unseen_values"])
    assert res.values["quality"]["n_extra_columns"] == 8


def test_a_stored_label_that_is_no_class_is_skipped_and_reported(watched, tmp_path):
    proj, _, mv, calm = watched
    model = registry.load(proj.store, mv.ref)
    rows = calm.iloc[:150].reset_index(drop=True)
    entries = _entries(model, rows, mv.version, 70_000, T3)
    ids = [e["request_id"] for e in entries]
    path = tmp_path / "early-labels.csv"
    pd.DataFrame({"request_id": ids, "y": ["Maybe", *rows["income"][1:]]}).to_csv(path, index=False)
    # unscoped labels that arrive before their requests are logged have no model to be
    # checked against: the bad one is stored, and joins once the request is logged
    ingest_labels(proj.store, path, label_col="y")
    with PredictionLog(proj.store) as log:
        log.record(entries)
    res = monitor(proj.store, "adult", since=T3, min_labels=100, alerts=False)
    perf = res.values["performance"]
    assert perf["status"] == "ok" and perf["labeled"] == 149
    assert perf["invalid_labels"] == 1
    assert perf["invalid_label_example"] == "'Maybe' (request r70000)"
    assert perf["expected_labels"] == "'<=50K' or '>50K'"
    assert res.values["fairness"]["status"] == "ok"
    assert proj.store.events("monitor")[-1]["payload"]["values"]["performance.invalid_labels"] == 1
    few = monitor(proj.store, "adult", since=T3, min_labels=1000, alerts=False)
    assert few.values["performance"]["status"] == "too_few_labels"
    assert few.values["performance"]["invalid_labels"] == 1
    assert few.values["fairness"] == {"status": "too_few_labels", "labeled": 149, "needed": 1000}
    # once the request is logged, the same file is refused
    with pytest.raises(InvalidInput, match=r"1 label is no class of adult/1 .* row 1 \(line 2\)"):
        ingest_labels(proj.store, path, label_col="y")
