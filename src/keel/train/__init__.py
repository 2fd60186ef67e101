"""keel.train: the model zoo, training runs, hyper-parameter search, and tracking."""

from keel.train._metrics import evaluate
from keel.train._progress import EpochProgress
from keel.train._search import SearchResult, search
from keel.train._split import STRATEGIES, split_indices
from keel.train._tracking import Run, get_run, list_runs, start_run
from keel.train._train import TrainResult, prepare, train
from keel.train._zoo import ZOO, ModelKind, get_kind

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
