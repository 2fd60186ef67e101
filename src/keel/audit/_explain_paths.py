"""Exact path-dependent TreeSHAP of one row, leaf by leaf, compiled: the served explanation.

For a leaf with value ``v`` and the ``d`` distinct features ``P`` split on along its path,
path-dependent TreeSHAP (Lundberg et al. 2020; what LightGBM's ``pred_contrib`` computes)
gives feature ``i`` of ``P``::

    v * (o_i - z_i) * sum over S in P\\{i} of w(|S|, d) prod_{j in S} o_j prod_{j in P\\S\\{i}} z_j

``z_j``: the share of the training rows that the path's splits on ``j`` keep (the product of
child count / parent count); ``o_j``: 1 when the row follows every split of the path on
``j``, else 0; ``w(k, d) = k! (d - k - 1)! / d!``. With ``A`` the features the row follows
and ``C`` the product of the others' ``z``, the sum is ``C`` times the weighted
coefficients of ``prod_{j in A\\{i}} (z_j + t)`` (divided by ``z_i`` when ``i`` is not in
``A``); one product per leaf, then one division by ``(z_i + t)`` per followed feature:
``O(d**2)`` per leaf, as TreeSHAP.

:class:`PathShap` flattens the trees of one class into arrays once; :meth:`PathShap.row`
walks them in a loop compiled by numba (without the GIL), several times faster than
``pred_contrib`` on one row and the same numbers to rounding. Without numba, or for trees
with categorical splits or linear leaves, :meth:`PathShap.build` answers ``None`` and the
caller keeps LightGBM's own ``pred_contrib``.
"""

from __future__ import annotations

from math import factorial
from typing import Any

import numpy as np

__all__ = ["PathShap", "compiled"]

_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant)
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


class PathShap:
    """The trees of one class column of a LightGBM model, flattened (module doc).

    :meth:`row` gives ``(phi, bias)``: the contributions of the ``n_features`` encoded
    columns and the expected value, what ``booster.predict(z, pred_contrib=True)`` gives in
    that class's block."""

    def __init__(self, n_features: int, kernel: Any) -> None:
        self.n_features = n_features
        self.kernel = kernel
        self.bias = 0.0
        self.args: tuple[Any, ...] = ()

    @classmethod
    def build(
        cls, dump: dict[str, Any], n_iterations: int, column: int = 0, kernel: Any = None
    ) -> PathShap | None:
        """From ``booster.dump_model()``: the trees of class ``column`` in the first
        ``n_iterations`` iterations. ``kernel``: the loop to run (default the compiled one);
        ``None`` without numba or when a tree is of a kind not covered."""
        kernel = kernel or compiled()
        if kernel is None:
            return None
        k = int(dump.get("num_tree_per_iteration", 1))
        trees = [t["tree_structure"] for t in dump["tree_info"][: n_iterations * k]][column::k]
        walker = _Walker()
        for tree in trees:
            if not walker.add(tree):
                return None
        self = cls(int(dump["max_feature_idx"]) + 1, kernel)
        self.bias = float(walker.bias)
        self.args = walker.arrays(self.n_features)
        self.row(np.zeros(self.n_features))  # compiles on the first call
        return self

    def row(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``x``: one encoded row (``n_features`` float64 values)."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if len(x) != self.n_features:
            raise ValueError(f"expected {self.n_features} encoded values, got {len(x)}")
        return self.kernel(x, *self.args), self.bias


class _Walker:
    """Flattens trees: their splits, then per leaf its distinct features (*pairs*), each
    pair with the splits of the path on it (the first in pair order, any others after)."""

    def __init__(self) -> None:
        self.bias = 0.0
        self.node_feature: list[int] = []
        self.node_threshold: list[float] = []
        self.node_default_left: list[bool] = []
        self.node_missing: list[int] = []
        self.first_node: list[int] = []
        self.first_left: list[bool] = []
        self.extra_node: list[int] = []
        self.extra_left: list[bool] = []
        self.extra_pair: list[int] = []
        self.pair_feature: list[int] = []
        self.pair_zero: list[float] = []
        self.leaf_start: list[int] = []
        self.leaf_value: list[float] = []
        self.max_depth = 1

    def add(self, root: dict[str, Any]) -> bool:
        """Flatten one tree; False for one this walk does not cover."""
        if "split_feature" not in root:  # a single leaf: only the expected value
            self.bias += float(root["leaf_value"])
            return True
        total = float(root["internal_count"])
        Path = list[tuple[int, int, bool, float]]
        leaves: list[tuple[dict[str, Any], Path]] = []
        stack: list[tuple[dict[str, Any], Path]] = [(root, [])]
        while stack:
            node, path = stack.pop()
            if "split_feature" not in node:
                if "leaf_coeff" in node:  # a linear tree
                    return False
                leaves.append((node, path))
                continue
            parent = float(node["internal_count"])
            if node.get("decision_type", "<=") != "<=" or parent <= 0:
                return False
            idx = len(self.node_feature)
            f = int(node["split_feature"])
            self.node_feature.append(f)
            self.node_threshold.append(float(node["threshold"]))
            self.node_default_left.append(bool(node.get("default_left", False)))
            self.node_missing.append(_MISSING.get(str(node.get("missing_type", "None")), 0))
            for child, went_left in ((node["left_child"], True), (node["right_child"], False)):
                count = float(child.get("internal_count", child.get("leaf_count", 0)))
                if count <= 0:
                    return False
                stack.append((child, [*path, (idx, f, went_left, count / parent)]))
        for leaf, path in leaves:
            self.bias += float(leaf["leaf_value"]) * float(leaf["leaf_count"]) / total
            self._leaf(float(leaf["leaf_value"]), path)
        return True

    def _leaf(self, value: float, path: list[tuple[int, int, bool, float]]) -> None:
        pair_of: dict[int, int] = {}
        self.leaf_start.append(len(self.pair_feature))
        for idx, f, went_left, share in path:
            if f in pair_of:  # another split on the feature: followed only if all are
                p = pair_of[f]
                self.pair_zero[p] *= share
                self.extra_node.append(idx)
                self.extra_left.append(went_left)
                self.extra_pair.append(p)
                continue
            pair_of[f] = len(self.pair_feature)
            self.pair_feature.append(f)
            self.pair_zero.append(share)
            self.first_node.append(idx)
            self.first_left.append(went_left)
        self.leaf_value.append(value)
        self.max_depth = max(self.max_depth, len(pair_of))

    def arrays(self, n_features: int) -> tuple[Any, ...]:
        """The kernel's arguments after the row, in its order."""
        starts = np.asarray(self.leaf_start, dtype=np.intp)
        counts = np.diff(np.append(starts, len(self.pair_feature)))
        d = self.max_depth
        weights = np.zeros((d + 1, d + 1))
        for n in range(1, d + 1):
            for k in range(n):
                weights[n, k] = factorial(k) * factorial(n - k - 1) / factorial(n)
        return (
            np.asarray(self.node_feature, dtype=np.intp),
            np.asarray(self.node_threshold, dtype=np.float64),
            np.asarray(self.node_missing, dtype=np.int8),
            np.asarray(self.node_default_left, dtype=np.bool_),
            np.asarray(self.first_node, dtype=np.intp),
            np.asarray(self.first_left, dtype=np.bool_),
            np.asarray(self.extra_node, dtype=np.intp),
            np.asarray(self.extra_left, dtype=np.bool_),
            np.asarray(self.extra_pair, dtype=np.intp),
            np.asarray(self.pair_feature, dtype=np.intp),
            np.asarray(self.pair_zero, dtype=np.float64),
            starts,
            counts.astype(np.intp),
            np.asarray(self.leaf_value, dtype=np.float64),
            weights,
            n_features,
        )


_COMPILED: Any = None


def compiled() -> Any:
    """:func:`row_loops` compiled by numba (``None`` where numba is not installed)."""
    global _COMPILED
    if _COMPILED is None:
        try:
            import numba
        except ImportError:
            _COMPILED = False
        else:
            _COMPILED = numba.njit(nogil=True, cache=False)(row_loops)
    return _COMPILED or None


def row_loops(  # noqa: PLR0912, PLR0913 - one loop over the flattened model, as numba takes it
    x: Any,
    node_feature: Any,
    node_threshold: Any,
    node_missing: Any,
    node_default_left: Any,
    first_node: Any,
    first_left: Any,
    extra_node: Any,
    extra_left: Any,
    extra_pair: Any,
    pair_feature: Any,
    pair_zero: Any,
    leaf_start: Any,
    leaf_counts: Any,
    leaf_value: Any,
    weights: Any,
    n_features: int,
) -> Any:
    """One row's contributions (plain Python: numba compiles it, tests also run it as is)."""
    # each split's side, as LightGBM's predictor and NumericalDecision take it
    left = np.empty(len(node_feature), dtype=np.bool_)
    for i in range(len(node_feature)):
        v = x[node_feature[i]]
        kind = node_missing[i]
        if abs(v) <= _ZERO or (np.isnan(v) and kind != 2):  # the predictor's zero; NaN
            v = 0.0  # where NaN is not routed is a zero too
        if (kind == 1 and v == 0.0) or (kind == 2 and np.isnan(v)):
            left[i] = node_default_left[i]
        else:
            left[i] = v <= node_threshold[i]
    # o per (leaf, feature): the row follows every split of the path on the feature
    hot = np.empty(len(first_node), dtype=np.bool_)
    for p in range(len(first_node)):
        hot[p] = left[first_node[p]] == first_left[p]
    for e in range(len(extra_node)):
        if left[extra_node[e]] != extra_left[e]:
            hot[extra_pair[e]] = False
    phi = np.zeros(n_features)
    size = weights.shape[0] + 1
    poly = np.empty(size)
    hot_zero = np.empty(size)  # the leaf's followed features: z and column
    hot_feature = np.empty(size, dtype=np.intp)
    cold_feature = np.empty(size, dtype=np.intp)
    for leaf in range(len(leaf_start)):
        lo = leaf_start[leaf]
        d = leaf_counts[leaf]
        m = 0
        c = 0
        cold = 1.0  # the product of the others' z
        for p in range(lo, lo + d):
            if hot[p]:
                hot_zero[m] = pair_zero[p]
                hot_feature[m] = pair_feature[p]
                m += 1
            else:
                cold *= pair_zero[p]
                cold_feature[c] = pair_feature[p]
                c += 1
        # prod over followed features of (z + t)
        poly[0] = 1.0
        for j in range(m):
            z = hot_zero[j]
            poly[j + 1] = poly[j]
            for k in range(j, 0, -1):
                poly[k] = poly[k] * z + poly[k - 1]
            poly[0] *= z
        scale = leaf_value[leaf] * cold
        if c:  # every feature not followed gets the same: -v * C * sum w * poly
            s = 0.0
            for k in range(m + 1):
                s += weights[d, k] * poly[k]
            s *= scale
            for j in range(c):
                phi[cold_feature[j]] -= s
        for j in range(m):  # divide (z + t) out of the product, highest power first
            z = hot_zero[j]
            q = poly[m]
            s = weights[d, m - 1] * q
            for k in range(m - 1, 0, -1):
                q = poly[k] - z * q
                s += weights[d, k - 1] * q
            phi[hot_feature[j]] += scale * (1.0 - z) * s
    return phi
