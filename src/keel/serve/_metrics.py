"""Prometheus metrics of one server (its own registry, so several apps can live in one
process): requests, latency, errors by code, batch sizes, per model and version.

Under ``keel serve --workers N`` every worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and ``/metrics`` on any
worker answers the sums over all of them: counters and histograms add up, including those
of a worker that died; ``keel_model_loaded`` counts the live workers serving a version;
``keel_monitor_value`` is the most recent value written."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ServerMetrics", "enter_multiprocess_mode", "multiprocess_dir"]

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
            multiprocess_mode="livesum",
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
            multiprocess_mode="mostrecent",
        )

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if multiprocess_dir():
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            every = CollectorRegistry()
            MultiProcessCollector(every)
            return generate_latest(every), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when this process is a worker."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def enter_multiprocess_mode(folder: str) -> None:
    """Make this process's metrics from now on write to ``folder`` (a forked worker: the
    parent may have imported prometheus_client already, which picks its value class on
    import)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
