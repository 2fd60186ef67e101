"""The runs filter language: a tokenizer, a recursive-descent parser, and a compiler to
SQLAlchemy over the store's tables (bound parameters only, never formatted SQL).

::

    metrics.roc_auc > 0.9 and params.model = "lightgbm"
    (status = "failed" or tags.kind != 'search') and params.lr <= 1e-3
    metrics.`val loss` < 0.2

Grammar::

    expr       := and ("or" and)*
    and        := primary ("and" primary)*
    primary    := "(" expr ")" | field op value
    field      := metrics.KEY | params.KEY | tags.KEY | ATTRIBUTE   (KEY may be `quoted`)
    op         := = | == | != | <> | < | <= | > | >=
    value      := NUMBER | "string" | 'string'

What a comparison means (a run that lacks the key never matches, ``!=`` included):

- ``metrics.K``: the metric's last value (highest step, then the latest logged); compared
  with numbers only.
- ``params.K`` with a number: the parameter when it holds a number; with a string: its text
  (a string parameter's own text, otherwise its JSON, e.g. ``true``, ``[1, 2]``).
- ``tags.K``: the tag's text; compared with strings only.
- attributes: ``id``, ``name`` (the run's ``name`` tag), ``experiment``, ``status``,
  ``created_by``, ``git_commit`` (text) and ``created_at``, ``ended_at``, ``wall_time``,
  ``seed`` (numbers).

A malformed expression raises :class:`FilterError` with the 1-based ``position`` and the
offending ``token``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Float, Text, and_, case, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from keel.errors import InvalidInput
from keel.store import _tables

__all__ = [
    "ATTRIBUTES",
    "And",
    "Compare",
    "Compiler",
    "Field",
    "FilterError",
    "Or",
    "metric_last",
    "parse_field",
    "parse_filter",
]

#: Run attributes a filter, a sort or a column may name, and whether each is text or number.
ATTRIBUTES: dict[str, str] = {
    "id": "text",
    "name": "text",
    "experiment": "text",
    "status": "text",
    "created_by": "text",
    "git_commit": "text",
    "created_at": "number",
    "ended_at": "number",
    "wall_time": "number",
    "seed": "number",
}
_KINDS = ("metrics", "params", "tags")
_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_KEY_CHARS = r"[A-Za-z0-9_.\-/:]"
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<op>[<>=!]+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<field>[A-Za-z_]\w*\.`[^`]*`|[A-Za-z_]"""
    + _KEY_CHARS
    + r"""*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class FilterError(InvalidInput):
    """A filter (or sort, or column) that cannot be read: ``position`` is 1-based in the
    text, ``token`` the text found there (``"end of filter"`` past the end)."""

    code = "invalid_filter"

    def __init__(self, message: str, position: int, token: str) -> None:
        super().__init__(message)
        self.position = position
        self.token = token

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "position": self.position, "token": self.token}


@dataclass(frozen=True)
class Field:
    """What a comparison, a sort or a column names: ``kind`` is metrics, params, tags or
    attribute; ``key`` the metric, param or tag key, or the attribute's name."""

    kind: str
    key: str

    @property
    def name(self) -> str:
        if self.kind == "attribute":
            return self.key
        plain = re.fullmatch(_KEY_CHARS + "+", self.key) and not self.key[0].isdigit()
        return f"{self.kind}.{self.key}" if plain else f"{self.kind}.`{self.key}`"

    @property
    def type(self) -> str:
        """``number``, ``text`` or ``any`` (a param: either)."""
        if self.kind == "attribute":
            return ATTRIBUTES[self.key]
        return {"metrics": "number", "tags": "text", "params": "any"}[self.kind]


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: float | str


@dataclass(frozen=True)
class And:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int  # 1-based


def _tokens(text: str) -> list[_Tok]:
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            ch = text[i]
            if ch in "\"'":
                raise FilterError(
                    f"filter: the string starting at position {i + 1} is not closed; "
                    f"end it with {ch}",
                    i + 1,
                    text[i : i + 20],
                )
            raise FilterError(f"filter: unexpected character {ch!r} at position {i + 1}", i + 1, ch)
        kind = m.lastgroup or ""
        if kind != "space":
            word = m.group()
            if kind == "field" and word.lower() in ("and", "or"):
                kind = word.lower()
            out.append(_Tok(kind, word, i + 1))
        i = m.end()
    return out


def _unquote(text: str) -> str:
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_field(text: str, pos: int = 1) -> Field:
    """``metrics.K``, ``params.K``, ``tags.K`` (K plain or in backticks) or an attribute."""
    kind, dot, key = text.partition(".")
    if dot and kind in _KINDS:
        if key.startswith("`") and key.endswith("`") and len(key) >= 2:
            key = key[1:-1]
        if not key:
            raise FilterError(
                f"filter: {kind}. at position {pos} needs a key, e.g. {kind}.roc_auc", pos, text
            )
        if kind == "tags" and ('"' in key or "\\" in key):
            raise FilterError(
                f"filter: a tag key with quotes or backslashes cannot be used (position {pos})",
                pos,
                text,
            )
        return Field(kind, key)
    if dot and kind in ("attributes", "run"):
        kind, key = "attribute", key
    else:
        kind, key = "attribute", text
    if key not in ATTRIBUTES:
        known = ", ".join(ATTRIBUTES)
        raise FilterError(
            f"filter: unknown field {text!r} at position {pos}; expected metrics.KEY, "
            f"params.KEY, tags.KEY or one of {known}",
            pos,
            text,
        )
    return Field("attribute", key)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def fail(self, expected: str) -> FilterError:
        tok = self.peek()
        if tok is None:
            pos = len(self.text) + 1
            return FilterError(
                f"filter: the filter ends at position {pos} where {expected} was expected",
                pos,
                "end of filter",
            )
        return FilterError(
            f"filter: unexpected {tok.text!r} at position {tok.pos}; expected {expected}",
            tok.pos,
            tok.text,
        )

    def take(self, kind: str, expected: str) -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            raise self.fail(expected)
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.expr()
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def expr(self) -> Any:
        parts = [self.conj()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.i += 1
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self) -> Any:
        parts = [self.primary()]
        while (tok := self.peek()) is not None and tok.kind == "and":
            self.i += 1
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def primary(self) -> Any:
        tok = self.peek()
        if tok is not None and tok.kind == "lparen":
            self.i += 1
            node = self.expr()
            self.take("rparen", "')'")
            return node
        ftok = self.take("field", "a field such as metrics.roc_auc, params.model or status")
        field = parse_field(ftok.text, ftok.pos)
        otok = self.take("op", "a comparison (=, !=, <, <=, >, >=)")
        op = _OPS.get(otok.text)
        if op is None:
            raise FilterError(
                f"filter: unknown comparison {otok.text!r} at position {otok.pos}; "
                "use one of =, !=, <, <=, >, >=",
                otok.pos,
                otok.text,
            )
        vtok = self.peek()
        if vtok is None or vtok.kind not in ("number", "string"):
            raise self.fail("a value (a number, or a string in quotes)")
        self.i += 1
        value: float | str = float(vtok.text) if vtok.kind == "number" else _unquote(vtok.text)
        want = field.type
        if want == "number" and isinstance(value, str):
            raise FilterError(
                f"filter: {field.name} holds numbers; compare it with a number, not "
                f"{vtok.text} (position {vtok.pos})",
                vtok.pos,
                vtok.text,
            )
        if want == "text" and not isinstance(value, str):
            raise FilterError(
                f"filter: {field.name} holds text; put the value in quotes: "
                f'{field.name} {op} "{vtok.text}" (position {vtok.pos})',
                vtok.pos,
                vtok.text,
            )
        return Compare(field, op, value)


def parse_filter(text: str | None) -> Any:
    """The expression tree of a filter (None for an empty one); raises :class:`FilterError`."""
    if text is None or not text.strip():
        return None
    if len(text) > 4000:
        raise FilterError("filter: longer than 4,000 characters", 4001, text[4000:4020])
    return _Parser(text).parse()


# -- compiling to SQL --------------------------------------------------------------------

_R, _P, _M = _tables.runs, _tables.params, _tables.metrics


def metric_last(key: str, run_id: Any = _R.c.id) -> Any:
    """The last value of metric ``key`` of the run (highest step, then latest logged), as a
    correlated scalar subquery; the index on (run_id, key, step) answers it."""
    return (
        select(_M.c.value)
        .where(_M.c.run_id == run_id, _M.c.key == key)
        .order_by(_M.c.step.desc(), _M.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _param_number(raw: Any, dialect: str) -> Any:
    """The parameter as a number when its JSON is a number, else NULL."""
    if dialect == "postgresql":
        number = raw.op("~")(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
        return case((number, cast(raw, Float)), else_=None)
    valid = func.json_valid(raw) == 1
    kind = func.json_type(raw)
    return case(
        (valid, case((kind.in_(("integer", "real")), func.json_extract(raw, "$")), else_=None)),
        else_=None,
    )


def _param_text(raw: Any, dialect: str) -> Any:
    """A string parameter's own text, otherwise its JSON text."""
    if dialect == "postgresql":
        quoted = raw.op("~")(r'^".*"$')
        root = cast(literal("{}"), ARRAY(Text))  # the empty path: the JSON value itself
        return case((quoted, cast(raw, JSONB).op("#>>")(root)), else_=raw)
    valid = func.json_valid(raw) == 1
    return case(
        (valid, case((func.json_type(raw) == "text", func.json_extract(raw, "$")), else_=raw)),
        else_=raw,
    )


def _tag(key: str, dialect: str) -> Any:
    if dialect == "postgresql":
        return cast(_R.c.tags_json, JSONB).op("->>")(literal(key))
    return func.json_extract(_R.c.tags_json, literal('$."' + key.replace('"', '""') + '"'))


class Compiler:
    """Compiles fields, filters and sorts for one query over ``runs``: each parameter named
    is one LEFT JOIN of ``params`` (so its value is read once per run), each metric a
    correlated lookup of its last value. ``from_()`` is the FROM clause with those joins."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._params: dict[str, Any] = {}

    def param_raw(self, key: str) -> Any:
        if key not in self._params:
            self._params[key] = _P.alias(f"p{len(self._params)}")
        return self._params[key].c.value

    def from_(self) -> Any:
        joined: Any = _R
        for key, alias in self._params.items():
            joined = joined.outerjoin(alias, and_(alias.c.run_id == _R.c.id, alias.c.key == key))
        return joined

    def field(self, field: Field, want: str = "any") -> Any:
        """The SQL value of ``field`` for a run row; for params, ``want`` picks the number
        or the text reading."""
        if field.kind == "metrics":
            return metric_last(field.key)
        if field.kind == "tags":
            return _tag(field.key, self.dialect)
        if field.kind == "params":
            raw = self.param_raw(field.key)
            if want == "number":
                return _param_number(raw, self.dialect)
            return _param_text(raw, self.dialect)
        if field.key == "name":
            return _tag("name", self.dialect)
        return _R.c[field.key]

    def compare(self, node: Compare) -> ColumnElement[bool]:
        want = "number" if isinstance(node.value, float) else "text"
        left = self.field(node.field, want)
        right: Any = literal(node.value, Float) if want == "number" else literal(node.value)
        # "a run that lacks the key never matches": SQL's NULL comparisons say so already
        return {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[node.op]

    def where(self, node: Any) -> ColumnElement[bool] | None:
        """A WHERE clause for a parsed filter (None: no filter)."""
        return None if node is None else self._clause(node)

    def _clause(self, node: Any) -> ColumnElement[bool]:
        if isinstance(node, Compare):
            return self.compare(node)
        parts = [self._clause(p) for p in node.parts]
        return and_(*parts) if isinstance(node, And) else or_(*parts)

    def order(self, field: Field, descending: bool) -> list[Any]:
        """ORDER BY terms for ``field``: runs lacking it last, whatever the direction; a
        param's numbers before its texts."""

        def direct(expr: Any) -> Any:
            return (expr.desc() if descending else expr.asc()).nulls_last()

        if field.kind == "params":
            raw = self.param_raw(field.key)
            num = _param_number(raw, self.dialect)
            return [raw.is_(None), direct(num), direct(_param_text(raw, self.dialect))]
        return [direct(self.field(field))]
