"""Who did what: every record that changes the shared store, with the user who made it, in
time order (``keel log``).

Each record keeps its maker (``KEEL_USER``, else the operating-system account of the
process; see :func:`keel.config.user`): data sets (``created_by``), runs, registered
versions, alias moves (``who`` and ``why``), audits (evidence), pipeline runs, and the
events that carry a ``who`` in their payload, such as a gate override. API keys live in a
key file beside the server, not in the store, so a key change is not listed here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from keel.errors import InvalidInput
from keel.store import _tables
from keel.store._store import Store

__all__ = ["Activity", "activity"]


@dataclass(frozen=True)
class Activity:
    """One change to the shared store: when, who, what, on which subject."""

    at: float
    who: str
    action: str
    subject: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def activity(store: Store, *, limit: int = 100, who: str | None = None) -> list[Activity]:
    """The newest ``limit`` changes to ``store`` (newest first), or only ``who``'s."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit: expected a whole number ≥ 1, got {limit!r}")
    t = _tables
    found: list[Activity] = []

    def newest(table: Any, stamp: Any, maker: Any) -> Any:
        q = select(table).order_by(stamp.desc()).limit(limit)
        return q.where(maker == who) if who is not None else q

    with store.read() as conn:
        for r in conn.execute(newest(t.datasets, t.datasets.c.created_at, t.datasets.c.created_by)):
            found.append(
                Activity(
                    r.created_at,
                    r.created_by,
                    "ingest",
                    f"{r.name}/{r.version}",
                    f"{r.n_rows:,} rows, sha256 {r.sha[:12]}",
                )
            )
        for r in conn.execute(newest(t.runs, t.runs.c.created_at, t.runs.c.created_by)):
            found.append(
                Activity(r.created_at, r.created_by, "run", r.id, f"{r.experiment}: {r.status}")
            )
        mv = t.model_versions
        for r in conn.execute(newest(mv, mv.c.created_at, mv.c.created_by)):
            found.append(
                Activity(r.created_at, r.created_by, "register", f"{r.name}/{r.version}", r.flavor)
            )
        ae = t.alias_events
        for r in conn.execute(newest(ae, ae.c.at, ae.c.who)):
            move = f"{r.from_version or '-'} → {r.to_version or '-'}"
            found.append(
                Activity(
                    r.at,
                    r.who,
                    "alias",
                    f"{r.name}@{r.alias}",
                    f"{move}: {r.why}" if r.why else move,
                )
            )
        ev = t.evidence
        for r in conn.execute(newest(ev, ev.c.created_at, ev.c.created_by)):
            found.append(
                Activity(
                    r.created_at,
                    r.created_by,
                    "audit",
                    f"{r.name}/{r.version}",
                    _sections(r.sections),
                )
            )
        pr = t.pipeline_runs
        for r in conn.execute(newest(pr, pr.c.created_at, pr.c.created_by)):
            found.append(
                Activity(r.created_at, r.created_by, "pipeline", r.pipeline, f"{r.id}: {r.status}")
            )
        # events carry their maker in the payload; read the newest that have one
        q = select(t.events).where(t.events.c.payload_json.like('%"who"%'))
        for r in conn.execute(q.order_by(t.events.c.at.desc()).limit(limit * 4)):
            payload = json.loads(r.payload_json)
            maker = payload.get("who")
            if not isinstance(maker, str) or (who is not None and maker != who):
                continue
            reason = payload.get("reason") or payload.get("why") or ""
            found.append(Activity(r.at, maker, r.kind, r.subject, str(reason)))
    found.sort(key=lambda a: a.at, reverse=True)
    return found[:limit]


def _sections(text: str) -> str:
    try:
        names = json.loads(text)
    except ValueError:
        return text
    return ", ".join(map(str, names)) if isinstance(names, list) else text
