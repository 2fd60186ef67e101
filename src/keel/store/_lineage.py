"""Lineage is a query: walk the edges from a record to everything it was made from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select

from keel.store import _tables

if TYPE_CHECKING:
    from keel.store._store import Store

__all__ = ["LineageNode", "describe", "lineage"]


@dataclass
class LineageNode:
    kind: str
    id: str
    role: str = ""
    parents: list[LineageNode] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "id": self.id,
            "role": self.role,
            "parents": [p.to_dict() for p in self.parents],
        }

    def walk(self) -> Iterator[LineageNode]:
        yield self
        for p in self.parents:
            yield from p.walk()


def lineage(store: Store, kind: str, id: str, *, max_depth: int = 20) -> LineageNode:
    """The tree of everything ``(kind, id)`` was made from, nearest parents first."""
    t = _tables.lineage
    root = LineageNode(kind, id)
    with store.read() as conn:
        frontier = [(root, 0)]
        seen = {(kind, id)}
        while frontier:
            node, depth = frontier.pop(0)
            if depth >= max_depth:
                continue
            rows = conn.execute(
                select(t.c.parent_kind, t.c.parent_id, t.c.role)
                .where(t.c.child_kind == node.kind, t.c.child_id == node.id)
                .order_by(t.c.id)
            ).all()
            for pk, pid, role in rows:
                child = LineageNode(pk, pid, role)
                node.parents.append(child)
                if (pk, pid) not in seen:
                    seen.add((pk, pid))
                    frontier.append((child, depth + 1))
    return root


def describe(store: Store, node: LineageNode) -> dict:
    """Human details of one lineage node (dataset name/version and rows, source URI, …)."""
    import json

    t = _tables
    with store.read() as conn:
        if node.kind == "dataset":
            r = conn.execute(select(t.datasets).where(t.datasets.c.sha == node.id).limit(1)).first()
            if r is not None:
                return {"label": f"{r.name}/{r.version}", "rows": r.n_rows, "columns": r.n_cols}
        elif node.kind == "source":
            r = conn.execute(select(t.sources).where(t.sources.c.sha == node.id)).first()
            if r is not None:
                return {"label": r.uri, "bytes": r.size}
        elif node.kind == "run":
            r = conn.execute(select(t.runs).where(t.runs.c.id == node.id)).first()
            if r is not None:
                tags = json.loads(r.tags_json)
                return {"label": r.id[:12], "experiment": r.experiment, **tags}
    return {"label": node.id if node.kind != "blob" else f"{node.id[:12]}…"}
