"""Model-agnostic SHAP over raw features: the interventional game with a background sample.

The players are the model's raw input columns. The value of a coalition S for row x is the
mean model output over background rows b with the columns in S taken from x:
``v(S) = mean_b f(x_S, b_rest)``; ``v(all) = f(x)`` and ``v(empty)`` is the expected value.
:func:`exact_shap` enumerates every coalition (few features); :func:`permutation_shap`
averages marginal contributions over seeded random permutations, each followed by its
reverse (antithetic pairs), which cancels much of the sampling error. Every permutation's
contributions add up to ``f(x) - v(empty)``, so additivity is exact either way.

Every coalition a batch of rows needs is evaluated in one model call per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from math import factorial

import numpy as np
import pandas as pd

__all__ = ["coalition_values", "exact_shap", "permutation_masks", "permutation_shap"]

Output = Callable[[pd.DataFrame], np.ndarray]
# rows per model call (coalitions x background rows x explained rows)
_CHUNK_ROWS = 200_000


def _coalition_frame(X: pd.DataFrame, background: pd.DataFrame, masks: np.ndarray) -> pd.DataFrame:
    """For each row of X, each mask, each background row: the hybrid row (row-major)."""
    n, nb, u = len(X), len(background), len(masks)
    data = {}
    for j, col in enumerate(X.columns):
        bg = background[col].to_numpy()
        xs = X[col].to_numpy()
        out = np.tile(bg, n * u)
        take = np.tile(np.repeat(masks[:, j], nb), n)
        src = np.repeat(xs, u * nb)
        if out.dtype != src.dtype:
            numeric = out.dtype.kind in "biuf" and src.dtype.kind in "biuf"
            out = out.astype(np.float64 if numeric else object)
        out[take] = src[take]
        data[col] = out
    return pd.DataFrame(data, columns=X.columns)


def coalition_values(
    f: Output, X: pd.DataFrame, background: pd.DataFrame, masks: np.ndarray
) -> np.ndarray:
    """``v[i, k]``: the value of coalition ``masks[k]`` for row ``i`` of X."""
    n, nb, u = len(X), len(background), len(masks)
    per_row = max(1, _CHUNK_ROWS // max(1, u * nb))
    out = np.empty((n, u))
    for start in range(0, n, per_row):
        part = X.iloc[start : start + per_row]
        frame = _coalition_frame(part, background, masks)
        values = np.asarray(f(frame), dtype=np.float64).reshape(len(part), u, nb)
        out[start : start + len(part)] = values.mean(axis=2)
    return out


def exact_shap(
    f: Output, X: pd.DataFrame, background: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Shapley values by enumerating all ``2**M`` coalitions: ``(phi, v_empty, v_all)``."""
    m = X.shape[1]
    codes = np.arange(2**m)
    masks = ((codes[:, None] >> np.arange(m)) & 1).astype(bool)
    v = coalition_values(f, X, background, masks)
    size = masks.sum(axis=1)
    weight = np.array([factorial(s) * factorial(m - s - 1) / factorial(m) for s in range(m)])
    phi = np.zeros((len(X), m))
    for i in range(m):
        without = codes[(codes >> i) & 1 == 0]
        phi[:, i] = (v[:, without | (1 << i)] - v[:, without]) @ weight[size[without]]
    return phi, v[:, 0], v[:, -1]


def permutation_masks(m: int, n_permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions along ``n_permutations`` permutations (antithetic pairs) and the orders."""
    rng = np.random.default_rng(seed)
    pairs = max(1, (n_permutations + 1) // 2)
    orders = []
    for _ in range(pairs):
        p = rng.permutation(m)
        orders += [p, p[::-1].copy()]
    orders_arr = np.asarray(orders)
    masks = np.zeros((len(orders_arr), m + 1, m), dtype=bool)
    for k, order in enumerate(orders_arr):
        for step, feature in enumerate(order):
            masks[k, step + 1 :, feature] = True
    return masks, orders_arr


def permutation_shap(
    f: Output, X: pd.DataFrame, background: pd.DataFrame, n_permutations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permutation-sampling Shapley values: ``(phi, v_empty, v_all)``."""
    m = X.shape[1]
    masks, orders = permutation_masks(m, n_permutations, seed)
    flat = masks.reshape(-1, m)
    unique, inv = np.unique(flat, axis=0, return_inverse=True)
    v = coalition_values(f, X, background, unique)[:, inv.ravel()]
    v = v.reshape(len(X), len(orders), m + 1)
    steps = np.diff(v, axis=2)  # marginal contribution of order[k, s] at step s
    phi = np.zeros((len(X), m))
    for k, order in enumerate(orders):
        phi[:, order] += steps[:, k, :]
    phi /= len(orders)
    empty = v[:, 0, 0]
    full = v[:, 0, -1]
    return phi, empty, full
