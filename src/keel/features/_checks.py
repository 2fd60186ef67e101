"""Rules on how steps may chain on one column, checked when a spec is built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel.errors import InvalidInput

ENCODERS = frozenset({"onehot", "ordinal", "date_parts"})
# ops whose output has one numeric column per input column: what interact may follow
NUMERIC_ONE_TO_ONE = frozenset({"impute", "clip", "log", "scale", "passthrough"})


def _where(i: int, step: Any) -> str:
    return f"steps[{i}] ({step.op})"


def column_steps(steps: Sequence[Any]) -> dict[str, list[int]]:
    """Column -> indices of the steps naming it, in order of first mention."""
    out: dict[str, list[int]] = {}
    for i, step in enumerate(steps):
        for column in step.columns:
            out.setdefault(column, []).append(i)
    return out


def check_chains(steps: Sequence[Any], target: str | None) -> None:
    for column, indices in column_steps(steps).items():
        chain = [(i, steps[i]) for i in indices]
        if column == target:
            i, step = chain[0]
            raise InvalidInput(
                f"{_where(i, step)}: column {column!r} is the target; a feature step cannot use it"
            )
        _check_drop(column, chain)
        _check_encoders(column, chain)
        _check_interact(column, chain)


def _check_drop(column: str, chain: list[tuple[int, Any]]) -> None:
    drops = [(i, s) for i, s in chain if s.op == "drop"]
    others = [(i, s) for i, s in chain if s.op != "drop"]
    if drops and others:
        (i, drop), (j, other) = drops[0], others[0]
        raise InvalidInput(
            f"{_where(i, drop)}: column {column!r} is dropped but {_where(j, other)} uses it; "
            "remove one of the two"
        )


def _check_encoders(column: str, chain: list[tuple[int, Any]]) -> None:
    encoders = [(i, s) for i, s in chain if s.op in ENCODERS]
    if len(encoders) > 1:
        (i, first), (j, second) = encoders[0], encoders[1]
        raise InvalidInput(
            f"{_where(j, second)}: column {column!r} is already encoded by "
            f"{_where(i, first)}; a column takes one of onehot, ordinal, date_parts"
        )
    for position, (i, step) in enumerate(chain):
        if step.op == "date_parts" and position > 0:
            j, before = chain[0]
            raise InvalidInput(
                f"{_where(i, step)}: column {column!r} must be parsed as a date before "
                f"other steps, but {_where(j, before)} comes first; move date_parts up"
            )


def _check_interact(column: str, chain: list[tuple[int, Any]]) -> None:
    for position, (i, step) in enumerate(chain):
        if step.op != "interact":
            continue
        for j, before in chain[:position]:
            if before.op != "interact" and before.op not in NUMERIC_ONE_TO_ONE:
                raise InvalidInput(
                    f"{_where(i, step)}: column {column!r} is changed by {_where(j, before)} "
                    f"before the interaction; interact may follow only "
                    f"{', '.join(sorted(NUMERIC_ONE_TO_ONE))} on its columns"
                )
