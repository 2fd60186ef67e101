"""keel.train: the model zoo, training runs, hyper-parameter search, and tracking.

The names load on first use, so listing runs (``keel runs``: only the tracking module) does
not pull in pandas, scikit-learn and the search.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.train._metrics import evaluate
    from keel.train._progress import EpochProgress
    from keel.train._search import SearchResult, search
    from keel.train._split import STRATEGIES, split_indices
    from keel.train._tracking import Run, get_run, list_runs, start_run
    from keel.train._train import TrainResult, prepare, train
    from keel.train._zoo import ZOO, ModelKind, get_kind

#: Each public name and the module that defines it.
_WHERE: dict[str, str] = {
    "evaluate": "keel.train._metrics",
    "EpochProgress": "keel.train._progress",
    "SearchResult": "keel.train._search",
    "search": "keel.train._search",
    "STRATEGIES": "keel.train._split",
    "split_indices": "keel.train._split",
    "Run": "keel.train._tracking",
    "get_run": "keel.train._tracking",
    "list_runs": "keel.train._tracking",
    "start_run": "keel.train._tracking",
    "TrainResult": "keel.train._train",
    "prepare": "keel.train._train",
    "train": "keel.train._train",
    "ZOO": "keel.train._zoo",
    "ModelKind": "keel.train._zoo",
    "get_kind": "keel.train._zoo",
}

__all__ = [
    "STRATEGIES",
    "ZOO",
    "EpochProgress",
    "ModelKind",
    "Run",
    "SearchResult",
    "TrainResult",
    "evaluate",
    "get_kind",
    "get_run",
    "list_runs",
    "prepare",
    "search",
    "split_indices",
    "start_run",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'keel.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
