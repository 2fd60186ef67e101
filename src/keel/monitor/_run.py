"""One monitoring pass over a served model's traffic: drift and data quality of its inputs
against its training data, its performance and fairness once labels arrive, then the
project's alert rules; the values are recorded as a ``monitor`` event in the store.

The stored event is a bounded summary (numbers by dotted path; categories and groups cut to
64 characters, at most 10 unseen categories per column and 20 groups per sensitive column),
never raw served values.

A stored label that is no class of the served version (or not a number, for a regressor) is
left out of performance and fairness and reported under ``performance``:
``invalid_labels`` (how many), ``invalid_label_example`` and ``expected_labels``.

Windows with fewer labelled rows than ``min_labels`` report ``{"status": "too_few_labels",
"labeled": n, "needed": min_labels}`` for performance and fairness instead of numbers a
handful of rows would make up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.errors import InvalidInput, NotFound
from keel.monitor._window import Window, read_window

__all__ = ["MonitorResult", "monitor", "training_dataset"]


@dataclass(frozen=True)
class MonitorResult:
    """The values of one pass (``values``: nested dict, alert rules address it by dotted
    path), the alerts it fired, and the event id it was recorded under."""

    model: str
    window: dict[str, Any]
    values: dict[str, Any]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    event: int | None = None
    triggered: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "window": self.window,
            "values": self.values,
            "alerts": self.alerts,
            "event": self.event,
        }


def training_dataset(store: Any, ref: str) -> str:
    """The dataset ref a model version was trained on (through its run, or its parent's
    for a variant)."""
    from keel import registry
    from keel.store import lineage

    mv = registry.get_version(store, ref)
    seen = set()
    node_kind, node_id = "model", mv.ref
    while (node_kind, node_id) not in seen:
        seen.add((node_kind, node_id))
        root = lineage(store, node_kind, node_id)
        if node_kind == "run":
            for n in root.parents:
                if n.kind == "dataset" and n.role == "train":
                    return n.id
            break
        runs = [n for n in root.parents if n.kind == "run"]
        models = [n for n in root.parents if n.kind == "model"]
        if runs:
            node_kind, node_id = "run", runs[0].id
        elif models:
            node_kind, node_id = "model", models[0].id
        else:
            break
    raise NotFound(f"monitor: {mv.ref} records no training dataset to compare traffic with")


def _served_version(store: Any, model: str, window: Window) -> Any:
    from keel import registry

    try:
        return registry.get_version(store, f"{model}@production")
    except NotFound:
        versions = window.describe()["versions"]
        if not versions:
            raise
        return registry.get_version(store, f"{model}/{versions[-1]}")


def _labelled(
    window: Window, mv: Any, min_labels: int
) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
    """The rows with a usable label, the short-cut report when too few have one, and what
    was skipped: a stored label that is no class of the served version (or no number for a
    regressor), which an older keel let in, is left out and reported, not fatal."""
    from keel.monitor._drift_ref import shorten
    from keel.serve._labels import bad_labels, expected_labels

    out = window.outputs
    bad = bad_labels(out["label_true"], mv)
    mask = out["label_true"].notna().to_numpy() & ~bad
    skipped: dict[str, Any] = {}
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        skipped = {
            "invalid_labels": int(bad.sum()),
            "invalid_label_example": (
                f"{shorten(repr(out['label_true'].iloc[first]))} "
                f"(request {shorten(str(out['request_id'].iloc[first]))})"
            ),
            "expected_labels": expected_labels(mv),
        }
    n = int(mask.sum())
    if n < min_labels:
        short = {"status": "too_few_labels", "labeled": n, "needed": min_labels, **skipped}
        return None, short, skipped
    return mask, None, skipped


def _performance(window: Window, mv: Any, mask: np.ndarray, seed: int) -> dict[str, Any]:
    from keel.audit.performance import classification_performance, regression_performance

    out = window.outputs[mask]
    if mv.task == "regression":
        truth = out["label_true"].astype(float).to_numpy()
        rep = regression_performance(truth, out["prediction"].to_numpy(), n_boot=0, seed=seed)
    else:
        classes = [str(c) for c in mv.output_schema.get("classes") or []]
        if len(classes) != 2:
            return {"status": "not_binary", "labeled": int(mask.sum())}
        rep = classification_performance(
            out["label_true"].astype(str).to_numpy(),
            out["score"].to_numpy(),
            y_pred=out["label"].astype(str).to_numpy(),
            pos_label=classes[1],
            n_boot=0,
            seed=seed,
        )
    return {**rep["metrics"], "labeled": int(mask.sum()), "status": "ok"}


def _fairness(
    window: Window, mv: Any, mask: np.ndarray, sensitive: list[str], seed: int
) -> dict[str, Any]:
    from keel.audit._evidence import fairness_section
    from keel.audit.fairness import fairness_report

    missing = [c for c in sensitive if c not in window.inputs.columns]
    if missing:
        raise InvalidInput(
            f"monitor: sensitive column {missing[0]!r} is not in the logged inputs of "
            f"{window.model}; inputs: {', '.join(map(str, window.inputs.columns))}"
        )
    classes = [str(c) for c in mv.output_schema.get("classes") or []]
    out = window.outputs[mask]
    groups = window.inputs.loc[mask, sensitive].reset_index(drop=True)
    rep = fairness_report(
        out["label_true"].astype(str).to_numpy(),
        out["label"].astype(str).to_numpy(),
        groups.apply(_bounded_groups),
        scores=out["score"].to_numpy(),
        pos_label=classes[-1],
        n_boot=0,
        seed=seed,
        missing="group",
    )
    return {**fairness_section(rep), "status": "ok"}


MAX_GROUPS = 20
OTHER_GROUP = "(other)"


def _bounded_groups(s: Any) -> Any:
    """A sensitive column of served traffic with its text values cut to 64 characters and
    groups past the :data:`MAX_GROUPS` most frequent merged into ``(other)``: group names
    become report keys, and requests choose them."""
    import pandas as pd

    from keel.monitor._drift_ref import shorten

    if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)):
        return s
    s = s.map(lambda v: shorten(v) if isinstance(v, str) else v)
    counts = s.value_counts(dropna=True)
    if len(counts) > MAX_GROUPS:
        s = s.where(s.isin(counts.index[:MAX_GROUPS]) | s.isna(), OTHER_GROUP)
    return s


def monitor(
    store: Any,
    model: str,
    *,
    since: Any = None,
    until: Any = None,
    last: int | None = None,
    min_labels: int = 200,
    sensitive: list[str] | None = None,
    reference: Any = None,
    alerts: bool = True,
    notifiers: Any = None,
    seed: int = 0,
    now: float | None = None,
) -> MonitorResult:
    """One pass over a window of ``model``'s logged traffic (``since``/``until`` or the
    newest ``last`` predictions): drift and data quality against ``reference`` (default:
    the served version's training dataset), performance and fairness on the labelled rows
    (``sensitive``: default ``audit.sensitive`` of keel.yaml), then the alert rules of
    keel.yaml's ``monitor.alerts`` (with ``alerts``). Recorded as a ``monitor`` event.

    Prediction drift compares the served answers (scores, or predictions) with what the
    served version answers on a seeded sample of 5,000 training rows."""
    from keel.monitor.drift import Reference, drift_report
    from keel.monitor.quality import quality_report

    if not isinstance(min_labels, int) or isinstance(min_labels, bool) or min_labels < 1:
        raise InvalidInput(f"min_labels: expected an integer ≥ 1, got {min_labels!r}")
    window = read_window(store, model, since=since, until=until, last=last)
    if window.rows == 0:
        raise InvalidInput(f"monitor: no logged predictions of {model!r} in that window")
    mv = _served_version(store, model, window)
    settings = getattr(store, "settings", {}) or {}
    if sensitive is None:
        sensitive = list((settings.get("audit") or {}).get("sensitive") or [])
    train_ref = training_dataset(store, mv.ref)
    if reference is None:
        reference = Reference.from_dataset(store, train_ref)
    t0 = time.perf_counter()
    expected = _expected_inputs(mv, reference)
    features = [c for c in expected if c in window.inputs.columns]
    values: dict[str, Any] = {
        "window": window.describe(),
        "drift": drift_report(reference, window.inputs, columns=features),
        "quality": quality_report(reference, window.inputs, columns=expected),
        "prediction_drift": _prediction_drift(store, mv, train_ref, window, seed),
    }
    mask, short, skipped = _labelled(window, mv, min_labels)
    values["performance"] = short or {**_performance(window, mv, mask, seed), **skipped}
    if sensitive and mv.task != "regression":
        fairness_short = short and {k: v for k, v in short.items() if k not in skipped}
        values["fairness"] = fairness_short or _fairness(window, mv, mask, sensitive, seed)
    values["seconds"] = time.perf_counter() - t0
    fired: list[Any] = []
    triggered: list[dict[str, Any]] = []
    if alerts and (settings.get("monitor") or {}).get("alerts"):
        from keel.monitor.alerts import evaluate

        fired = evaluate(store, model, values, notifiers=notifiers, window=window.key, now=now)
        triggered = _trigger(store, model, fired, settings)
    info = window.describe()
    with store.write() as conn:
        store.add_event(
            conn, "monitor", model, {"window": info, "served": mv.ref, "values": _summary(values)}
        )
    events = store.events("monitor")
    return MonitorResult(
        model,
        info,
        values,
        [a.to_dict() for a in fired],
        events[-1]["id"] if events else None,
        triggered,
    )


def _expected_inputs(mv: Any, reference: Any) -> list[str]:
    """The columns served traffic should carry: the served version's inputs that the
    reference knows. The training data's target (and any other column the model does not
    take) is not an input, so its absence from traffic is no data-quality issue."""
    from keel.serve._tensors import TensorInput, summary_names

    known = set(reference.columns)
    names = [
        n
        for c in mv.input_schema or []
        for n in (
            summary_names(TensorInput.from_entry(c)) if c.get("type") == "tensor" else [c["name"]]
        )
    ]
    if not names:  # a version without a recorded input schema: every reference column
        return list(reference.columns)
    return [n for n in names if n in known]


def _trigger(store: Any, model: str, fired: list[Any], settings: dict) -> list[dict[str, Any]]:
    """Run the pipeline of each fired rule that names one (``pipeline: retrain.yaml``,
    relative to the project folder); each run is an ``alert_trigger`` event."""
    from pathlib import Path

    from keel import plugins
    from keel.monitor.alerts import AlertConfig

    rules = {r.name: r for r in AlertConfig.from_settings(settings).rules}
    out = []
    for alert in fired:
        rule = rules.get(alert.rule)
        if rule is None or rule.pipeline is None:
            continue
        path = Path(rule.pipeline)
        root = getattr(store, "project_root", None)
        if not path.is_absolute() and root is not None:
            path = Path(root) / path
        run = plugins.get("alert_actions", "pipeline")(store, path)  # keel.pipeline's
        entry = {
            "rule": rule.name,
            "pipeline": str(rule.pipeline),
            "run": run.id,
            "status": run.status,
        }
        with store.write() as conn:
            store.add_event(conn, "alert_trigger", model, entry)
        out.append(entry)
    return out


def _prediction_drift(
    store: Any, mv: Any, train_ref: str, window: Window, seed: int, rows: int = 5000
) -> dict[str, Any]:
    """The served answers (the positive-class score, or the prediction) against what the
    served version answers on a seeded sample of its training rows: the same tests as an
    input column (KS, Wasserstein, PSI)."""
    import pandas as pd

    from keel import registry
    from keel.data import load_frame
    from keel.monitor.drift import Reference, drift_report

    frame = load_frame(store, train_ref)
    cols = [c["name"] for c in mv.input_schema]
    sample = frame[cols].sample(min(rows, len(frame)), random_state=seed)
    model = registry.load(store, mv.ref)
    if mv.task == "regression":
        name, ref = "prediction", np.asarray(model.predict(sample), dtype=float)
    else:
        name, ref = "score", np.asarray(model.predict_proba(sample), dtype=float)[:, -1]
    cur = window.outputs[name].to_numpy(dtype=float)
    cur = cur[~np.isnan(cur)]
    if cur.size == 0:
        return {}
    report = drift_report(
        Reference.from_frame(pd.DataFrame({name: ref})), pd.DataFrame({name: cur})
    )
    return {name: report["features"][name], "reference_rows": len(ref)}


MAX_PATH = 256


def _summary(values: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a pass (what gauges and trends read) by dotted path, without
    per-group tables: counts, rates, statistics, never served values. Every name in a path
    is a column, a check, or a category or group cut to 64 characters, so a path is short;
    one that is not (a bug upstream) is left out rather than stored."""
    from keel.audit.gates import evidence_values

    return {k: v for k, v in evidence_values(values).items() if len(k) <= MAX_PATH}
