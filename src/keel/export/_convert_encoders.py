"""One-hot and ordinal encoding in ONNX, with the imputer before them fused in.

keel's text chain is ``NullToNaN -> SimpleImputer -> OneHotEncoder`` (or OrdinalEncoder).
In the graph each raw column goes through ONE ``LabelEncoder`` that maps every learned
category straight to its code (for one-hot: the index of its output column in the
whole block), and a missing value (``""`` or NaN) to the code of the imputer's fill
value; a one-hot block is then ``Gather`` + ``Equal`` + ``Cast`` over all its columns.
No text is copied on the way. That reproduces scikit-learn, including:

* unseen values: zeros, or the infrequent column when ``handle_unknown`` is
  ``infrequent_if_exist`` and one was learned (ordinal: ``unknown_value``);
* infrequent categories: their shared column;
* NaN as a learned category (no imputer before the encoder): ``""`` (text) or NaN
  (numbers) finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.preprocessing import OneHotEncoder

from keel.errors import InvalidInput
from keel.export import _convert_nodes as g

__all__ = ["EncoderShim", "convert_encoder", "shape_encoder"]

_INFREQUENT = "infrequent_sklearn"


class EncoderShim(OneHotEncoder):
    """A fitted ``encoder`` (OneHotEncoder or OrdinalEncoder) and the fitted
    SimpleImputer before it (or None), carried into skl2onnx as one step.

    It subclasses OneHotEncoder only because skl2onnx's ColumnTransformer parser then
    hands it the raw input columns one by one instead of concatenating them first: each
    column is looked up on its own anyway, and not copying strings around is most of what
    makes the encoding fast.
    """

    def __init__(self, encoder: Any = None, imputer: Any = None) -> None:
        self.encoder = encoder
        self.imputer = imputer

    @property
    def onehot(self) -> bool:
        return isinstance(self.encoder, OneHotEncoder)


@dataclass
class _Table:
    """How one column is encoded: ``codes[k]`` for ``categories[k]`` (missing ones
    left out), ``missing`` for a missing value, ``unseen`` for anything else; ``width``
    output columns."""

    categories: list[Any]
    codes: list[Any]
    missing: Any
    unseen: Any
    width: int = 1


def _ident(value: Any) -> str | None:
    return None if g.is_missing(value) else str(value)


def _fill(imputer: Any, j: int) -> Any:
    return imputer.statistics_[j] if imputer is not None else None


def _onehot_tables(encoder: Any, imputer: Any) -> tuple[list[_Table], int]:
    if encoder.drop is not None:
        raise InvalidInput(
            "to_onnx: a OneHotEncoder with drop is not supported; keel's onehot step never "
            "drops a category"
        )
    n = len(encoder.categories_)
    # as skl2onnx's own converter does: the output categories of column j, infrequent last
    outputs = [list(encoder._compute_transformed_categories(j)) for j in range(n)]
    total = sum(len(o) for o in outputs)
    to_bucket = encoder.handle_unknown in ("infrequent_if_exist", "warn")
    tables, offset = [], 0
    for j in range(n):
        position = {_ident(c): offset + k for k, c in enumerate(outputs[j])}
        bucket = position.get(_INFREQUENT)
        rare = {_ident(c) for c in _infrequent(encoder, j)}
        code = {
            _ident(c): bucket if _ident(c) in rare else position[_ident(c)]
            for c in encoder.categories_[j]
        }
        unseen = bucket if (to_bucket and bucket is not None) else total  # total: all zeros
        tables.append(_table(code, unseen, _fill(imputer, j), len(outputs[j])))
        offset += len(outputs[j])
    return tables, total


def _infrequent(encoder: Any, j: int) -> list[Any]:
    """The categories of column ``j`` that share the infrequent column."""
    if not encoder._infrequent_enabled:
        return []
    found = encoder.infrequent_categories_[j]
    return [] if found is None else list(found)


def _ordinal_tables(encoder: Any, imputer: Any) -> list[_Table]:
    if getattr(encoder, "_infrequent_enabled", False):
        raise InvalidInput(
            "to_onnx: an OrdinalEncoder with infrequent categories is not supported; "
            "keel's ordinal step has none"
        )
    unseen = (
        float(encoder.unknown_value)
        if encoder.handle_unknown == "use_encoded_value"
        else float("nan")
    )
    encoded_missing = float(getattr(encoder, "encoded_missing_value", np.nan))
    tables = []
    for j, categories in enumerate(encoder.categories_):
        code = {
            _ident(c): encoded_missing if g.is_missing(c) else float(k)
            for k, c in enumerate(categories)
        }
        tables.append(_table(code, unseen, _fill(imputer, j)))
    return tables


def _table(code: dict[str | None, Any], unseen: Any, fill: Any, width: int = 1) -> _Table:
    """``fill``: what the imputer puts for a missing value (None without an imputer)."""
    missing_as = None if fill is None or g.is_missing(fill) else str(fill)
    known = [k for k in code if k is not None]
    missing = code.get(missing_as, unseen)
    return _Table(known, [code[k] for k in known], missing, unseen, width)


def tables(shim: EncoderShim) -> tuple[list[_Table], int]:
    """The column tables and the output width."""
    if shim.onehot:
        return _onehot_tables(shim.encoder, shim.imputer)
    found = _ordinal_tables(shim.encoder, shim.imputer)
    return found, len(found)


def shape_encoder(operator: Any) -> None:
    _, n = tables(operator.raw_operator)
    operator.outputs[0].type = g.data_types().FloatTensorType([g.rows(operator), n])


def _same(a: Any, b: Any) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


def _lookup(scope: Any, container: Any, x: str, text: bool, table: _Table) -> str:
    keys: list[Any]
    if text:
        # "" is missing, also where the data had a category "" (documented)
        pairs = [(k, c) for k, c in zip(table.categories, table.codes, strict=True) if k]
        keys = [k for k, _ in pairs] + [g.MISSING_TEXT]
        codes = [c for _, c in pairs] + [table.missing]
        key_attr = "keys_strings"
    else:
        keys = [float(c) for c in table.categories]
        codes, key_attr = list(table.codes), "keys_floats"
        if not _same(table.missing, table.unseen):
            # NaN never equals a key: look it up as a sentinel no category uses
            sentinel = float(np.finfo(np.float32).min)
            while sentinel in keys:
                sentinel = float(np.nextafter(np.float32(sentinel), np.float32(0)))
            fill = g.const(scope, container, "sentinel", np.float32(sentinel), g.FLOAT)
            isnan = g.node(scope, container, "IsNaN", [x])
            x = g.node(scope, container, "Where", [isnan, fill, x])
            keys.append(sentinel)
            codes.append(table.missing)
    as_int = isinstance(table.unseen, int)
    values = {"values_int64s": [int(c) for c in codes]} if as_int else {"values_floats": codes}
    default = {"default_int64": int(table.unseen)} if as_int else {"default_float": table.unseen}
    return g.node(
        scope,
        container,
        "LabelEncoder",
        [x],
        op_domain="ai.onnx.ml",
        op_version=2,
        **{key_attr: keys},
        **values,
        **default,
    )


def convert_encoder(scope: Any, operator: Any, container: Any) -> None:
    shim = operator.raw_operator
    found, total = tables(shim)
    cols = g.columns(scope, operator, container)
    if len(cols) != len(found):  # pragma: no cover - skl2onnx handed other columns
        raise InvalidInput(f"to_onnx: an encoder of {len(found)} columns got {len(cols)}")
    codes = [
        _lookup(scope, container, x, is_text, table)
        for (x, is_text), table in zip(cols, found, strict=True)
    ]
    index = g.concat(scope, container, codes)  # [N, k]
    if not shim.onehot:
        g.finish(scope, container, index, operator)
        return
    # output column t is 1 where its input column's code is t: one Gather spreads each
    # row's codes over the block, one Equal compares them with 0..total-1; an unseen code
    # (total) matches nothing. Memory stays [N, total], unlike OneHot over [N, k, total].
    owner = g.const(
        scope, container, "owner", [j for j, t in enumerate(found) for _ in range(t.width)], g.INT64
    )
    position = g.const(scope, container, "position", np.arange(total, dtype=np.int64), g.INT64)
    spread = g.node(scope, container, "Gather", [index, owner], axis=1)
    hot = g.node(scope, container, "Equal", [spread, position])
    g.finish(scope, container, g.node(scope, container, "Cast", [hot], to=g.FLOAT), operator)
