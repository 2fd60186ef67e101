"""The model server's seams, and their in-memory twins.

A *PredictionSink* receives what the server answered after each batch, one entry per
row: ``{"request_id", "model", "version", "inputs": {column: value}, "outputs": {"label",
"probabilities": {class: p}} or {"prediction"}, "latency_ms", "ts"}`` (missing inputs as
None). ``record`` must not block (queue and return); ``close`` flushes. The prediction
log (the store-backed sink) and :class:`MemorySink` both implement it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

__all__ = ["MemorySink", "PredictionSink"]


@runtime_checkable
class PredictionSink(Protocol):
    """Where served predictions go. Called from the server's event loop: never block."""

    def record(self, entries: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """A :class:`PredictionSink` that keeps entries in a list (for tests and notebooks).

    ``max_entries`` bounds memory: the oldest entries are dropped past it.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.entries: list[dict[str, Any]] = []
        self.closed = False
        self._lock = threading.Lock()

    def record(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self.entries.extend(entries)
            over = len(self.entries) - self.max_entries
            if over > 0:
                del self.entries[:over]

    def close(self) -> None:
        self.closed = True

    def __len__(self) -> int:
        return len(self.entries)
