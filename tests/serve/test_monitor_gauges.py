"""The server's /metrics carries the newest monitoring pass's values as gauges."""

from __future__ import annotations

from keel.serve import start
from tests.serve._support import adult_store, call, metric, train_lgb


def test_latest_monitor_values_become_gauges(tmp_path):
    store, _ = adult_store(tmp_path)
    train_lgb(store, "adult")

    def record(values):
        with store.write() as conn:
            store.add_event(conn, "monitor", "adult", {"window": {}, "values": values})

    record({"drift.share": 0.1, "performance.roc_auc": 0.91, "drift.features.age.drift": 1.0})
    with start(store, ["adult"], watch_seconds=0.2) as server:
        server.app.refresh_monitor_gauges()
        text = call(server.url, "GET", "/metrics")[2].decode()
        assert metric(text, "keel_monitor_value", model="adult", path="drift.share") == 0.1
        assert metric(text, "keel_monitor_value", model="adult", path="performance.roc_auc") == 0.91
        assert 'path="drift.features.age.drift"' not in text  # per-feature stays in the event
        record({"drift.share": 0.5, "fairness.sex.demographic_parity_difference": 0.07})
        server.app.refresh_monitor_gauges()
        text = call(server.url, "GET", "/metrics")[2].decode()
        assert metric(text, "keel_monitor_value", model="adult", path="drift.share") == 0.5
        got = metric(
            text,
            "keel_monitor_value",
            model="adult",
            path="fairness.sex.demographic_parity_difference",
        )
        assert got == 0.07
    store.close()
