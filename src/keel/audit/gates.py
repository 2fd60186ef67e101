"""Gates: thresholds on evidence values that a model version must pass to take an alias.

A policy is a list of rules, each ``PATH OP VALUE`` — ``performance.roc_auc >= 0.9``,
``fairness.sex.demographic_parity_difference <= 0.05`` — where PATH names a number in the
evidence document (see :func:`evidence_values`) and OP is one of ``<= < >= > ==``. It lives
in the project's ``keel.yaml``::

    audit:
      sensitive: [sex, race]
      policy:
        - performance.roc_auc >= 0.9
        - fairness.sex.demographic_parity_difference <= 0.05
      gated_aliases: [production]      # the default
      allow_empty: false               # the default: a policy with no rules is an error
      robustness:
        frozen: [age, race, sex]       # features robustness attacks never change

A policy with no rules checks nothing, so it does not pass: :func:`gate` returns a result
that says it is empty and has not passed, and ``keel gate`` exits 1. Write
``allow_empty: true`` to pass an empty policy on purpose. A project whose keel.yaml declares
``audit.policy`` or ``audit.gated_aliases`` but no rules cannot move a gated alias either
(unless ``allow_empty``); a project that declares neither has set up no gates, and its
aliases move as before.

Moving a gated alias runs the gates on the version's latest evidence and refuses when one
fails or there is no evidence; ``override="reason"`` moves it anyway, and the override (who,
why, which rules failed) is recorded as an event and shown on the model card.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidInput, ValidationFailed

__all__ = [
    "GateResult",
    "alias_trail",
    "enforce",
    "Policy",
    "Rule",
    "evidence_values",
    "gate",
]

_OPS: dict[str, Any] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
_RULE = re.compile(
    r"^\s*(?P<path>[A-Za-z0-9_.\-:|+&]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>\S+)\s*$"
)
DEFAULT_GATED = ("production",)
_EMPTY_FIX = (
    "add rules under audit.policy in keel.yaml (e.g. 'performance.roc_auc >= 0.8'), or set "
    "audit.allow_empty: true to pass an empty policy on purpose"
)


@dataclass(frozen=True)
class Rule:
    """``path op value``: the evidence value at ``path`` must satisfy ``op value``."""

    path: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: Any, where: str = "policy") -> Rule:
        if isinstance(text, Mapping):  # {path: ..., op: ..., value: ...}
            unknown = sorted(set(map(str, text)) - {"path", "op", "value"})
            if unknown:
                raise InvalidInput(
                    f"{where}: unknown key {unknown[0]!r}; expected path, op and value"
                )
            text = f"{text.get('path')} {text.get('op')} {text.get('value')}"
        if not isinstance(text, str):
            raise InvalidInput(
                f"{where}: expected a rule like 'performance.roc_auc >= 0.9', got {text!r}"
            )
        m = _RULE.match(text)
        if m is None:
            raise InvalidInput(
                f"{where}: expected 'PATH OP NUMBER' with OP one of {' '.join(_OPS)}, "
                f"e.g. 'performance.roc_auc >= 0.9'; got {text!r}"
            )
        try:
            value = float(m["value"])
        except ValueError:
            raise InvalidInput(
                f"{where}: {m['path']}: expected a number after {m['op']}, got {m['value']!r}"
            ) from None
        if not math.isfinite(value):
            raise InvalidInput(f"{where}: {m['path']}: expected a finite number, got {value}")
        return cls(m["path"], m["op"], value)

    def __str__(self) -> str:
        return f"{self.path} {self.op} {self.value:g}"


def _check_robustness(rob: Any) -> None:
    """``audit.robustness``: ``{frozen: [feature, ...]}``, the features attacks never change
    (immutable ones such as age or race); the audit refuses names the model does not read."""
    if rob is None:
        return
    if not isinstance(rob, Mapping):
        raise InvalidInput(
            f"keel.yaml: audit.robustness: expected a mapping like {{frozen: [age, race]}}, "
            f"got {rob!r}"
        )
    unknown = sorted(set(map(str, rob)) - {"frozen"})
    if unknown:
        raise InvalidInput(
            f"keel.yaml: audit.robustness.{unknown[0]}: unknown key; expected frozen"
        )
    frozen = rob.get("frozen", [])
    if not isinstance(frozen, list) or not all(isinstance(f, str) and f for f in frozen):
        raise InvalidInput(
            f"keel.yaml: audit.robustness.frozen: expected a list of feature names, got {frozen!r}"
        )


@dataclass(frozen=True)
class Policy:
    """The rules a version must pass, and the aliases they guard. ``allow_empty``: a policy
    with no rules passes (on purpose) instead of failing; ``declared``: keel.yaml names
    ``audit.policy`` or ``audit.gated_aliases``, so an empty policy there guards the alias."""

    rules: tuple[Rule, ...] = ()
    gated_aliases: tuple[str, ...] = DEFAULT_GATED
    allow_empty: bool = False
    declared: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Policy:
        """The policy in a project's settings (``keel.yaml``'s ``audit`` section)."""
        audit = (settings or {}).get("audit") or {}
        if not isinstance(audit, Mapping):
            raise InvalidInput(f"keel.yaml: audit: expected a mapping, got {audit!r}")
        from keel.audit._card_sections import STATEMENT_KEYS

        known = [
            "sensitive",
            "policy",
            "gated_aliases",
            "allow_empty",
            "robustness",
            *STATEMENT_KEYS,
        ]
        unknown = sorted(set(map(str, audit)) - set(known))
        if unknown:
            near = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidInput(
                f"keel.yaml: audit.{unknown[0]}: unknown key{hint}; expected some of "
                f"{', '.join(known)}"
            )
        rules = audit.get("policy") or []
        if not isinstance(rules, list):
            raise InvalidInput(
                f"keel.yaml: audit.policy: expected a list of rules, got {type(rules).__name__}"
            )
        gated = audit.get("gated_aliases", list(DEFAULT_GATED))
        if not isinstance(gated, list) or not all(isinstance(a, str) for a in gated):
            raise InvalidInput(
                f"keel.yaml: audit.gated_aliases: expected a list of aliases, got {gated!r}"
            )
        allow_empty = audit.get("allow_empty", False)
        if not isinstance(allow_empty, bool):
            raise InvalidInput(
                f"keel.yaml: audit.allow_empty: expected true or false, got {allow_empty!r}"
            )
        _check_robustness(audit.get("robustness"))
        parsed = tuple(Rule.parse(r, f"keel.yaml: audit.policy[{i}]") for i, r in enumerate(rules))
        declared = "policy" in audit or "gated_aliases" in audit
        return cls(parsed, tuple(gated), allow_empty, declared)

    @property
    def empty_problem(self) -> str | None:
        """Why this policy cannot pass for having no rules; None when it has rules or
        ``allow_empty`` is set."""
        if self.rules or self.allow_empty:
            return None
        return f"the project's audit policy has no rules, so nothing would be checked; {_EMPTY_FIX}"

    def check_paths(
        self, values: Mapping[str, float], doc: Mapping[str, Any] | None = None
    ) -> None:
        """Refuse rules whose path names no number in ``values``, suggesting the nearest
        paths of the same section. A rule on a section the evidence does not hold at all
        (``doc`` given) is not refused here: the gate fails it (see :func:`gate`)."""
        for rule in self.rules:
            if rule.path in values:
                continue
            section = rule.path.split(".", 1)[0]
            if doc is not None and section not in doc:
                continue
            same = sorted(p for p in values if p.split(".", 1)[0] == section)
            pool = same or sorted(values)
            near = difflib.get_close_matches(rule.path, pool, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            listed = [p for p in pool if not p.endswith((".ci_low", ".ci_high", ".n_valid"))]
            raise InvalidInput(
                f"policy rule {str(rule)!r}: unknown evidence path {rule.path!r}{hint} "
                f"Paths{' in ' + section if same else ''}: {', '.join(listed[:40])}"
                + (f" … ({len(listed)} in all)" if len(listed) > 40 else "")
            )


@dataclass(frozen=True)
class GateResult:
    """Each rule with the value found and whether it passed. A result with no checks is
    ``empty``: it has not passed unless the policy allows that on purpose (``allow_empty``);
    ``note`` says which."""

    model: str
    evidence_id: int | None
    checks: tuple[dict[str, Any], ...]
    allow_empty: bool = False

    @property
    def empty(self) -> bool:
        return not self.checks

    @property
    def passed(self) -> bool:
        if self.empty:
            return self.allow_empty
        return all(c["passed"] for c in self.checks)

    @property
    def note(self) -> str | None:
        """A sentence about an empty result; None when there were rules to check."""
        if not self.empty:
            return None
        if self.allow_empty:
            return (
                "the project's audit policy has no rules, and keel.yaml says that is on "
                "purpose (audit.allow_empty: true): nothing was checked"
            )
        return f"the project's audit policy has no rules: nothing was checked; {_EMPTY_FIX}"

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "evidence_id": self.evidence_id,
            "passed": self.passed,
            "empty": self.empty,
            "note": self.note,
            "checks": list(self.checks),
        }


def evidence_values(doc: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number in an evidence document by its dotted path. A metric stored as
    ``{"value": v, "low": l, "high": h, ...}`` is reachable as ``path`` (its value) and
    ``path.low``/``path.high``; booleans count as 0/1; lists are skipped (curves, tables)."""
    out: dict[str, float] = {}
    for key, v in doc.items():
        path = f"{prefix}{key}"
        if isinstance(v, bool):
            out[path] = float(v)
        elif isinstance(v, int | float):
            if math.isfinite(v):
                out[path] = float(v)
        elif isinstance(v, Mapping):
            inner = v.get("value")
            if isinstance(inner, int | float) and not isinstance(inner, bool):
                if math.isfinite(inner):
                    out[path] = float(inner)
            out.update(evidence_values(v, path + "."))
    return out


def gate(store: Any, ref: str, policy: Policy | None = None) -> GateResult:
    """Run ``policy`` (default: the project's) on the latest evidence of version ``ref``.
    A policy with no rules gives an ``empty`` result that has not passed unless the policy
    has ``allow_empty``. Raises :class:`ValidationFailed` when the version has no evidence, and
    :class:`InvalidInput` for a rule whose path the evidence does not have."""
    from keel.audit._evidence import get_evidence

    if policy is None:
        policy = Policy.from_settings(getattr(store, "settings", None))
    ev = get_evidence(store, ref, missing_ok=True)
    if ev is None:
        raise ValidationFailed(f"gate: {ref} has no audit evidence; run 'keel audit {ref}' first")
    values = evidence_values(ev.doc)
    policy.check_paths(values, ev.doc)
    skipped = ev.doc.get("skipped") or {}
    checks = []
    for rule in policy.rules:
        got = values.get(rule.path)
        check = {
            "rule": str(rule),
            "path": rule.path,
            "op": rule.op,
            "threshold": rule.value,
            "value": got,
            "passed": got is not None and bool(_OPS[rule.op](got, rule.value)),
        }
        if got is None:  # the evidence has no such section: the rule cannot pass
            section = rule.path.split(".", 1)[0]
            why = skipped.get(section)
            check["missing"] = f"the evidence has no {section} section" + (
                f" (skipped: {why})" if why else f"; run 'keel audit {ev.ref}' with it"
            )
        checks.append(check)
    return GateResult(ev.ref, ev.id, tuple(checks), policy.allow_empty)


def enforce(
    store: Any,
    ref: str,
    alias: str,
    *,
    override: str | None = None,
    who: str | None = None,
    record: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> list[str]:
    """The check :func:`keel.registry.set_alias` runs before moving ``alias`` to ``ref``:
    nothing when the project's policy does not gate ``alias``, declares no policy at all
    (neither ``audit.policy`` nor ``audit.gated_aliases``), or is empty with ``allow_empty``.
    Else the gates must pass (a declared policy with no rules does not) — the checks are
    recorded as a ``gate_passed`` event — or ``override`` (a reason) must be given — then the
    override, the checks and the failed rules are recorded as a ``gate_override`` event
    (:func:`alias_trail` pairs these with the moves). Returns the failed rules that were
    overridden (empty when none failed). Raises :class:`ValidationFailed` naming every failed
    rule, changing nothing. ``record``: a list to append the event to (``(kind, subject,
    payload)``), which :func:`keel.registry.set_alias` writes in the move's own transaction;
    without it the event is written here."""
    from keel import config, registry

    policy = Policy.from_settings(getattr(store, "settings", None))
    if alias not in policy.gated_aliases:
        return []
    if not policy.rules and (policy.allow_empty or not policy.declared):
        return []
    if override is not None and (not isinstance(override, str) or not override.strip()):
        raise InvalidInput(f"override: expected a reason, got {override!r}")
    mv = registry.get_version(store, ref)
    result: GateResult | None = None
    if policy.empty_problem:
        problems = [policy.empty_problem]
    else:
        try:
            result = gate(store, mv.ref, policy)
            problems = [
                f"{c['rule']} ({c['missing']})"
                if c.get("missing")
                else f"{c['rule']} (got {c['value']:.4g})"
                for c in result.failed
            ]
        except ValidationFailed as exc:  # no evidence yet
            problems = [str(exc)]
    if not problems:
        assert result is not None
        _record(
            store,
            record,
            "gate_passed",
            mv.ref,
            {
                "alias": alias,
                "who": who or config.user(),
                "evidence_id": result.evidence_id,
                "checks": list(result.checks),
            },
        )
        return []
    if override is None:
        raise ValidationFailed(
            f"alias {alias!r}: {mv.ref} fails the project's gates: {'; '.join(problems)}. "
            f"Fix the model, or move the alias with --override REASON (override= in Python) "
            f"to record why it ships anyway"
        )
    _record(
        store,
        record,
        "gate_override",
        mv.ref,
        {
            "alias": alias,
            "reason": override,
            "who": who or config.user(),
            "failed": problems,
            "evidence_id": result.evidence_id if result else None,
            "checks": list(result.checks) if result else [],
        },
    )
    return problems


def _record(
    store: Any,
    record: list[tuple[str, str, dict[str, Any]]] | None,
    kind: str,
    subject: str,
    payload: dict[str, Any],
) -> None:
    if record is not None:
        record.append((kind, subject, payload))
        return
    with store.write() as conn:
        store.add_event(conn, kind, subject, payload)


def alias_trail(store: Any, name: str) -> list[dict[str, Any]]:
    """Every alias move of model ``name``, oldest first (:func:`keel.registry.alias_history`:
    ``alias``, ``from_version``, ``to_version``, ``who``, ``at``, ``why``), each with
    ``gate``: what the gates said when it moved — ``status`` ``passed`` (with its ``checks``
    and ``evidence_id``), ``overridden`` (also ``override``: ``reason``, ``who`` and the
    ``failed`` rules), ``removed`` (the alias was taken away), ``not_gated`` (today's policy
    does not gate the alias, and no check was recorded) or ``unrecorded`` (a gated alias moved
    before keel recorded passes)."""
    from keel import registry

    moves = registry.alias_history(store, name)
    try:
        gated = set(Policy.from_settings(getattr(store, "settings", None)).gated_aliases)
    except InvalidInput:
        gated = set(DEFAULT_GATED)
    prefix = f"{name}/"
    checks = [
        e
        for kind in ("gate_passed", "gate_override")
        for e in store.events(kind)
        if str(e["subject"]).startswith(prefix)
    ]
    checks.sort(key=lambda e: e["id"])
    used: set[int] = set()
    out = []
    for move in moves:
        gate_info: dict[str, Any]
        to = move.get("to_version")
        found = None
        if to is not None:
            ref = f"{name}/{to}"
            for e in checks:  # the newest check of this alias and version before the move
                if e["at"] > move["at"]:
                    break
                same = e["subject"] == ref and e["payload"].get("alias") == move["alias"]
                if same and e["id"] not in used:
                    found = e
        if to is None:
            gate_info = {"status": "removed"}
        elif found is None:
            gate_info = {"status": "unrecorded" if move["alias"] in gated else "not_gated"}
        else:
            used.update(
                e["id"]
                for e in checks
                if e["id"] <= found["id"]
                and e["subject"] == found["subject"]
                and e["payload"].get("alias") == move["alias"]
            )
            p = found["payload"]
            gate_info = {
                "status": "passed" if found["kind"] == "gate_passed" else "overridden",
                "evidence_id": p.get("evidence_id"),
                "checks": list(p.get("checks") or []),
            }
            if found["kind"] == "gate_override":
                gate_info["override"] = {
                    "reason": p.get("reason"),
                    "who": p.get("who"),
                    "failed": list(p.get("failed") or []),
                }
        out.append({**move, "gate": gate_info})
    return out
