"""Split strategies: random, stratified, time-ordered and group (no group on both sides)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["STRATEGIES", "split_indices"]

STRATEGIES = ("random", "stratified", "time", "group")


def split_indices(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and the test part (see :func:`_split`)."""
    try:
        return _split(*args, **kwargs)
    except ValueError as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(
            f"split {kwargs.get('strategy', args[1] if len(args) > 1 else '')!r}: {exc}"
        ) from None


def _split(
    df: pd.DataFrame,
    strategy: str,
    *,
    target: str,
    test_size: float = 0.2,
    seed: int = 0,
    time_col: str | None = None,
    group_col: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if not 0.0 < test_size < 1.0:
        raise InvalidInput(f"test_size: expected a fraction between 0 and 1, got {test_size!r}")
    if len(df) < 2:
        raise InvalidInput(f"split: need at least 2 rows to split, got {len(df)}")
    idx = np.arange(len(df))
    if strategy == "random":
        train, test = train_test_split(idx, test_size=test_size, random_state=seed)
        return train, test
    if strategy == "stratified":
        y = df[target].to_numpy()
        counts = pd.Series(y).value_counts()
        if counts.min() < 2:
            raise InvalidInput(
                f"split 'stratified': class {counts.idxmin()!r} of {target!r} has only "
                f"{counts.min()} row; use split 'random' or add data"
            )
        train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
        return train, test
    if strategy == "time":
        col = _need(df, time_col, "time_col", strategy)
        order = np.argsort(df[col].to_numpy(), kind="stable")
        cut = int(round(len(df) * (1 - test_size)))
        return order[:cut], order[cut:]
    if strategy == "group":
        col = _need(df, group_col, "group_col", strategy)
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train, test = next(gss.split(idx, groups=df[col].to_numpy()))
        return train, test
    raise InvalidInput(f"split: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")


def _need(df: pd.DataFrame, col: str | None, flag: str, strategy: str) -> str:
    if not col:
        raise InvalidInput(f"split {strategy!r} needs {flag}: the column to split by")
    if col not in df.columns:
        raise InvalidInput(
            f"{flag}: column {col!r} is not in the data; columns: {', '.join(df.columns)}"
        )
    return col
