"""The core protocols of keel, and nothing else.

A *Model* predicts from raw columns and describes its inputs and outputs. A *BlobStore*
keeps bytes by their sha256. An *Executor* fans work out (a local process pool, or Ray). A
*Notifier* delivers an alert (to a log, a file, a webhook).
Everything in keel that plugs in implements one of these; ``keel.testing`` holds the
conformance checks each implementation must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["BlobStore", "Executor", "Model", "Notifier"]


@runtime_checkable
class Model(Protocol):
    """A fitted model behind one contract.

    ``input_schema``: ``[{"name": ..., "type": ...}, ...]`` of the raw inputs it reads:
    columns of scalars (``type`` int, float, bool, string, category, datetime) or named
    tensors (``type`` ``"tensor"`` with the per-row ``shape`` and the ``dtype``, e.g.
    ``{"name": "X", "type": "tensor", "dtype": "float32", "shape": [1, 8, 8]}``; the batch
    dimension is implied).
    ``X`` is a DataFrame of those columns (a tensor column holds one array per row), or, for
    tensor inputs, a mapping of name to ``[N, *shape]`` array (one array where the model
    reads one tensor).
    ``output_schema``: ``{"task": ..., "classes": [...] or None, "outputs": [...]}``.
    ``tags``: capabilities as data, e.g. ``{"predict_proba": True, "allow_nan": True,
    "tensor_inputs": False, "differentiable": False}``.
    """

    task: str
    input_schema: list[dict[str, Any]]
    output_schema: dict[str, Any]
    tags: dict[str, Any]

    def predict(self, X: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray: ...

    def predict_proba(self, X: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class BlobStore(Protocol):
    """Bytes kept by their sha256 hex digest; the same bytes are stored once."""

    def exists(self, sha: str) -> bool: ...

    def put_bytes(self, data: bytes) -> str: ...

    def put_file(self, src: str | Path) -> str: ...

    def put_stream(self, stream: BinaryIO) -> str: ...

    def get_bytes(self, sha: str, *, verify: bool = True) -> bytes: ...


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn(shared, item)`` for each item somewhere (in-process, a process pool, a Ray
    cluster) and yields the results in the order of ``items``. ``shared`` (e.g. the training
    arrays) is shipped to each worker once, not once per item."""

    name: str

    def map(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class Notifier(Protocol):
    """Delivers one alert (a JSON-ready mapping) somewhere; ``name`` is what alert rules
    refer to. ``send`` returns when the alert is delivered and raises when it cannot be."""

    name: str

    def send(self, alert: Mapping[str, Any]) -> None: ...
