"""What the store records about a version after its release, for the model card: its rows in
the prediction log, the monitoring passes over its traffic, the alert rules checked on those
passes and the alerts they fired; and the file a declaration of conformity names.

These are the records that can back a monitoring claim. The project's plan in ``keel.yaml``
says what is meant to happen; only these say that it did (see :mod:`._card_compliance`)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keel.errors import NotFound

__all__ = [
    "alert_rules",
    "declaration_file",
    "deployed_performance",
    "monitoring_records",
    "window_key",
]

#: Numbers of a monitoring pass's ``performance`` that count rows, not how well it did.
_COUNTS = {"labeled", "needed", "invalid_labels"}


def window_key(model: str, window: Mapping[str, Any]) -> str:
    """The key :class:`keel.monitor.Window` gives the window a pass described (the alert checks
    of the same pass carry it)."""
    rows = window.get("rows") or 0
    lo, hi = window.get("ts_min"), window.get("ts_max")
    if not rows or lo is None or hi is None:
        return f"{model}:empty"
    return f"{model}:{float(lo):.3f}-{float(hi):.3f}:{rows}"


def _prediction_log(store: Any, name: str, version: int) -> dict[str, Any] | None:
    from sqlalchemy import func, select

    from keel.store import _tables

    t = _tables.prediction_segments
    q = select(func.count(), func.sum(t.c.n_rows), func.min(t.c.ts_min), func.max(t.c.ts_max))
    with store.read() as conn:
        n, rows, first, last = conn.execute(
            q.where(t.c.model == name, t.c.version == version)
        ).one()
    if not n:
        return None
    return {"segments": int(n), "rows": int(rows or 0), "first": first, "last": last}


def monitoring_records(store: Any, mv: Any) -> dict[str, Any]:
    """``prediction_log`` (segments, rows and time span this version answered, or None),
    ``passes`` (monitoring passes whose window held its traffic or that it served),
    ``alert_checks`` and ``alerts`` (rules checked on those windows, and those that fired)."""
    passes = []
    for e in store.events("monitor"):
        payload = e.get("payload") or {}
        window = payload.get("window") or {}
        if e.get("subject") != mv.name:
            continue
        if payload.get("served") == mv.ref or mv.version in (window.get("versions") or []):
            passes.append(
                {
                    "id": e["id"],
                    "at": e["at"],
                    "window": window,
                    "served": payload.get("served"),
                    "values": {  # a JSON-safe card: finite numbers and texts only
                        k: x
                        for k, x in (payload.get("values") or {}).items()
                        if not (isinstance(x, float) and not math.isfinite(x))
                    },
                }
            )
    keys = {window_key(mv.name, p["window"]) for p in passes}

    def of_passes(kind: str) -> list[dict[str, Any]]:
        return [
            {"id": e["id"], "at": e["at"], **(e.get("payload") or {})}
            for e in store.events(kind)
            if e.get("subject") == mv.name and (e.get("payload") or {}).get("window") in keys
        ]

    return {
        "prediction_log": _prediction_log(store, mv.name, mv.version),
        "passes": passes,
        "alert_checks": of_passes("alert_check"),
        "alerts": of_passes("alert"),
    }


def deployed_performance(passes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The passes that measured performance on delayed labels: ``{"id", "at", "metrics"}``."""
    out = []
    for p in passes:
        metrics = {
            k.split(".", 1)[1]: v
            for k, v in (p.get("values") or {}).items()
            if k.startswith("performance.")
            and k.split(".", 1)[1] not in _COUNTS
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }
        if metrics:
            out.append({"id": p["id"], "at": p["at"], "metrics": metrics})
    return out


def alert_rules(settings: Mapping[str, Any] | None) -> list[str]:
    """The names of the alert rules ``keel.yaml`` declares (``monitor.alerts``): a plan."""
    mon = (settings or {}).get("monitor")
    rules = mon.get("alerts") if isinstance(mon, Mapping) else None
    if isinstance(rules, Mapping):
        rules = rules.get("rules", list(rules))
    if not isinstance(rules, list):
        return []
    out = []
    for i, r in enumerate(rules):
        name = r.get("name") if isinstance(r, Mapping) else r
        out.append(str(name) if name else f"rule {i + 1}")
    return out


def declaration_file(store: Any, where: Any) -> dict[str, Any] | None:
    """The file a stated declaration of conformity names, when it exists (a path relative to
    the project folder, or absolute): its path, size and sha256; None otherwise."""
    if not isinstance(where, str) or not where or "://" in where:
        return None
    path = Path(where)
    root = getattr(store, "project_root", None)
    if not path.is_absolute():
        if root is None:
            return None
        path = Path(root) / path
    try:
        if not path.is_file():
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return {"path": where, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _children(store: Any, parent: str, name: str) -> list[Any]:
    """The versions of ``name`` mitigated straight from version ``parent``."""
    from keel import registry
    from keel import store as st

    out = []
    for v in registry.list_versions(store, name):
        if not v.tags.get("mitigation"):
            continue
        parents = st.lineage(store, "model", v.ref, max_depth=1).parents
        if any(
            p.kind == "model" and p.role == "mitigated_from" and p.id == parent for p in parents
        ):
            out.append(v)
    return out


def mitigation_family(store: Any, mv: Any, chain: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Every mitigation of one base version, with the before/after table each stored (all on
    the base's hold-out rows, so their figures compare): the base is the version ``mv`` was
    mitigated from (``chain[0]``), or ``mv`` itself when mitigations were made from it.
    ``{"base", "members": [{"ref", "method", "constraint", "table"}]}``; None when there is
    no mitigation to compare."""
    from keel.audit.mitigate import mitigation_of

    base = chain[0]["ref"] if chain else mv.ref
    members = []
    for v in _children(store, base, mv.name):
        table = mitigation_of(store, v.ref)
        if not table:
            continue
        settings = table.get("settings") or {}
        members.append(
            {
                "ref": v.ref,
                "method": settings.get("method") or v.tags.get("mitigation"),
                "constraint": settings.get("constraint"),
                "table": table,
            }
        )
    return {"base": base, "members": members} if members else None


def _datasets(store: Any, ref: str) -> frozenset[str]:
    from keel import store as st

    return frozenset(n.id for n in st.lineage(store, "model", ref).walk() if n.kind == "dataset")


def dp_siblings(store: Any, mv: Any, privacy: Any) -> list[dict[str, Any]]:
    """When ``mv`` is differentially private: every version of its name of the same model kind,
    trained from the same datasets, whose latest evidence records a finite ε
    (``privacy.dp.epsilon``), with that evidence's hold-out accuracy (and interval) and
    membership-inference advantage. Empty for a version that is not DP."""
    from keel import registry
    from keel.audit._evidence import get_evidence
    from keel.train import get_run

    dp = (privacy or {}).get("dp") if isinstance(privacy, Mapping) else None
    if not isinstance(dp, Mapping) or not dp.get("differentially_private"):
        return []

    def kind(v: Any) -> Any:
        try:
            return (get_run(store, v.run_id)["params"] or {}).get("model") if v.run_id else None
        except NotFound:
            return None

    mine, data = kind(mv), _datasets(store, mv.ref)
    out = []
    for v in registry.list_versions(store, mv.name):
        ev = get_evidence(store, v.ref, missing_ok=True)
        doc = ev.doc if ev is not None else {}
        eps = ((doc.get("privacy") or {}).get("dp") or {}).get("epsilon")
        acc = (doc.get("performance") or {}).get("accuracy")
        if not isinstance(eps, int | float) or not math.isfinite(eps) or eps <= 0:
            continue
        if not isinstance(acc, Mapping) or not isinstance(acc.get("value"), int | float):
            continue
        if v.ref != mv.ref and (kind(v) != mine or _datasets(store, v.ref) != data):
            continue
        mia = (doc.get("privacy") or {}).get("mia") or {}
        out.append(
            {
                "ref": v.ref,
                "evidence_id": ev.id if ev is not None else None,
                "epsilon": float(eps),
                "accuracy": acc.get("value"),
                "ci_low": acc.get("ci_low"),
                "ci_high": acc.get("ci_high"),
                "mia_advantage": mia.get("advantage"),
            }
        )
    return sorted(out, key=lambda r: (r["epsilon"], r["ref"]))
