"""Moving a project's store to another (``keel store migrate``): every blob, then every record.

Blobs go first (:func:`~keel.store.copy_blobs`: every hash checked, resumable), so no record
in the destination ever names a blob it lacks. Then the records, table by table in foreign-key
order. Before anything is written, every source row is compared with the destination: a row
whose primary key (or unique key) the destination holds with other values is a conflict, and
the migration is refused naming them, with nothing written. Rows the destination already
holds unchanged are skipped, so a migration interrupted half-way is resumed by running it
again. On PostgreSQL the id sequences are moved past the copied ids, so new records do not
collide with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Table, UniqueConstraint, insert, select, text

from keel.errors import Conflict
from keel.store import _tables
from keel.store._copy import CopyReport, copy_blobs

__all__ = ["MigrateReport", "migrate_store"]

_BATCH = 1000
_NAMED = 10


@dataclass
class MigrateReport:
    blobs: CopyReport = field(default_factory=CopyReport)
    copied: dict[str, int] = field(default_factory=dict)
    already_there: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "blobs": self.blobs.to_dict(),
            "records_copied": self.copied,
            "records_already_there": self.already_there,
        }


def _pk(table: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c.name] for c in table.primary_key.columns)


def _uniques(table: Table) -> list[list[str]]:
    return [
        [c.name for c in con.columns]
        for con in table.constraints
        if isinstance(con, UniqueConstraint)
    ]


def _describe(table: Table, row: dict[str, Any]) -> str:
    keys = ", ".join(f"{c.name}={row[c.name]!r}" for c in table.primary_key.columns)
    return f"{table.name}({keys})"


def _plan(src: Any, dst: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int], list[str]]:
    """Rows to insert per table, rows already there per table, and the conflicts."""
    todo: dict[str, list[dict[str, Any]]] = {}
    same: dict[str, int] = {}
    conflicts: list[str] = []
    with src.read() as s_conn, dst.read() as d_conn:
        for table in _tables.metadata.sorted_tables:
            theirs = [dict(r._mapping) for r in d_conn.execute(select(table))]
            by_pk = {_pk(table, r): r for r in theirs}
            by_unique = {
                (tuple(cols), tuple(r[c] for c in cols)): _pk(table, r)
                for cols in _uniques(table)
                for r in theirs
            }
            todo[table.name], same[table.name] = [], 0
            for row in (dict(r._mapping) for r in s_conn.execute(select(table))):
                there = by_pk.get(_pk(table, row))
                if there == row:
                    same[table.name] += 1
                    continue
                if there is not None:
                    conflicts.append(_describe(table, row))
                    continue
                clash = [
                    cols
                    for cols in _uniques(table)
                    if (tuple(cols), tuple(row[c] for c in cols)) in by_unique
                ]
                if clash:
                    conflicts.append(f"{_describe(table, row)} (same {', '.join(clash[0])})")
                    continue
                todo[table.name].append(row)
    return todo, same, conflicts


def migrate_store(
    src: Any,
    dst: Any,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> MigrateReport:
    """Copy every blob and record of store ``src`` into store ``dst``; refuse, naming them,
    if ``dst`` holds conflicting records. ``progress(table, rows)`` follows each batch."""
    todo, same, conflicts = _plan(src, dst)
    if conflicts:
        named = "; ".join(conflicts[:_NAMED])
        more = f" and {len(conflicts) - _NAMED} more" if len(conflicts) > _NAMED else ""
        raise Conflict(
            f"the destination store {dst.safe_url} already holds {len(conflicts)} record(s) "
            f"that differ from this project's: {named}{more}; nothing was written"
        )
    report = MigrateReport(already_there=same)
    report.blobs = copy_blobs(src.blobs, dst.blobs)  # blobs before the records naming them
    for table in _tables.metadata.sorted_tables:
        rows = todo[table.name]
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            with dst.write() as conn:
                conn.execute(insert(table), batch)
            if progress is not None:
                progress(table.name, len(batch))
        report.copied[table.name] = len(rows)
    if dst.dialect == "postgresql":
        _move_sequences(dst)
    return report


def _move_sequences(dst: Any) -> None:
    with dst.write() as conn:
        for table in _tables.metadata.sorted_tables:
            for col in table.primary_key.columns:
                if isinstance(col.type, Integer) and col.autoincrement is True:
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'),"
                            f" COALESCE(MAX({col.name}), 1), MAX({col.name}) IS NOT NULL)"
                            f" FROM {table.name}"
                        )
                    )
