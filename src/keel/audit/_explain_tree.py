"""Exact TreeSHAP of a LightGBM booster, computed by the booster itself (``pred_contrib``).

Path-dependent TreeSHAP of one tree depends on a row only through the side of every split
that the row falls on. Rows whose values fall into the same interval between one tree's
thresholds, for every feature that tree splits on, therefore get the same contributions
from it. For a batch, :class:`TreeShap` asks LightGBM for the contributions of each
iteration's trees on one representative row per such *cell* and spreads them to the rest:
the same numbers as one ``pred_contrib=True`` call over all rows (to rounding), from a
fraction of the work. Missing values and values LightGBM treats as zero get cells of
their own; categorical splits key on the exact value. Small batches go straight to
LightGBM.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["TreeShap"]

# Below this many rows a single pred_contrib call is cheaper than finding cells.
_DIRECT_BELOW = 256
_ONE_THREAD_BELOW = 32
_ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| at or below it counts as zero
_KEY_LIMIT = 2**62


def _splits_of(tree: dict[str, Any], acc: dict[int, list[Any]], categorical: set[int]) -> None:
    stack = [tree]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        f = int(node["split_feature"])
        if node.get("decision_type") == "==":
            categorical.add(f)
        else:
            acc.setdefault(f, []).append(float(node["threshold"]))
        stack.append(node["left_child"])
        stack.append(node["right_child"])


class TreeShap:
    """Per-iteration split thresholds of ``booster``; :meth:`contributions` gives what
    ``booster.predict(Z, pred_contrib=True)`` gives, shaped ``(n, n_classes, F + 1)``
    (the last column is the expected value)."""

    def __init__(self, booster: Any) -> None:
        dump = booster.dump_model()
        self.booster = booster
        self._copies: list[Any] = []
        self._lock = threading.Lock()
        self.n_features = int(booster.num_feature())
        self.n_classes = int(dump.get("num_tree_per_iteration", 1))
        best = int(getattr(booster, "best_iteration", 0) or 0)
        self.n_iterations = best if best > 0 else int(booster.current_iteration())
        trees = dump["tree_info"]
        k = self.n_classes
        per_iteration: list[tuple[dict[int, list[float]], set[int]]] = []
        for it in range(self.n_iterations):
            acc: dict[int, list[float]] = {}
            categorical: set[int] = set()
            for tree in trees[it * k : (it + 1) * k]:
                _splits_of(tree["tree_structure"], acc, categorical)
            per_iteration.append((acc, categorical))
        self._global = _global_thresholds(per_iteration)
        # per iteration: (feature, lookup from global cell to this iteration's cell, size);
        # categorical features have no lookup: their cells are their exact values
        self.splits: list[list[tuple[int, np.ndarray | None, int]]] = []
        self.columns: list[np.ndarray] = []
        for acc, categorical in per_iteration:
            feats: list[tuple[int, np.ndarray | None, int]] = []
            for f in sorted(set(acc) | categorical):
                if f in categorical:
                    feats.append((f, None, 0))
                else:
                    feats.append((f, *_lookup(self._global[f], acc[f])))
            self.splits.append(feats)
            width = self.n_features + 1
            self.columns.append(
                np.asarray(
                    [c * width + f for c in range(k) for f, _, _ in feats]
                    + [c * width + self.n_features for c in range(k)],
                    dtype=np.intp,
                )
            )

    def contributions(self, Z: np.ndarray, n_threads: int = 0) -> np.ndarray:
        """``n_threads``: 0 for one per core. A batch is split by iterations over that many
        Python threads, each with its own copy of the booster and one LightGBM thread
        (many small OpenMP calls behave badly on a busy machine)."""
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        n, width = len(Z), self.n_features + 1
        workers = _cores() if n_threads <= 0 else n_threads
        if n < _DIRECT_BELOW:
            threads = 1 if n < _ONE_THREAD_BELOW else n_threads
            out = _predict(self.booster, Z, 0, self.n_iterations, threads)
            return out.reshape(n, self.n_classes, width)
        cells = self._global_cells(Z)
        blocks = [b for b in np.array_split(np.arange(self.n_iterations), workers) if len(b)]
        with self._lock:  # one batch at a time on the copies
            boosters = self._boosters(len(blocks))
            if len(blocks) == 1:
                phi_t = self._accumulate(Z, cells, blocks[0], boosters[0])
                return np.ascontiguousarray(phi_t.T).reshape(n, self.n_classes, width)
            with ThreadPoolExecutor(len(blocks)) as pool:
                parts = list(
                    pool.map(
                        lambda job: self._accumulate(Z, cells, *job),
                        zip(blocks, boosters, strict=True),
                    )
                )
            phi_t = parts[0]
            for part in parts[1:]:
                phi_t += part
        return np.ascontiguousarray(phi_t.T).reshape(n, self.n_classes, width)

    def _accumulate(
        self, Z: np.ndarray, cells: dict[int, np.ndarray], iterations: Any, booster: Any
    ) -> np.ndarray:
        """Contributions of the given iterations, transposed: ``(K * (F + 1), n)``."""
        n = len(Z)
        phi_t = np.zeros((self.n_classes * (self.n_features + 1), n))
        for it in iterations:
            key = _cell_keys(Z, cells, self.splits[it])
            _, inv = np.unique(key, return_inverse=True)
            inv = inv.ravel()
            first = np.empty(int(inv.max()) + 1, dtype=np.intp)
            first[inv] = np.arange(n)
            part = _predict(booster, Z[first], int(it), 1, 1)
            cols = self.columns[it]
            sub = np.ascontiguousarray(part[:, cols].T)
            phi_t[cols] += np.take(sub, inv, axis=1)
        return phi_t

    def _boosters(self, count: int) -> list[Any]:
        """Copies of the booster, one per thread: LightGBM keeps the iteration window of a
        predict call in the booster, so calls with different windows must not share one
        (the original serves whole-model calls, which may come concurrently)."""
        import lightgbm as lgb

        if len(self._copies) < count:
            text = self.booster.model_to_string(num_iteration=-1)
            self._copies += [lgb.Booster(model_str=text) for _ in range(count - len(self._copies))]
        return self._copies[:count]

    def _global_cells(self, Z: np.ndarray) -> dict[int, np.ndarray]:
        """Per split feature, each value's interval among all the model's thresholds on it;
        missing values and zeros get the two cells past the last."""
        cells = {}
        for f, thresholds in self._global.items():
            col = Z[:, f]
            cell = np.searchsorted(thresholds, col, side="left").astype(np.intp)
            m = len(thresholds)
            cell[np.abs(col) <= _ZERO] = m + 2
            cell[np.isnan(col)] = m + 1
            cells[f] = cell
        return cells


def _predict(booster: Any, Z: np.ndarray, start: int, count: int, n_threads: int) -> np.ndarray:
    out = booster.predict(
        Z,
        start_iteration=start,
        num_iteration=count,
        pred_contrib=True,
        num_threads=n_threads,
    )
    return np.asarray(out, dtype=np.float64).reshape(len(Z), -1)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _global_thresholds(
    per_iteration: list[tuple[dict[int, list[float]], set[int]]],
) -> dict[int, np.ndarray]:
    pooled: dict[int, list[float]] = {}
    for acc, _ in per_iteration:
        for f, t in acc.items():
            pooled.setdefault(f, []).extend(t)
    return {f: np.unique(np.asarray(t, dtype=np.float64)) for f, t in pooled.items()}


def _lookup(global_thresholds: np.ndarray, own: list[float]) -> tuple[np.ndarray, int]:
    """Map a global cell (0..G, then G+1 missing, G+2 zero) to this iteration's cell.

    A value in global cell g lies in (G[g-1], G[g]]; its own cell is the number of own
    thresholds below it, i.e. at or below G[g-1], since own thresholds are among G."""
    mine = np.unique(np.asarray(own, dtype=np.float64))
    m, g = len(mine), len(global_thresholds)
    lut = np.empty(g + 3, dtype=np.int64)
    lut[0] = 0
    lut[1 : g + 1] = np.searchsorted(mine, global_thresholds, side="right")
    lut[g + 1] = m + 1
    lut[g + 2] = m + 2
    return lut, m + 3


def _cell_keys(
    Z: np.ndarray,
    cells: dict[int, np.ndarray],
    feats: list[tuple[int, np.ndarray | None, int]],
) -> np.ndarray:
    """One integer per row: equal keys mean the same side of every split of the trees."""
    key = np.zeros(len(Z), dtype=np.int64)
    span = 1
    for f, lut, size in feats:
        if lut is None:
            _, cell = np.unique(Z[:, f], return_inverse=True)
            cell = cell.ravel().astype(np.int64)
            size = int(cell.max()) + 1 if len(cell) else 1
        else:
            cell = lut[cells[f]]
        if span * size >= _KEY_LIMIT:
            _, key = np.unique(key, return_inverse=True)
            key = key.ravel().astype(np.int64)
            span = int(key.max()) + 1
        key = key * size + cell
        span *= size
    return key
