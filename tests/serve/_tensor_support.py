"""Helpers for tests of tensor models: the 8x8 digits as a tensor dataset in a store, a
small torch-cnn (and a torch-seq forecaster) trained on it and registered, and its ONNX graph
exported by keel.export, so the server answers through it like any exported version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keel import registry
from keel.data import ingest
from keel.datasets import write_digits_npz
from keel.store import Store
from keel.train import train

CNN = {"epochs": 3, "batch_size": 64, "channels": [8, 16], "dropout": 0.0}
SEQ = {"epochs": 3, "batch_size": 64, "layers": 2}
WINDOW = 24


def digits_store(root: Path) -> Store:
    """A store holding the ``digits`` tensor dataset (X [1, 8, 8] float32, y 0..9)."""
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    ingest(store, write_digits_npz(root), name="digits")
    return store


def series_store(root: Path, rows: int = 600, seed: int = 0) -> Store:
    """A store holding ``series``: windows of a noisy daily-like cycle (X [WINDOW] float32)
    and the next value (y float32)."""
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    ingest(store, write_series_npz(root, rows, seed), name="series")
    return store


def series_windows(rows: int, seed: int, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` independent windows of a noisy 24-step cycle at random phases (shifted by
    ``level``), and each one's next value."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 24, (rows, 1)) + np.arange(WINDOW + 1)
    s = np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(t.shape) + level
    return s[:, :WINDOW].astype(np.float32), s[:, WINDOW].astype(np.float32)


def write_series_npz(root: Path, rows: int, seed: int) -> Path:
    x, y = series_windows(rows, seed)
    path = root / "series.npz"
    np.savez(path, X=x, y=y)
    return path


def train_cnn(store: Store, name: str = "digits", alias: str | None = "production", **kw) -> Any:
    """A torch-cnn version of ``name`` trained on ``digits``, exported, at ``alias``."""
    mv = train(store, "digits", "y", model="torch-cnn", params={**CNN, **kw}, seed=0).register(
        store, name
    )
    return _exported(store, mv, alias)


def train_seq(store: Store, name: str = "series", alias: str | None = "production") -> Any:
    mv = train(store, "series", "y", model="torch-seq", params=SEQ, seed=0).register(store, name)
    return _exported(store, mv, alias)


def _exported(store: Store, mv: Any, alias: str | None) -> Any:
    """Export the version the way ``keel export`` does (parity-checked on its hold-out)."""
    from keel.export import export

    export(store, mv.ref)
    if alias:
        registry.set_alias(store, mv.ref, alias)
    return registry.get_version(store, mv.ref)


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    from keel.datasets import digits

    return digits()
