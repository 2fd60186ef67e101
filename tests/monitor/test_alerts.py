"""Alert rules: parsing, ``for``, cool-down and de-duplication through the store's events."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import yaml

from keel.errors import InvalidInput
from keel.monitor.alerts import Alert, AlertConfig, AlertRule, evaluate
from keel.monitor.notify import FileNotifier, MemoryNotifier, WebhookNotifier
from keel.store import Store


def values(share: float = 0.4, auc: float = 0.87, dpd: float = 0.06) -> dict[str, Any]:
    return {
        "drift": {"share": share, "features": {"age": {"drift": True, "p_value": 0.001}}},
        "performance": {"roc_auc": {"value": auc, "low": auc - 0.02}, "n_labelled": 900},
        "fairness": {"sex": {"demographic_parity_difference": {"value": dpd}}},
    }


def rule(condition: str = "drift.share > 0.3", **kw: Any) -> AlertRule:
    return AlertRule.parse({"name": kw.pop("name", "input-drift"), "condition": condition, **kw})


@pytest.fixture
def mem() -> MemoryNotifier:
    return MemoryNotifier("mem")


def run(store: Store, mem: MemoryNotifier, rules: list[AlertRule], window: Any, **kw: Any):
    kw.setdefault("now", 1_000_000.0)
    model, vals = kw.pop("model", "churn"), kw.pop("vals", values())
    return evaluate(store, model, vals, rules=rules, notifiers=[mem], window=window, **kw)


# -- parsing ------------------------------------------------------------------------------


def test_a_rule_parses_with_its_defaults():
    r = AlertRule.parse({"name": "auc-low", "condition": "performance.roc_auc < 0.88"})
    assert (r.path, r.op, r.threshold) == ("performance.roc_auc", "<", 0.88)
    assert (r.for_windows, r.cooldown_s, r.severity, r.notify) == (1, 0.0, "warning", ("log",))
    r = rule(**{"for": 3, "cooldown": "15m", "severity": "critical", "notify": ["mem"]})
    assert (r.for_windows, r.cooldown_s, r.severity, r.notify) == (3, 900.0, "critical", ("mem",))
    assert rule(cooldown=30).cooldown_s == 30.0 and rule(cooldown="1d").cooldown_s == 86400.0


R = {"name": "r", "condition": "drift.share > 0.3"}
BAD_RULES = [
    ({**R, "condition": "drift.share >> 0.3"}, r"rules\[0\] \(r\)\.condition: expected 'PATH OP"),
    (
        {**R, "condition": "drift.share > lots"},
        r"\(r\)\.condition: drift\.share: expected a number",
    ),
    ({**R, "condition": "drift.share > inf"}, r"\(r\)\.condition: .*finite"),
    ({"name": "r"}, r"\(r\)\.condition: expected 'PATH OP NUMBER'"),
    ({**R, "for": 0}, r"\(r\)\.for: expected a number of consecutive windows"),
    ({**R, "for": "two"}, r"\(r\)\.for:"),
    ({**R, "cooldown": "soon"}, r"\(r\)\.cooldown: expected seconds"),
    ({**R, "cooldown": -5}, r"\(r\)\.cooldown:"),
    ({**R, "severity": "urgent"}, r"\(r\)\.severity: expected one of info, warning, critical"),
    ({**R, "notify": [1]}, r"\(r\)\.notify: expected a list"),
    ({**R, "cooldwn": 5}, r"\(r\): unknown key 'cooldwn' \(did you mean 'cooldown'\?\)"),
    ({**R, "name": "bad name!"}, r"rules\[0\]\.name: expected a name"),
    ("drift.share > 0.3", r"rules\[0\]: expected a mapping with name and condition"),
]


@pytest.mark.parametrize(("spec", "match"), BAD_RULES)
def test_bad_rules_name_the_rule_and_the_field(spec, match, store, mem):
    with pytest.raises(InvalidInput, match=match):
        evaluate(store, "churn", values(), rules=[spec], notifiers=[mem], window="w1")
    assert store.events() == []  # a rejected input changes nothing


def test_config_from_settings_and_from_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_TEST_SECRET", "x")
    section = {
        "allow_hosts": ["hooks.example.com:443"],
        "notifiers": {
            "ops-file": {"type": "file", "path": "alerts.jsonl"},
            "pager": {
                "type": "webhook",
                "url": "https://hooks.example.com/keel",
                "secret_env": "KEEL_TEST_SECRET",
            },
        },
        "alerts": [
            {"name": "input-drift", "condition": "drift.share > 0.3", "for": 2, "notify": ["log"]},
            {
                "name": "auc-low",
                "condition": "performance.roc_auc < 0.88",
                "cooldown": "1h",
                "severity": "critical",
                "notify": ["ops-file", "pager"],
            },
        ],
    }
    cfg = AlertConfig.from_settings({"monitor": section})
    assert [r.name for r in cfg.rules] == ["input-drift", "auc-low"]
    assert isinstance(cfg.notifiers["pager"], WebhookNotifier)
    assert set(cfg.notifiers) == {"log", "ops-file", "pager"}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(section))
    from_file = AlertConfig.from_file(path)
    assert from_file.rules == cfg.rules
    assert isinstance(from_file.notifiers["ops-file"], FileNotifier)
    assert from_file.notifiers["ops-file"].path == tmp_path / "alerts.jsonl"
    path.write_text(yaml.safe_dump(section["alerts"][:1]))  # a bare list of rules
    assert [r.name for r in AlertConfig.from_file(path).rules] == ["input-drift"]


A = {"name": "a", "condition": "drift.share > 1"}
HOOK = {"type": "webhook", "url": "https://evil.example/", "secret_env": "S"}
BAD_SETTINGS = [
    ({"alerts": {"name": "x"}}, r"keel\.yaml: monitor\.alerts: expected a list of rules"),
    (
        {"alerts": [{**A, "notify": ["pagr"]}], "notifiers": {"pager": {"type": "log"}}},
        r"monitor\.alerts \(a\)\.notify: unknown notifier 'pagr'; did you mean 'pager'\?",
    ),
    ({"alerts": [A, A]}, r"two rules are named 'a'"),
    ({"allow_hosts": "hooks.example.com"}, r"monitor\.allow_hosts: expected a list"),
    ({"notifiers": {"pager": HOOK}}, r"monitor\.notifiers\.pager: webhook URL .* allow-list"),
    ({"alerts": [{**A, "for": 0}]}, r"monitor\.alerts\[0\] \(a\)\.for"),
]


@pytest.mark.parametrize(("section", "match"), BAD_SETTINGS)
def test_bad_settings_name_the_field(section, match):
    with pytest.raises(InvalidInput, match=match):
        AlertConfig.from_settings({"monitor": section})


def test_a_bad_rules_file_is_named(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("alerts: [name: x\n")
    with pytest.raises(InvalidInput, match="rules.yaml.*not valid YAML"):
        AlertConfig.from_file(path)
    with pytest.raises(InvalidInput, match="cannot read"):
        AlertConfig.from_file(tmp_path / "missing.yaml")


# -- firing and recording -----------------------------------------------------------------


def test_a_true_condition_fires_is_recorded_and_sent(store, mem):
    rules = [
        rule(notify=["mem"]),
        rule("performance.roc_auc < 0.88", name="auc-low", severity="critical", notify=["mem"]),
        rule("fairness.sex.demographic_parity_difference > 0.05", name="dpd", notify=["mem"]),
        rule("performance.roc_auc < 0.5", name="auc-awful", notify=["mem"]),
    ]
    fired = run(store, mem, rules, "2026-11-27T10:00")
    assert [a.rule for a in fired] == ["input-drift", "auc-low", "dpd"]
    auc = fired[1]
    assert isinstance(auc, Alert)
    assert (auc.value, auc.threshold, auc.severity, auc.model) == (0.87, 0.88, "critical", "churn")
    assert auc.deliveries == {"mem": "ok"}
    events = store.events("alert")
    assert [e["payload"]["rule"] for e in events] == ["input-drift", "auc-low", "dpd"]
    assert events[1]["subject"] == "churn"
    assert events[1]["payload"]["window"] == "2026-11-27T10:00"
    assert events[1]["payload"]["condition"] == "performance.roc_auc < 0.88"
    assert [m["rule"] for m in mem.sent] == ["input-drift", "auc-low", "dpd"]
    assert mem.sent[1] == auc.to_dict()
    assert "performance.roc_auc = 0.87 < 0.88" in auc.message
    deliveries = store.events("alert_delivery")
    assert [(d["payload"]["notifier"], d["payload"]["ok"]) for d in deliveries] == [
        ("mem", True)
    ] * 3
    (check,) = store.events("alert_check")
    assert check["payload"]["true"] == ["auc-low", "dpd", "input-drift"]
    assert check["payload"]["false"] == ["auc-awful"]


def test_nothing_fires_when_the_condition_is_false(store, mem):
    assert run(store, mem, [rule(notify=["mem"])], "w1", vals=values(share=0.1)) == []
    assert store.events("alert") == [] and mem.sent == []


def test_flat_values_work_too(store, mem):
    fired = run(store, mem, [rule(notify=["mem"])], "w1", vals={"drift.share": 0.5})
    assert [a.value for a in fired] == [0.5]


def test_a_missing_path_skips_the_rule_or_with_strict_names_the_nearest(store, mem):
    r = rule("performance.roc_auk < 0.9", name="typo", notify=["mem"])
    assert run(store, mem, [r], "w1") == []
    (check,) = store.events("alert_check")
    assert check["payload"]["missing"] == ["typo"]
    with pytest.raises(InvalidInput, match=r"did you mean performance\.roc_auc"):
        run(store, mem, [r], "w2", strict=True)


def test_for_needs_consecutive_windows(store, mem):
    rules = [rule(notify=["mem"], **{"for": 3})]
    assert run(store, mem, rules, "w1") == []
    assert run(store, mem, rules, "w2") == []
    assert [a.window for a in run(store, mem, rules, "w3")] == ["w3"]
    assert [a.window for a in run(store, mem, rules, "w4")] == ["w4"]  # still true: fires again
    assert run(store, mem, rules, "w5", vals=values(share=0.1)) == []
    assert run(store, mem, rules, "w6") == []  # the streak was broken at w5
    assert run(store, mem, rules, "w7") == []
    assert [a.window for a in run(store, mem, rules, "w8")] == ["w8"]
    assert "for 3 windows" in mem.sent[0]["message"]


def test_a_window_evaluated_twice_counts_once_towards_for(store, mem):
    rules = [rule(notify=["mem"], **{"for": 2})]
    assert run(store, mem, rules, "w1") == []
    assert run(store, mem, rules, "w1") == []  # the same window again is not a second window
    assert [a.window for a in run(store, mem, rules, "w2")] == ["w2"]


def test_a_missing_value_breaks_the_streak(store, mem):
    rules = [rule(notify=["mem"], **{"for": 2})]
    assert run(store, mem, rules, "w1") == []
    assert run(store, mem, rules, "w2", vals={"performance": {"roc_auc": 0.9}}) == []
    assert run(store, mem, rules, "w3") == []
    assert len(run(store, mem, rules, "w4")) == 1


def test_cooldown_holds_back_a_refire_of_the_same_rule_and_model(store, mem):
    rules = [rule(notify=["mem"], cooldown="1h")]
    t0 = 1_000_000.0
    assert len(run(store, mem, rules, "w1", now=t0)) == 1
    assert run(store, mem, rules, "w2", now=t0 + 600) == []
    assert run(store, mem, rules, "w3", now=t0 + 3599) == []
    assert len(run(store, mem, rules, "w3", model="other", now=t0 + 3599)) == 1  # per model
    assert [a.window for a in run(store, mem, rules, "w4", now=t0 + 3600)] == ["w4"]
    assert run(store, mem, rules, "w5", now=t0 + 3700) == []  # counted from the last firing
    assert [e["payload"]["window"] for e in store.events("alert")] == ["w1", "w3", "w4"]


def test_the_same_window_fires_once_however_often_it_is_evaluated(store, mem):
    rules = [rule(notify=["mem"]), rule("drift.share > 0.35", name="drift-high", notify=["mem"])]
    assert len(run(store, mem, rules, "w1")) == 2
    assert run(store, mem, rules, "w1") == []
    assert run(store, mem, rules, "w1", now=2_000_000.0) == []
    assert len(mem.sent) == 2 and len(store.events("alert")) == 2
    assert len(run(store, mem, rules, "w1", model="other")) == 2  # another model is apart


def test_two_store_objects_on_one_database_fire_once(any_store, tmp_path, mem):
    other = Store.open(any_store.url, tmp_path / "blobs")
    try:
        rules = [rule(notify=["mem"])]
        assert len(run(any_store, mem, rules, "w1")) == 1
        assert run(other, mem, rules, "w1") == []
        # and at the same time, from several threads and both stores
        results: list[list[Alert]] = []
        barrier = threading.Barrier(6)

        def go(s: Store) -> None:
            barrier.wait()
            results.append(run(s, mem, rules, "w2"))

        threads = [threading.Thread(target=go, args=(s,)) for s in [any_store, other] * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(len(r) for r in results) == [0, 0, 0, 0, 0, 1]
        windows = [e["payload"]["window"] for e in any_store.events("alert")]
        assert windows == ["w1", "w2"]
        assert len(mem.sent) == 2
    finally:
        other.close()


def test_a_failing_notifier_does_not_stop_the_others(store, tmp_path):
    broken, ok = MemoryNotifier("broken", fail=True), MemoryNotifier("ok")
    fired = evaluate(
        store,
        "churn",
        values(),
        rules=[rule(notify=["broken", "ok"])],
        notifiers={"broken": broken, "ok": ok},
        window="w1",
    )
    assert fired[0].deliveries["ok"] == "ok"
    assert "told to fail" in fired[0].deliveries["broken"]
    assert len(ok.sent) == 1 and len(store.events("alert")) == 1
    recs = {d["payload"]["notifier"]: d["payload"] for d in store.events("alert_delivery")}
    assert recs["ok"]["ok"] is True and recs["broken"]["ok"] is False


def test_webhook_secret_never_reaches_events(store, monkeypatch):
    monkeypatch.setenv("KEEL_TEST_SECRET", "very-secret-value")
    hook = WebhookNotifier(
        "http://127.0.0.1:9/x",  # the discard port: nothing listens, the delivery fails
        allow=["127.0.0.1:9"],
        secret_env="KEEL_TEST_SECRET",
        name="hook",
        attempts=1,
        timeout_s=0.5,
    )
    fired = evaluate(
        store, "churn", values(), rules=[rule(notify=["hook"])], notifiers=[hook], window="w"
    )
    assert fired[0].deliveries["hook"] != "ok"
    dump = json.dumps(store.events())
    assert "very-secret-value" not in dump and "alert_delivery" in dump


def test_rules_and_notifiers_default_to_the_project_settings(store, tmp_path):
    store.settings = {
        "monitor": {
            "notifiers": {"ops": {"type": "file", "path": str(tmp_path / "alerts.jsonl")}},
            "alerts": [
                {"name": "input-drift", "condition": "drift.share > 0.3", "notify": ["ops"]}
            ],
        }
    }
    fired = evaluate(store, "churn", values(), window="w1", now=5.0)
    assert [a.rule for a in fired] == ["input-drift"]
    (line,) = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert json.loads(line)["rule"] == "input-drift"


def test_bad_model_or_window_is_refused(store, mem):
    with pytest.raises(InvalidInput, match="model"):
        evaluate(store, "", values(), rules=[rule()], notifiers=[mem], window="w")
    with pytest.raises(InvalidInput, match="window"):
        evaluate(store, "m", values(), rules=[rule()], notifiers=[mem], window="")
