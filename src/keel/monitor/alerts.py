"""Alert rules over monitor values, evaluated per window, remembered in the store.

A rule is a condition ``PATH OP NUMBER`` on a monitor value — ``drift.share > 0.3``,
``performance.roc_auc < 0.88``, ``fairness.sex.demographic_parity_difference > 0.05`` —
where PATH is a dotted path into the window's values as :func:`keel.audit.evidence_values`
flattens them (``{"value": v}`` is reachable as its path, booleans are 0/1) and OP is one of
``< <= > >= ==``. Rules live in ``keel.yaml`` under ``monitor`` or in a file of the same
shape (:meth:`AlertConfig.from_file`)::

    monitor:
      allow_hosts: [hooks.example.com:443]   # where webhooks may go (host:port, exact;
                                             # IPs and ranges permit internal addresses)
      notifiers:
        ops-file: {type: file, path: alerts.jsonl}
        pager:
          type: webhook
          url: https://hooks.example.com/keel
          secret_env: KEEL_WEBHOOK_SECRET    # the HMAC secret's environment variable
          timeout_s: 5                       # per request (default 5)
          attempts: 4                        # at most (default 4)
          max_total_s: 30                    # for all attempts (default 30)
      alerts:
        - name: input-drift
          condition: drift.share > 0.3
          for: 2              # fire only when true in 2 consecutive windows (default 1)
          cooldown: 1h        # seconds, or 30s / 15m / 1h / 1d: no re-fire within (default 0)
          severity: warning   # info | warning | critical (default warning)
          notify: [log, pager]   # 'log' needs no declaration (default [log])

:func:`evaluate` checks one window of one model. It remembers, in the store's events, each
window's outcome (kind ``alert_check``) and each alert (kind ``alert``), and reads them back
for ``for``, the cool-down and de-duplication: the same rule, model and window fire at most
once, however often and from however many processes the window is evaluated (the check and
the record are one write transaction, serialized per store). Windows are consecutive in the
order they were first evaluated. Each alert is then sent to its notifiers, and each delivery
(ok or failed, never a secret) is recorded as an ``alert_delivery`` event.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import operator
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, text

from keel.audit.gates import evidence_values
from keel.errors import InvalidInput
from keel.monitor.notify import LogNotifier, notifier_from_config
from keel.types import Notifier

__all__ = ["Alert", "AlertConfig", "AlertRule", "evaluate"]

_log = logging.getLogger("keel.alerts")
_OPS: dict[str, Any] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
_CONDITION = re.compile(
    r"^\s*(?P<path>[A-Za-z0-9_.\-:|+&]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>\S+)\s*$"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE_KEYS = ("name", "condition", "for", "cooldown", "severity", "notify", "pipeline")
SEVERITIES = ("info", "warning", "critical")
MAX_FOR = 1000


@dataclass(frozen=True)
class AlertRule:
    """``name`` fires when ``path op threshold`` holds in ``for_windows`` consecutive
    windows, at most once per ``cooldown_s`` seconds per model, to ``notify``."""

    name: str
    path: str
    op: str
    threshold: float
    for_windows: int = 1
    cooldown_s: float = 0.0
    severity: str = "warning"
    notify: tuple[str, ...] = ("log",)
    pipeline: str | None = None  # a pipeline file to run when the rule fires

    @property
    def condition(self) -> str:
        return f"{self.path} {self.op} {self.threshold:g}"

    @classmethod
    def parse(cls, spec: Any, where: str = "alert rule") -> AlertRule:
        """A rule from its YAML mapping; :class:`InvalidInput` names the rule and field."""
        if not isinstance(spec, Mapping):
            raise InvalidInput(
                f"{where}: expected a mapping with name and condition, e.g. "
                f"{{name: input-drift, condition: 'drift.share > 0.3'}}, got {spec!r}"
            )
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                f"{where}.name: expected a name of letters, digits, '_', '-' or '.', got {name!r}"
            )
        here = f"{where} ({name})"
        unknown = sorted(set(map(str, spec)) - set(_RULE_KEYS))
        if unknown:
            near = difflib.get_close_matches(unknown[0], _RULE_KEYS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidInput(
                f"{here}: unknown key {unknown[0]!r}{hint}; expected {', '.join(_RULE_KEYS)}"
            )
        path, op, threshold = _condition(spec.get("condition"), here)
        return cls(
            name,
            path,
            op,
            threshold,
            for_windows=_for(spec.get("for", 1), here),
            cooldown_s=_cooldown(spec.get("cooldown", 0), here),
            severity=_severity(spec.get("severity", "warning"), here),
            notify=_notify(spec.get("notify", ["log"]), here),
            pipeline=_pipeline(spec.get("pipeline"), here),
        )

    def holds(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.name}: {self.condition}"


def _pipeline(value: Any, here: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().endswith((".yaml", ".yml")):
        raise InvalidInput(f"{here}.pipeline: expected a pipeline YAML file, got {value!r}")
    return value.strip()


def _condition(cond: Any, here: str) -> tuple[str, str, float]:
    if not isinstance(cond, str):
        raise InvalidInput(
            f"{here}.condition: expected 'PATH OP NUMBER' such as 'drift.share > 0.3', got {cond!r}"
        )
    m = _CONDITION.match(cond)
    if m is None:
        raise InvalidInput(
            f"{here}.condition: expected 'PATH OP NUMBER' with OP one of {' '.join(_OPS)}, "
            f"e.g. 'drift.share > 0.3'; got {cond!r}"
        )
    try:
        value = float(m["value"])
    except ValueError:
        raise InvalidInput(
            f"{here}.condition: {m['path']}: expected a number after {m['op']}, got {m['value']!r}"
        ) from None
    if not math.isfinite(value):
        raise InvalidInput(f"{here}.condition: {m['path']}: expected a finite number, got {value}")
    return m["path"], m["op"], value


def _for(value: Any, here: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FOR:
        raise InvalidInput(
            f"{here}.for: expected a number of consecutive windows from 1 to {MAX_FOR}, "
            f"got {value!r}"
        )
    return value


def _cooldown(value: Any, here: str) -> float:
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m["n"]) * _UNITS[m["unit"]]
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(
            f"{here}.cooldown: expected seconds (a number >= 0) or a duration such as "
            f"'15m', '1h', '1d', got {value!r}"
        )
    return seconds


def _severity(value: Any, here: str) -> str:
    if value not in SEVERITIES:
        raise InvalidInput(
            f"{here}.severity: expected one of {', '.join(SEVERITIES)}, got {value!r}"
        )
    return str(value)


def _notify(value: Any, here: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{here}.notify: expected a list of notifier names, got {value!r}")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class AlertConfig:
    """Parsed ``monitor`` settings: the rules and the notifiers they name."""

    rules: tuple[AlertRule, ...] = ()
    notifiers: Mapping[str, Notifier] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | None, *, base_dir: str | Path = "."
    ) -> AlertConfig:
        """The ``monitor`` section of a project's settings (``keel.yaml``)."""
        monitor = (settings or {}).get("monitor") or {}
        return cls.from_mapping(monitor, where="keel.yaml: monitor", base_dir=base_dir)

    @classmethod
    def from_file(cls, path: str | Path) -> AlertConfig:
        """A YAML file shaped like ``keel.yaml``'s ``monitor`` section (``alerts``,
        ``notifiers``, ``allow_hosts``), or a bare list of rules. Relative file-notifier
        paths are taken from the file's folder."""
        p = Path(path)
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInput(f"alert rules file {str(p)!r}: cannot read it ({exc})") from None
        except yaml.YAMLError as exc:
            raise InvalidInput(f"alert rules file {str(p)!r}: not valid YAML ({exc})") from None
        if isinstance(doc, list):
            doc = {"alerts": doc}
        return cls.from_mapping(doc or {}, where=p.name, base_dir=p.parent)

    @classmethod
    def from_mapping(
        cls, section: Any, *, where: str = "monitor", base_dir: str | Path = "."
    ) -> AlertConfig:
        if not isinstance(section, Mapping):
            raise InvalidInput(f"{where}: expected a mapping, got {type(section).__name__}")
        allow = section.get("allow_hosts") or []
        if not isinstance(allow, list):
            raise InvalidInput(
                f"{where}.allow_hosts: expected a list of 'host:port', got {allow!r}"
            )
        specs = section.get("notifiers") or {}
        if not isinstance(specs, Mapping):
            raise InvalidInput(f"{where}.notifiers: expected a mapping of name to settings")
        notifiers: dict[str, Notifier] = {"log": LogNotifier("log")}
        for name, spec in specs.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise InvalidInput(f"{where}.notifiers: expected a notifier name, got {name!r}")
            notifiers[name] = notifier_from_config(
                name, spec, allow=allow, base_dir=base_dir, where=f"{where}.notifiers"
            )
        raw = section.get("alerts") or []
        if not isinstance(raw, list):
            raise InvalidInput(f"{where}.alerts: expected a list of rules, got {raw!r}")
        rules = tuple(AlertRule.parse(r, f"{where}.alerts[{i}]") for i, r in enumerate(raw))
        _check_rules(rules, notifiers, f"{where}.alerts")
        return cls(rules, notifiers)


def _check_rules(rules: Sequence[AlertRule], notifiers: Mapping[str, Any], where: str) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise InvalidInput(f"{where}: two rules are named {rule.name!r}; names must differ")
        seen.add(rule.name)
        for name in rule.notify:
            if name not in notifiers:
                near = difflib.get_close_matches(name, list(notifiers), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise InvalidInput(
                    f"{where} ({rule.name}).notify: unknown notifier {name!r}{hint} "
                    f"Declared: {', '.join(sorted(notifiers))}"
                )


@dataclass(frozen=True)
class Alert:
    """One fired rule for one model and window; ``deliveries`` maps each notifier name to
    ``"ok"`` or why it failed."""

    rule: str
    model: str
    window: str
    path: str
    op: str
    threshold: float
    value: float
    severity: str
    at: float
    for_windows: int = 1
    notify: tuple[str, ...] = ()
    deliveries: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        """The de-duplication key: rule, model and window."""
        return json.dumps([self.rule, self.model, self.window])

    @property
    def message(self) -> str:
        streak = f" for {self.for_windows} windows" if self.for_windows > 1 else ""
        return (
            f"[{self.severity}] alert {self.rule!r} on {self.model} (window {self.window}): "
            f"{self.path} = {self.value:.4g} {self.op} {self.threshold:g}{streak}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document notifiers receive and the event stores."""
        return {
            "type": "keel.alert",
            "format_version": 1,
            "rule": self.rule,
            "model": self.model,
            "window": self.window,
            "condition": f"{self.path} {self.op} {self.threshold:g}",
            "path": self.path,
            "op": self.op,
            "threshold": self.threshold,
            "value": self.value,
            "severity": self.severity,
            "for": self.for_windows,
            "notify": list(self.notify),
            "at": self.at,
            "at_iso": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "message": self.message,
        }


def evaluate(
    store: Any,
    model: str,
    values: Mapping[str, Any],
    *,
    rules: Iterable[AlertRule | Mapping[str, Any]] | None = None,
    notifiers: Mapping[str, Notifier] | Iterable[Notifier] | None = None,
    window: str | int,
    now: float | None = None,
    strict: bool = False,
) -> list[Alert]:
    """Check ``rules`` (default: the project's ``monitor.alerts``) on one ``window`` of
    ``model``'s monitor ``values`` (nested as monitors produce them, or already flat) and
    return the alerts that fired: each recorded as an ``alert`` event, then sent to its
    notifiers (default: the project's, plus ``log``). ``window`` is the window's key (e.g.
    its start time); ``now`` is the clock (Unix seconds) for cool-downs.

    A rule whose path is not in ``values`` is skipped for this window (a monitor may have
    no performance yet while labels are missing), logged with the nearest known paths, and
    breaks that rule's streak; ``strict=True`` raises :class:`InvalidInput` instead."""
    if not isinstance(model, str) or not model:
        raise InvalidInput(f"evaluate: model: expected a model name or ref, got {model!r}")
    if isinstance(window, bool) or not isinstance(window, str | int) or str(window) == "":
        raise InvalidInput(f"evaluate: window: expected the window's key, got {window!r}")
    rule_list, sinks = _resolve(store, rules, notifiers)
    flat = evidence_values(values)
    now = time.time() if now is None else float(now)
    check = _check(rule_list, flat, strict)
    fired = _record(store, model, str(window), now, rule_list, flat, check)
    if fired:
        fired = _deliver(store, fired, sinks)
    return fired


def _resolve(
    store: Any,
    rules: Iterable[AlertRule | Mapping[str, Any]] | None,
    notifiers: Mapping[str, Notifier] | Iterable[Notifier] | None,
) -> tuple[list[AlertRule], dict[str, Notifier]]:
    config = None
    if rules is None or notifiers is None:
        config = AlertConfig.from_settings(getattr(store, "settings", None))
    if rules is None:
        assert config is not None
        rule_list = list(config.rules)
    else:
        rule_list = [
            r if isinstance(r, AlertRule) else AlertRule.parse(r, f"rules[{i}]")
            for i, r in enumerate(rules)
        ]
    if notifiers is None:
        assert config is not None
        sinks = dict(config.notifiers)
    elif isinstance(notifiers, Mapping):
        sinks = {"log": LogNotifier("log"), **notifiers}
    else:
        sinks = {"log": LogNotifier("log"), **{n.name: n for n in notifiers}}
    _check_rules(rule_list, sinks, "rules")
    return rule_list, sinks


def _check(rules: Sequence[AlertRule], flat: Mapping[str, float], strict: bool) -> dict[str, Any]:
    """Each rule's outcome on this window: True, False, or None when its path is missing."""
    out: dict[str, Any] = {}
    for rule in rules:
        value = flat.get(rule.path)
        if value is None:
            near = difflib.get_close_matches(rule.path, list(flat), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            msg = f"alert rule {rule.name!r}: no monitor value at {rule.path!r}{hint}"
            if strict:
                known = ", ".join(sorted(flat)[:60]) or "none"
                raise InvalidInput(f"{msg} Valid paths: {known}")
            _log.info("%s; skipped for this window", msg)
            out[rule.name] = None
        else:
            out[rule.name] = rule.holds(value)
    return out


def _record(
    store: Any,
    model: str,
    window: str,
    now: float,
    rules: Sequence[AlertRule],
    flat: Mapping[str, float],
    check: Mapping[str, Any],
) -> list[Alert]:
    """In one write transaction: read the past, record this window, record what fires."""
    from keel.store import _tables

    t = _tables.events
    fired: list[Alert] = []
    with store.write() as conn:
        if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serializes
            digest = hashlib.sha256(f"keel.alerts|{model}".encode()).digest()
            lock = int.from_bytes(digest[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
        longest = max((r.for_windows for r in rules if check.get(r.name)), default=1)
        history = _history(conn, t, model, window, longest - 1)
        past = _past_alerts(conn, t, model)
        store.add_event(conn, "alert_check", model, {"window": window, "at": now, **_sets(check)})
        for rule in rules:
            if not check.get(rule.name):
                continue
            if rule.for_windows > 1 and not _streak(history, rule.name, rule.for_windows - 1):
                continue
            if (rule.name, window) in past["windows"]:
                _log.debug("alert %r on %s window %s: already fired", rule.name, model, window)
                continue
            last = past["last"].get(rule.name)
            if last is not None and abs(now - last) < rule.cooldown_s:
                _log.debug("alert %r on %s: cooling down", rule.name, model)
                continue
            alert = Alert(
                rule.name,
                model,
                window,
                rule.path,
                rule.op,
                rule.threshold,
                flat[rule.path],
                rule.severity,
                now,
                rule.for_windows,
                rule.notify,
            )
            store.add_event(conn, "alert", model, alert.to_dict())
            fired.append(alert)
    return fired


def _sets(check: Mapping[str, Any]) -> dict[str, list[str]]:
    return {
        "true": sorted(n for n, v in check.items() if v is True),
        "false": sorted(n for n, v in check.items() if v is False),
        "missing": sorted(n for n, v in check.items() if v is None),
    }


def _history(conn: Any, t: Any, model: str, window: str, n: int) -> list[set[str]]:
    """The rules that held in each of the ``n`` windows evaluated before ``window`` (the
    latest first; a window evaluated more than once counts once, with its latest outcome)."""
    if n <= 0:
        return []
    q = (
        select(t.c.payload_json)
        .where(t.c.kind == "alert_check", t.c.subject == model)
        .order_by(t.c.id.desc())
    )
    latest: dict[str, set[str]] = {}
    order: list[str] = []
    rows = conn.execute(q)
    for (raw,) in rows:
        doc = json.loads(raw)
        key = str(doc.get("window"))
        if key == window:
            continue
        if key not in latest:
            latest[key] = set(doc.get("true") or [])
            order.append(key)
        if len(order) >= n:
            break
    rows.close()
    return [latest[k] for k in order]


def _streak(history: Sequence[set[str]], rule: str, n: int) -> bool:
    return len(history) >= n and all(rule in held for held in history[:n])


def _past_alerts(conn: Any, t: Any, model: str) -> dict[str, Any]:
    """The (rule, window) pairs that already fired for ``model``, and each rule's latest
    firing time (the clock given to :func:`evaluate`, not the row's write time)."""
    q = select(t.c.payload_json).where(t.c.kind == "alert", t.c.subject == model)
    windows: set[tuple[str, str]] = set()
    last: dict[str, float] = {}
    for (raw,) in conn.execute(q):
        doc = json.loads(raw)
        rule, at = str(doc.get("rule")), float(doc.get("at", 0.0))
        windows.add((rule, str(doc.get("window"))))
        last[rule] = max(last.get(rule, at), at)
    return {"windows": windows, "last": last}


def _deliver(store: Any, fired: list[Alert], sinks: Mapping[str, Notifier]) -> list[Alert]:
    """Send each alert to its notifiers (one failing must not stop the others) and record
    each delivery as an ``alert_delivery`` event."""
    out: list[Alert] = []
    records: list[dict[str, Any]] = []
    for alert in fired:
        doc = alert.to_dict()
        results: dict[str, str] = {}
        for name in alert.notify:
            rec: dict[str, Any] = {"rule": alert.rule, "model": alert.model, "window": alert.window}
            try:
                sinks[name].send(doc)
                rec.update(notifier=name, ok=True)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"{type(exc).__name__}: {exc}"
                rec.update(notifier=name, ok=False, error=results[name])
                rec["attempts"] = getattr(exc, "attempts", 1)
                _log.warning("alert %r: notifier %r failed: %s", alert.rule, name, exc)
            records.append(rec)
        out.append(dataclasses.replace(alert, deliveries=results))
    if records:
        with store.write() as conn:
            for rec in records:
                store.add_event(conn, "alert_delivery", rec["model"], rec)
    return out
