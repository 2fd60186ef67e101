"""Compile a :class:`FeatureSpec` into one unfitted scikit-learn ``ColumnTransformer``.

How steps compose: each raw column's *chain* is the steps that name it, in spec order
(``interact`` and ``drop`` left out), run as one ``Pipeline``; ``passthrough`` there
converts to float (bool to 0/1), so ``[passthrough, impute]`` imputes a bool column.
Columns whose chains are the same steps share an entry (one encoder for all of them);
:func:`feature_origins` traces each output column back to its raw column. Each
``interact`` step is one more entry: its columns go through the steps before it, then
:class:`Interactions`. Entries keep the order of their first step; the remainder last.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted

from keel.errors import InvalidInput
from keel.features._checks import column_steps
from keel.features._spec import FeatureSpec
from keel.features._transformers import (
    AsFloat,
    Clip,
    DateParts,
    Interactions,
    Log1p,
    NullToNaN,
)

__all__ = ["TRUSTED_TYPES", "compile_spec", "feature_origins"]

_KEEL_TYPES = (AsFloat, Clip, DateParts, Interactions, Log1p, NullToNaN)
TRUSTED_TYPES: list[str] = [f"{t.__module__}.{t.__qualname__}" for t in _KEEL_TYPES]

_NOT_IN_CHAIN = frozenset({"interact", "drop"})
_SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


@dataclass
class _Entry:
    order: float
    ops: list[str]
    transformer: Any
    columns: list[str]


def compile_spec(
    spec: FeatureSpec | Mapping[str, Any], columns: Sequence[str] | None = None
) -> ColumnTransformer:
    """One unfitted ``ColumnTransformer`` that applies ``spec`` to a pandas DataFrame and
    returns a dense float64 array with readable ``get_feature_names_out()``.

    ``columns`` (the data's columns) lets the spec be checked before fitting and fixes
    which columns ``remainder: passthrough`` keeps (the target never).
    """
    spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(spec)
    if columns is not None:
        columns = list(columns)
        _check_present(spec, columns)
    entries = _column_entries(spec) + _interact_entries(spec)
    entries.sort(key=lambda e: e.order)
    remainder: Any = "drop"
    if spec.remainder == "passthrough":
        if columns is None and spec.target is not None:
            raise InvalidInput(
                "remainder: passthrough with a target needs the data's columns, so that "
                "the target stays out: compile_spec(spec, columns=list(frame.columns))"
            )
        if columns is None:
            remainder = AsFloat()
        else:
            rest = _unnamed(spec, columns)
            if rest:
                entries.append(_Entry(float("inf"), ["passthrough"], AsFloat(), rest))
    named = [(f"{'+'.join(e.ops)}_{k}", e.transformer, e.columns) for k, e in enumerate(entries)]
    return ColumnTransformer(
        named, remainder=remainder, sparse_threshold=0.0, verbose_feature_names_out=False
    )


def feature_origins(transformer: ColumnTransformer) -> list[str]:
    """For each output column of a fitted compiled transformer, the raw input column it
    comes from (``"a*b"`` for an interaction), in ``get_feature_names_out()`` order.
    Use it to sum per-feature attributions (SHAP) back to raw columns."""
    check_is_fitted(transformer, "transformers_")
    names_in = list(getattr(transformer, "feature_names_in_", []))
    origins: list[str] = []
    for _, part, cols in transformer.transformers_:
        cols = [names_in[c] if isinstance(c, int | np.integer) else c for c in _as_list(cols)]
        if (isinstance(part, str) and part == "drop") or not cols:
            continue
        out = cols if isinstance(part, str) else list(part.get_feature_names_out())
        if _ends_with_interactions(part):
            origins.extend(str(n) for n in out)
            continue
        widths = _output_widths(part, len(cols))
        if sum(widths) != len(out):
            raise InvalidInput(
                f"cannot trace {len(out)} outputs of columns {cols} back to one raw column "
                "each; feature_origins reads transformers made by compile_spec"
            )
        for column, width in zip(cols, widths, strict=True):
            origins.extend([str(column)] * width)
    return origins


def _output_widths(part: Any, n_columns: int) -> list[int]:
    """How many output columns each input column of a chain becomes (column-major)."""
    for est in [step for _, step in part.steps] if isinstance(part, Pipeline) else [part]:
        if isinstance(est, OneHotEncoder):
            return [_onehot_width(est, i) for i in range(n_columns)]
        if isinstance(est, DateParts):
            return [len(est.parts)] * n_columns
    return [1] * n_columns


def _onehot_width(encoder: OneHotEncoder, i: int) -> int:
    width = len(encoder.categories_[i])
    # the property raises AttributeError when neither min_frequency nor max_categories is set
    infrequent_all = getattr(encoder, "infrequent_categories_", None)
    infrequent = infrequent_all[i] if infrequent_all is not None else None
    if infrequent is not None:
        width += 1 - len(infrequent)
    drop = getattr(encoder, "drop_idx_", None)
    if drop is not None and drop[i] is not None:
        width -= 1
    return width


def _as_list(cols: Any) -> list[Any]:
    if isinstance(cols, str):
        return [cols]
    return list(cols)


def _ends_with_interactions(part: Any) -> bool:
    if isinstance(part, Pipeline):
        part = part.steps[-1][1]
    return isinstance(part, Interactions)


def _check_present(spec: FeatureSpec, columns: list[str]) -> None:
    available = set(columns)
    for i, step in enumerate(spec.steps):
        for column in step.columns:
            if column in available:
                continue
            close = difflib.get_close_matches(column, [str(c) for c in columns], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = ", ".join(repr(c) for c in columns[:30])
            more = f" and {len(columns) - 30} more" if len(columns) > 30 else ""
            raise InvalidInput(
                f"steps[{i}] ({step.op}): column {column!r} is not in the data{hint}; "
                f"available columns: {shown}{more}"
            )


def _unnamed(spec: FeatureSpec, columns: list[str]) -> list[str]:
    named = set(column_steps(spec.steps))
    return [c for c in columns if c not in named and c != spec.target]


def _column_entries(spec: FeatureSpec) -> list[_Entry]:
    shared: dict[tuple[int, ...], list[str]] = {}
    for column, indices in column_steps(spec.steps).items():
        ops = [spec.steps[i].op for i in indices]
        if "drop" in ops or set(ops) <= {"interact"}:
            continue
        chain = tuple(i for i in indices if spec.steps[i].op != "interact")
        shared.setdefault(chain, []).append(column)
    return [_entry(spec, chain, cols) for chain, cols in shared.items()]


def _entry(spec: FeatureSpec, chain: tuple[int, ...], columns: list[str]) -> _Entry:
    active = [i for i in chain if spec.steps[i].op not in _NOT_IN_CHAIN]
    ops: list[str] = [spec.steps[i].op for i in active] or ["passthrough"]
    return _Entry(chain[0], ops, _chain(spec, active, columns), columns)


def _chain(spec: FeatureSpec, active: list[int], columns: list[str]) -> Any:
    """The steps ``active`` (indices into the spec) as one transformer for ``columns``."""
    if not active:
        return AsFloat()
    parts: list[tuple[str, Any]] = []
    if _reads_text(spec.steps[active[0]]):
        parts.append(("nulls", NullToNaN()))
    for i in active:
        step = spec.steps[i]
        parts.append((f"{step.op}_{i}", _transformer(step, columns)))
    return parts[0][1] if len(parts) == 1 else Pipeline(parts)


def _reads_text(step: Any) -> bool:
    if step.op == "impute":
        return step.strategy in ("most_frequent", "constant")
    return step.op in ("onehot", "ordinal")


def _transformer(step: Any, columns: list[str]) -> Any:
    match step.op:
        case "impute":
            return SimpleImputer(
                strategy=step.strategy, fill_value=step.fill_value, keep_empty_features=True
            )
        case "onehot":
            return OneHotEncoder(
                handle_unknown=step.handle_unknown,
                min_frequency=step.min_frequency,
                max_categories=step.max_categories,
                sparse_output=False,
                dtype=np.float64,
            )
        case "ordinal":
            return OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=-1,
                encoded_missing_value=-1,
                dtype=np.float64,
            )
        case "scale":
            return _SCALERS[step.method]()
        case "log":
            return Log1p(columns=list(columns))
        case "clip":
            return Clip(lower=step.lower, upper=step.upper)
        case "date_parts":
            return DateParts(parts=tuple(step.parts))
        case "passthrough":
            return AsFloat()
    raise InvalidInput(f"op {step.op!r} has no transformer")  # pragma: no cover


def _interact_entries(spec: FeatureSpec) -> list[_Entry]:
    chains = column_steps(spec.steps)
    entries = []
    for i, step in enumerate(spec.steps):
        if step.op != "interact":
            continue
        before = {
            c: [j for j in chains[c] if j < i and spec.steps[j].op not in _NOT_IN_CHAIN]
            for c in step.columns
        }
        part: Any = Interactions()
        if any(before.values()):
            inner = ColumnTransformer(
                [(f"c{k}", _chain(spec, before[c], [c]), [c]) for k, c in enumerate(step.columns)],
                sparse_threshold=0.0,
                verbose_feature_names_out=False,
            )
            part = Pipeline([("before", inner), ("interact", Interactions())])
        entries.append(_Entry(i, ["interact"], part, list(step.columns)))
    return entries
