"""Blobs that no record names (left by interrupted work), found and, when asked, deleted.

Marking is deliberately generous: a blob is kept when its sha256 appears anywhere in the
metadata (every text column of every table: ids, JSON payloads, lineage edges), or inside a
kept blob that is JSON (a model's manifest names its components' blobs), followed to any
depth. Of the rest, only blobs older than the grace period are garbage: a writer stores its
blobs before the record that names them, and a put of bytes already stored refreshes the
blob's time (``TOUCH_AFTER_S``), so a blob a writer is about to name is young. Before
deleting, the metadata is marked again and anything named since is spared.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, Text, select

from keel.errors import InvalidInput
from keel.store import _tables
from keel.store._s3 import BlobInfo

__all__ = ["GcReport", "collect_garbage", "referenced_blobs"]

_HEX = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_HEX_BYTES = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
#: JSON blobs up to this size are read for the blobs they name (manifests are a few KB).
_MAX_JSON_BYTES = 16 << 20
DEFAULT_GRACE_S = 24 * 3600.0


@dataclass
class GcReport:
    """What ``collect_garbage`` found: ``garbage`` (unnamed and older than the grace
    period), how many unnamed blobs were spared as young, and whether it deleted."""

    garbage: list[BlobInfo] = field(default_factory=list)
    young: int = 0
    kept: int = 0
    deleted: bool = False

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.garbage)

    def to_dict(self) -> dict[str, Any]:
        return {
            "garbage_blobs": len(self.garbage),
            "garbage_bytes": self.bytes,
            "young_unnamed_blobs": self.young,
            "kept_blobs": self.kept,
            "deleted": self.deleted,
            "shas": sorted(b.sha for b in self.garbage),
        }


def _named_in_metadata(store: Any) -> set[str]:
    found: set[str] = set()
    with store.read() as conn:
        for table in _tables.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String | Text)]
            if not cols:
                continue
            result = conn.execution_options(yield_per=10_000).execute(select(*cols))
            for row in result:
                for value in row:
                    if value:
                        found.update(_HEX.findall(str(value)))
    return found


def referenced_blobs(store: Any, stored: dict[str, BlobInfo] | None = None) -> set[str]:
    """Every sha256 the metadata names, plus those named inside named JSON blobs."""
    if stored is None:
        stored = {b.sha: b for b in store.blobs.iter_blobs()}
    named = _named_in_metadata(store)
    todo = [sha for sha in named if sha in stored]
    seen: set[str] = set()
    while todo:
        sha = todo.pop()
        if sha in seen or stored[sha].size > _MAX_JSON_BYTES:
            continue
        seen.add(sha)
        data = store.blobs.get_bytes(sha, verify=False)
        if data.lstrip()[:1] not in (b"{", b"["):
            continue
        for match in _HEX_BYTES.findall(data):
            inner = match.decode()
            if inner not in named:
                named.add(inner)
                if inner in stored:
                    todo.append(inner)
    return named


def collect_garbage(
    store: Any, *, grace_s: float = DEFAULT_GRACE_S, delete: bool = False
) -> GcReport:
    """Find the blobs of ``store`` that no record names and that are older than
    ``grace_s`` seconds; delete them only when ``delete`` is true (dry run by default)."""
    if not isinstance(grace_s, int | float) or grace_s < 0:
        raise InvalidInput(f"grace period: expected seconds >= 0, got {grace_s!r}")
    now = time.time()
    stored = {b.sha: b for b in store.blobs.iter_blobs()}
    named = referenced_blobs(store, stored)
    report = GcReport()
    for sha, info in stored.items():
        if sha in named:
            report.kept += 1
        elif now - info.modified < grace_s:
            report.young += 1
        else:
            report.garbage.append(info)
    if delete and report.garbage:
        named_now = referenced_blobs(store, stored)  # anything named since is spared
        spared = [b for b in report.garbage if b.sha in named_now]
        report.garbage = [b for b in report.garbage if b.sha not in named_now]
        report.kept += len(spared)
        for info in report.garbage:
            store.blobs.delete(info.sha)
        report.deleted = True
    return report
