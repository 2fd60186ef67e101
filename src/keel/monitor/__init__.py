"""keel.monitor: watching released models on their own traffic — drift and data quality of
the inputs against the training data, performance and fairness once labels arrive, and
alert rules with notifiers.

::

    from keel.monitor import monitor
    res = monitor(store, "adult-income", last=5000)   # one pass, recorded as an event
    res.values["drift"]["share"], res.values["performance"], res.alerts
"""

from keel.monitor._run import MonitorResult, monitor, training_dataset
from keel.monitor._timeline import alert_history, monitor_passes, timeline
from keel.monitor._window import Window, read_window
from keel.monitor.alerts import Alert, AlertConfig, AlertRule, evaluate
from keel.monitor.drift import (
    TESTS,
    Reference,
    StatTest,
    chisquare,
    drift_report,
    jensenshannon,
    ks_2samp,
    psi,
    wasserstein,
)
from keel.monitor.notify import (
    DeliveryFailed,
    FileNotifier,
    LogNotifier,
    MemoryNotifier,
    WebhookNotifier,
    check_url,
    verify_signature,
)
from keel.monitor.quality import quality_report

__all__ = [
    "TESTS",
    "Alert",
    "AlertConfig",
    "AlertRule",
    "DeliveryFailed",
    "FileNotifier",
    "LogNotifier",
    "MemoryNotifier",
    "MonitorResult",
    "Reference",
    "StatTest",
    "WebhookNotifier",
    "Window",
    "alert_history",
    "check_url",
    "chisquare",
    "drift_report",
    "evaluate",
    "jensenshannon",
    "ks_2samp",
    "monitor",
    "monitor_passes",
    "psi",
    "quality_report",
    "read_window",
    "timeline",
    "training_dataset",
    "verify_signature",
    "wasserstein",
]
