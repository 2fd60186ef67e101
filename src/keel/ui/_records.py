"""What the Run and Compare pages read about runs: a run by id (or unique prefix), a few
runs with their params and last metric values, metric histories as columns, and the
lineage around a run. Reads only; each query bounded by the runs asked for."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from keel.errors import NotFound
from keel.store import _tables
from keel.ui._filter import metric_last
from keel.ui._query import metric_keys_of

__all__ = [
    "histories",
    "last_metric_id",
    "lineage_graph",
    "metric_counts",
    "resolve_run",
    "run_records",
]

_R, _P, _M, _A = _tables.runs, _tables.params, _tables.metrics, _tables.artifacts
_KEY_CHUNK = 200


def resolve_run(conn: Any, run_id: str) -> str:
    """The full id of the run ``run_id`` names (a unique prefix is enough)."""
    if not run_id or len(run_id) > 64:
        raise NotFound(f"run {run_id[:64]!r} does not exist")
    rows = conn.execute(
        select(_R.c.id).where(_R.c.id.startswith(run_id, autoescape=True)).limit(2)
    ).all()
    if len(rows) != 1:
        why = "is ambiguous (give more of its id)" if rows else "does not exist"
        raise NotFound(f"run {run_id!r} {why}")
    return str(rows[0][0])


def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return text


def run_records(conn: Any, ids: list[str], *, full: bool = False) -> list[dict[str, Any]]:
    """Runs ``ids`` in that order: attributes, tags, params, the last value of each metric
    (and with ``full``: environment, artifacts)."""
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(select(_R).where(_R.c.id.in_(ids)))}
    params: dict[str, dict[str, Any]] = {rid: {} for rid in ids}
    for rid, key, value in conn.execute(
        select(_P.c.run_id, _P.c.key, _P.c.value).where(_P.c.run_id.in_(ids)).order_by(_P.c.key)
    ):
        params[rid][key] = _loads(value, None)
    keys = sorted(conn.execute(metric_keys_of(ids)).scalars())
    metrics: dict[str, dict[str, float]] = {rid: {} for rid in ids}
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        cols = [metric_last(k).label(f"m{i}") for i, k in enumerate(chunk)]
        for row in conn.execute(select(_R.c.id, *cols).where(_R.c.id.in_(ids))):
            for i, k in enumerate(chunk):
                value = row[i + 1]
                if value is not None:
                    metrics[row[0]][k] = value
    artifacts: dict[str, list[dict[str, Any]]] = {rid: [] for rid in ids}
    if full:
        for rid, name, sha, size in conn.execute(
            select(_A.c.run_id, _A.c.name, _A.c.sha, _A.c.size)
            .where(_A.c.run_id.in_(ids))
            .order_by(_A.c.name)
        ):
            artifacts[rid].append({"name": name, "sha": sha, "size": size})
    out = []
    for rid in ids:
        r = rows.get(rid)
        if r is None:
            continue
        tags = _loads(r.tags_json, {})
        rec: dict[str, Any] = {
            "id": r.id,
            "name": tags.get("name") if isinstance(tags, dict) else None,
            "experiment": r.experiment,
            "status": r.status,
            "reason": r.status_reason,
            "created_at": r.created_at,
            "ended_at": r.ended_at,
            "wall_time": r.wall_time,
            "seed": r.seed,
            "git_commit": r.git_commit,
            "created_by": r.created_by,
            "tags": tags,
            "params": params[rid],
            "metrics": metrics[rid],
        }
        if full:
            rec.update(
                env=_loads(r.env_json, {}),
                host=r.host,
                pid=r.pid,
                heartbeat_at=r.heartbeat_at,
                artifacts=artifacts[rid],
            )
        out.append(rec)
    return out


def metric_counts(conn: Any, run_id: str) -> dict[str, int]:
    """How many points each metric of the run has."""
    return {
        k: n
        for k, n in conn.execute(
            select(_M.c.key, func.count())
            .where(_M.c.run_id == run_id)
            .group_by(_M.c.key)
            .order_by(_M.c.key)
        )
    }


def last_metric_id(conn: Any, run_id: str) -> int:
    return int(conn.execute(select(func.max(_M.c.id)).where(_M.c.run_id == run_id)).scalar() or 0)


def histories(conn: Any, run_ids: list[str], keys: list[str]) -> dict[str, dict[str, Any]]:
    """``{run_id: {key: {"steps": [...], "values": [...]}}}``: each history in step order,
    as two columns (what a chart reads), never one object per point."""
    out: dict[str, dict[str, Any]] = {rid: {} for rid in run_ids}
    if not run_ids or not keys:
        return out
    q = (
        select(_M.c.run_id, _M.c.key, _M.c.step, _M.c.value)
        .where(_M.c.run_id.in_(run_ids), _M.c.key.in_(keys))
        .order_by(_M.c.run_id, _M.c.key, _M.c.step, _M.c.id)
    )
    cur_run, cur_key = None, None
    steps: list[Any] = []
    values: list[Any] = []
    for rid, key, step, value in conn.execute(q):
        if rid != cur_run or key != cur_key:
            steps, values = [], []
            out[rid][key] = {"steps": steps, "values": values}
            cur_run, cur_key = rid, key
        steps.append(step)
        values.append(value)
    return out


def lineage_graph(store: Any, run_id: str) -> dict[str, Any]:
    """``{"nodes": [{"id", "kind", "label", "href", "depth"}], "edges": [{"from", "to",
    "role"}]}`` around a run: what it was made from (data sets and their sources, to the
    left: negative depth) and the model versions made from it (to the right)."""
    from keel.store import describe, lineage

    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    def add(kind: str, ident: str, depth: int, label: str | None = None) -> str:
        key = f"{kind}:{ident}"
        if key not in nodes:
            href = f"/runs/{ident}" if kind == "run" else None
            if kind == "model" and "/" in ident:
                name, _, version = ident.rpartition("/")
                href = f"/models/{name}?version={version}"
            nodes[key] = {
                "id": key,
                "kind": kind,
                "label": label or ident,
                "href": href,
                "depth": depth,
            }
        return key

    root = lineage(store, "run", run_id, max_depth=4)
    add("run", run_id, 0, run_id[:12])

    def walk(node: Any, depth: int) -> None:
        child = f"{node.kind}:{node.id}"
        for parent in node.parents:
            info = describe(store, parent)
            key = add(parent.kind, parent.id, depth - 1, str(info.get("label") or parent.id))
            edges.append({"from": key, "to": child, "role": parent.role})
            walk(parent, depth - 1)

    walk(root, 0)
    t = _tables.lineage
    with store.read() as conn:
        for kind, ident, role in conn.execute(
            select(t.c.child_kind, t.c.child_id, t.c.role)
            .where(t.c.parent_kind == "run", t.c.parent_id == run_id)
            .order_by(t.c.id)
            .limit(200)
        ):
            key = add(kind, ident, 1)
            edges.append({"from": f"run:{run_id}", "to": key, "role": role})
    return {"nodes": list(nodes.values()), "edges": edges}
