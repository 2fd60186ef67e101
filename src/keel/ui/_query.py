"""The runs table's query: one page of runs, filtered, sorted and with the columns asked
for, computed in SQL. Two round trips: the page's ids (filter, order, offset, limit), then
the page's columns by id, so a metric column costs one index lookup per shown run rather
than one per run in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from keel.store import _tables
from keel.ui._filter import (
    ATTRIBUTES,
    Compiler,
    Field,
    FilterError,
    metric_last,
    parse_field,
    parse_filter,
)

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "MAX_COLUMNS",
    "MAX_LIMIT",
    "RunsQuery",
    "column_keys",
    "runs_page",
]

_R, _P, _M = _tables.runs, _tables.params, _tables.metrics
MAX_LIMIT = 500
MAX_COLUMNS = 200
#: Columns shown when none are asked for (before the metrics and params of the page's runs).
DEFAULT_ATTRIBUTES = ("name", "experiment", "status", "created_at", "wall_time")
_DEFAULT_SORT = "-created_at"


@dataclass(frozen=True)
class RunsQuery:
    """What the runs table asks for: ``sort`` is a field, ``-`` in front for descending;
    ``cols`` the fields to show (empty: attributes, then the metrics and params of the
    runs on the page)."""

    experiment: str | None = None
    filter: str | None = None
    sort: str = _DEFAULT_SORT
    cols: tuple[str, ...] = ()
    offset: int = 0
    limit: int = 50


def _split_fields(text: str, what: str) -> list[Field]:
    fields: list[Field] = []
    pos = 1
    for part in _split_commas(text):
        name = part.strip()
        if name:
            try:
                fields.append(parse_field(name, pos + len(part) - len(part.lstrip())))
            except FilterError as exc:
                message = str(exc).replace("filter:", f"{what}:", 1)
                raise FilterError(message, exc.position, name) from None
        pos += len(part) + 1
    return fields


def _split_commas(text: str) -> list[str]:
    """Split on commas outside backticks (a key in backticks may hold a comma)."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == "`":
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_sort(text: str | None) -> tuple[Field, bool]:
    text = (text or _DEFAULT_SORT).strip()
    descending = text.startswith("-")
    name = text.lstrip("-+").strip()
    try:
        return parse_field(name, 2 if descending else 1), descending
    except FilterError as exc:
        raise FilterError(str(exc).replace("filter:", "sort:", 1), exc.position, name) from None


def runs_page(store: Any, q: RunsQuery) -> dict[str, Any]:
    """``{"total", "offset", "limit", "sort", "columns": [{name, kind, key}], "rows":
    [{"id", "cells": [..]}]}``: cells in the order of ``columns``; a run lacking a value has
    null there."""
    dialect = store.dialect
    compiler = Compiler(dialect)
    where = compiler.where(parse_filter(q.filter))
    sort_field, descending = parse_sort(q.sort)
    asked = _split_fields(",".join(q.cols), "cols") if q.cols else []
    limit = max(1, min(int(q.limit), MAX_LIMIT))
    offset = max(0, int(q.offset))

    conds = []
    if q.experiment:
        conds.append(_R.c.experiment == q.experiment)
    if where is not None:
        conds.append(where)
    order = [*compiler.order(sort_field, descending), _R.c.created_at.desc(), _R.c.id]
    # with a filter, count in the same pass (the filter is the costly part); without one,
    # a bare count is all but free
    counted = where is not None
    cols = [_R.c.id, func.count().over().label("total")] if counted else [_R.c.id]
    ids_q = (
        select(*cols)
        .select_from(compiler.from_())
        .where(*conds)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    )
    with store.read() as conn:
        found = conn.execute(ids_q).all()
        ids = [r[0] for r in found]
        if counted and found:
            total = found[0][1]
        else:
            total = conn.execute(
                select(func.count()).select_from(compiler.from_()).where(*conds)
            ).scalar_one()
        columns = asked or _default_columns(conn, ids)
        rows = _cells(conn, ids, columns, dialect)
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "sort": ("-" if descending else "") + sort_field.name,
        "columns": [{"name": f.name, "kind": f.kind, "key": f.key} for f in columns],
        "rows": rows,
    }


def _default_columns(conn: Any, ids: list[str]) -> list[Field]:
    fields = [Field("attribute", a) for a in DEFAULT_ATTRIBUTES]
    if not ids:
        return fields
    mkeys = conn.execute(metric_keys_of(ids)).scalars()
    pkeys = conn.execute(select(_P.c.key).where(_P.c.run_id.in_(ids)).distinct()).scalars()
    fields += [Field("metrics", k) for k in sorted(mkeys)]
    fields += [Field("params", k) for k in sorted(pkeys)]
    return fields[:MAX_COLUMNS]


def metric_keys_of(ids: list[str]) -> Any:
    """The distinct metric keys of runs ``ids``, by skipping through the (run_id, key,
    step) index: one seek per run and key, however long each metric's history is."""
    first = select(func.min(_M.c.key)).where(_M.c.run_id == _R.c.id).scalar_subquery()
    seed = select(_R.c.id.label("run_id"), first.label("key")).where(_R.c.id.in_(ids))
    keys = seed.cte("metric_keys", recursive=True)
    step = (
        select(func.min(_M.c.key))
        .where(_M.c.run_id == keys.c.run_id, _M.c.key > keys.c.key)
        .scalar_subquery()
    )
    keys = keys.union_all(select(keys.c.run_id, step).where(keys.c.key.is_not(None)))
    return select(keys.c.key).where(keys.c.key.is_not(None)).distinct()


def _cells(conn: Any, ids: list[str], columns: list[Field], dialect: str) -> list[dict]:
    if not ids:
        return []
    if len(columns) > MAX_COLUMNS:
        raise FilterError(
            f"cols: at most {MAX_COLUMNS} columns, got {len(columns)}",
            1,
            columns[MAX_COLUMNS].name,
        )
    base = [_R.c.id, _R.c.tags_json] + [_R.c[a] for a in ATTRIBUTES if a not in ("id", "name")]
    metric_cols = [
        metric_last(f.key).label(f"m{i}") for i, f in enumerate(columns) if f.kind == "metrics"
    ]
    rows = {r.id: r for r in conn.execute(select(*base, *metric_cols).where(_R.c.id.in_(ids)))}
    pkeys = sorted({f.key for f in columns if f.kind == "params"})
    params: dict[tuple[str, str], Any] = {}
    if pkeys:
        for rid, key, value in conn.execute(
            select(_P.c.run_id, _P.c.key, _P.c.value).where(
                _P.c.run_id.in_(ids), _P.c.key.in_(pkeys)
            )
        ):
            params[(rid, key)] = _json_or_text(value)
    out = []
    for rid in ids:
        r = rows[rid]
        tags = json.loads(r.tags_json or "{}")
        cells: list[Any] = []
        for i, f in enumerate(columns):
            if f.kind == "metrics":
                cells.append(getattr(r, f"m{i}"))
            elif f.kind == "params":
                cells.append(params.get((rid, f.key)))
            elif f.kind == "tags":
                cells.append(tags.get(f.key))
            elif f.key == "name":
                cells.append(tags.get("name"))
            else:
                cells.append(getattr(r, f.key))
        out.append({"id": rid, "name": tags.get("name"), "cells": cells})
    return out


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def column_keys(store: Any, experiment: str | None = None) -> dict[str, list[str]]:
    """Every field the runs (of ``experiment``) have: ``{"attributes", "metrics",
    "params", "tags"}``, each sorted."""
    with store.read() as conn:
        scope = select(_R.c.id)
        if experiment:
            scope = scope.where(_R.c.experiment == experiment)
        mq = select(_M.c.key).distinct()
        pq = select(_P.c.key).distinct()
        if experiment:
            mq = mq.where(_M.c.run_id.in_(scope))
            pq = pq.where(_P.c.run_id.in_(scope))
        metrics = sorted(conn.execute(mq).scalars())
        params = sorted(conn.execute(pq).scalars())
        tags: set[str] = set()
        tq = select(_R.c.tags_json).distinct()
        if experiment:
            tq = tq.where(_R.c.experiment == experiment)
        for (text,) in conn.execute(tq):
            tags.update(json.loads(text or "{}"))
    return {
        "attributes": list(ATTRIBUTES),
        "metrics": metrics,
        "params": params,
        "tags": sorted(tags),
    }
