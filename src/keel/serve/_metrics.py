"""Prometheus metrics of one server (its own registry, so several apps can live in one
process): requests, latency, errors by code, batch sizes, per model and version."""

from __future__ import annotations

from typing import Any

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """The server's counters and histograms; :meth:`render` gives the Prometheus text."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=False)
        reg: Any = self.registry
        self.requests = Counter(
            "keel_requests",
            "HTTP requests answered, by model, version, endpoint and status.",
            ["model", "version", "endpoint", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "keel_request_duration_seconds",
            "Time from the request's arrival to its answer.",
            ["model", "version", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.errors = Counter(
            "keel_errors", "Error answers by code.", ["model", "version", "code"], registry=reg
        )
        self.batch_rows = Histogram(
            "keel_batch_rows",
            "Rows per ONNX session run (several requests merged into one).",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
            registry=reg,
        )
        self.batch_requests = Histogram(
            "keel_batch_requests",
            "Requests merged into one ONNX session run.",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
            registry=reg,
        )
        self.loaded = Gauge(
            "keel_model_loaded",
            "1 while the version is loaded and serving.",
            ["model", "version"],
            registry=reg,
        )
        self.reloads = Counter(
            "keel_reloads", "Reloads by model and outcome.", ["model", "outcome"], registry=reg
        )

        self.variant_requests = Counter(
            "keel_release_requests",
            "Requests routed by a release, by model, variant and version.",
            ["model", "variant", "version"],
            registry=reg,
        )
        self.shadow = Counter(
            "keel_shadow_requests",
            "Shadow copies by model, version and outcome (ok, error, timeout, dropped).",
            ["model", "version", "outcome"],
            registry=reg,
        )

        self.monitor = Gauge(
            "keel_monitor_value",
            "The latest monitoring pass's values (keel monitor run), by model and path.",
            ["model", "path"],
            registry=reg,
        )

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
