"""MLflow's scoring protocol, so that tools written for ``mlflow models serve`` talk to keel
unchanged: ``GET /ping`` and ``GET /health`` (200 once every model is loaded, as MLflow's
answer once its model is), ``GET /version`` (keel's version, as text), and
``POST /invocations`` taking ``application/json`` (``dataframe_split``,
``dataframe_records``, ``inputs`` or ``instances``, with ``params``) or ``text/csv``.

What follows MLflow (``mlflow/pyfunc/scoring_server``), and where keel differs:

- Answers are ``{"predictions": [...]}``, as MLflow's; keel adds ``probabilities`` (a
  classifier's, one array per row in its class order), ``model`` and ``version``, and
  ``ignored_params`` when a request gave any. MLflow's client reads ``predictions`` only and
  its own server puts extra keys beside it the same way.
- Errors are ``{"error_code", "message"}`` with MLflow's codes and statuses (a bad value or
  column is 400 ``INVALID_PARAMETER_VALUE``, a body in no known format 400 ``BAD_REQUEST``),
  plus keel's ``error`` object (``code``, ``details`` naming each bad row and field,
  ``request_id``). Where MLflow has no such error keel keeps its status: 413 past the body or
  row limit, 415 for another content type (MLflow's is text; keel's is this JSON shape), 404
  for an unknown ``?model=``, 503 while loading.
- ``params``: keel's models declare no parameters, so, as MLflow does for a model whose
  signature has no params schema, every parameter is ignored (logged once per name and
  listed in the answer's ``ignored_params``); ``params`` that is not an object is refused
  with 400 ``INVALID_PARAMETER_VALUE`` (MLflow refuses it for a model that has a schema).
- JSON may carry ``NaN`` for a missing value, as MLflow's client writes a DataFrame's
  missing values (pandas' ``to_dict`` then ``json.dumps``); ``Infinity`` is refused.
- CSV: MLflow reads the first line as the header, always (``pandas.read_csv``): a body
  without one loses its first row to the header and fails the model's schema. keel takes
  both: the first line is the header when one of its fields names a column of the model (or
  when ``Content-Type: text/csv; header=present``, RFC 4180's parameter); otherwise, or with
  ``header=absent``, every line is a row of the model's columns in their order. Columns
  the model does not read are ignored, as in the JSON forms. An empty field, and pandas'
  missing-value words (``NA``, ``NaN``, ``null``, ...) in a number column, are missing
  values. A value that is not a number is refused naming its row, line and column.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from typing import Any

import numpy as np
import orjson

from keel.serve import _codec
from keel.serve import _protocols as p
from keel.serve._errors import ServeError
from keel.serve._http import ClientDisconnected, Request, Response, json_response

__all__ = ["CONTENT_TYPES", "FORMATS", "STATUS", "MlflowError", "as_mlflow"]

log = logging.getLogger("keel.serve")

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
CONTENT_TYPES = ("application/json", "text/csv")

#: keel's error code -> (MLflow's error code, the status answered on MLflow's routes).
#: MLflow answers a bad input 400 (``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``); where
#: it has no such error keel keeps its own status.
CODES: dict[str, tuple[str, int]] = {
    "invalid_json": ("BAD_REQUEST", 400),
    "invalid_input": ("INVALID_PARAMETER_VALUE", 400),
    "invalid_tensor": ("INVALID_PARAMETER_VALUE", 400),
    "unsupported_media_type": ("BAD_REQUEST", 415),
    "payload_too_large": ("BAD_REQUEST", 413),
    "too_many_rows": ("BAD_REQUEST", 413),
    "unauthorized": ("UNAUTHENTICATED", 401),
    "forbidden": ("PERMISSION_DENIED", 403),
    "not_found": ("ENDPOINT_NOT_FOUND", 404),
    "model_not_found": ("RESOURCE_DOES_NOT_EXIST", 404),
    "method_not_allowed": ("BAD_REQUEST", 405),
    "not_ready": ("TEMPORARILY_UNAVAILABLE", 503),
    "internal": ("INTERNAL_ERROR", 500),
}
#: The status of each keel error code on MLflow's routes.
STATUS = {code: status for code, (_, status) in CODES.items()}

# pandas.read_csv's default missing-value words (pandas._libs.parsers.STR_NA_VALUES).
_NA = frozenset(
    "|#N/A|#N/A N/A|#NA|-1.#IND|-1.#QNAN|-NaN|-nan|1.#IND|1.#QNAN|<NA>|N/A|NA|NULL|NaN|None"
    "|n/a|nan|null".split("|")
)
_TRUE, _FALSE = frozenset({"true", "1", "1.0"}), frozenset({"false", "0", "0.0"})
_SAFE_NAME = re.compile(r"^[\w.\-]{1,64}$")
_warned: set[str] = set()


class MlflowError(ServeError):
    """A :class:`ServeError` answered in MLflow's shape: ``{"error_code", "message"}`` with
    MLflow's status, and keel's ``error`` object beside them."""

    def __init__(
        self,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        mlflow_code: str | None = None,
    ) -> None:
        super().__init__(code, message, details, headers)
        default, self.status = CODES.get(code, ("INTERNAL_ERROR", self.status))
        self.mlflow_code = mlflow_code or default

    def body(self, request_id: str | None, flat: bool = False) -> dict[str, Any]:
        keel = super().body(request_id)
        return {"error_code": self.mlflow_code, "message": self.message, **keel}


def as_mlflow(error: ServeError) -> MlflowError:
    """``error`` in MLflow's shape (the same code, message, details and headers)."""
    if isinstance(error, MlflowError):
        return error
    return MlflowError(error.code, error.message, error.details, error.headers)


# -- the routes -------------------------------------------------------------------------


async def ping(req: Request) -> Response:
    """200 once every routed model is loaded and warm, 503 before (MLflow: 200 once its one
    model is loaded); the readiness probe of tools made for MLflow (SageMaker's ``/ping``)."""
    try:
        p._require_ready(req)
    except ServeError as exc:
        raise as_mlflow(exc) from None
    return json_response({"status": "ok"})


async def version(req: Request) -> Response:
    """keel's version as text (MLflow answers its own version there)."""
    from importlib.metadata import version as installed

    return Response(installed("keel").encode(), media_type=b"text/plain; charset=utf-8")


async def invocations(req: Request) -> Response:
    try:
        return await _invocations(req)
    except ServeError as exc:
        raise as_mlflow(exc.with_traceback(None)) from None
    except ClientDisconnected:
        raise
    except Exception:
        log.exception("request %s failed", req.state["request_id"])
        raise MlflowError(
            "internal",
            "the server failed to answer this request; quote the request id when you report it",
        ) from None


async def _invocations(req: Request) -> Response:
    media, options = _content_type(req.headers.get("content-type"))
    slot = p._slot(req, req.query.get("model"))
    with slot.arrivals:
        body = await req.body()
    ignored: list[str] = []
    if media == "text/csv":
        dep = p._pick(req, slot)
        feed = feed_from_csv(body, dep.spec, options.get("header"), req.app.config)
    else:
        parsed = _parse_json(body)
        del body
        key, payload, ignored = _json_payload(parsed)
        if isinstance(payload, list):
            p._check_rows(req, len(payload))
        dep = p._pick(req, slot)
        if key == "dataframe_split":
            feed = _codec.feed_from_split(payload, dep.spec)
        elif isinstance(payload, dict):
            feed = _codec.feed_from_columns(payload, dep.spec, key)
        else:
            feed = _codec.feed_from_records(payload, dep.spec, key)
        del parsed, payload  # keep no parsed JSON (many times the body's size) while it runs
    out = await p._run(req, dep, feed)
    answer: dict[str, Any]
    if dep.task == "regression":
        answer = {"predictions": out["variable"][:, 0]}
    else:
        answer = {"predictions": out["label"].tolist(), "probabilities": out["probabilities"]}
    answer.update(model=slot.route.name, version=dep.version)
    if ignored:
        answer["ignored_params"] = ignored
    return p._answer(dep, answer)


# -- content type and JSON --------------------------------------------------------------


def _content_type(raw: str | None) -> tuple[str, dict[str, str]]:
    """The media type (``application/json`` or ``text/csv``) and its parameters; 415 for any
    other, or a charset other than UTF-8."""
    supported = " or ".join(CONTENT_TYPES)
    if raw is None:
        raise MlflowError(
            "unsupported_media_type",
            f"the request has no content type; /invocations takes {supported} "
            "(MLflow's scoring protocol)",
        )
    media, *rest = raw.lower().split(";")
    media = media.strip()
    options = {}
    for part in rest:
        name, _, value = part.partition("=")
        options[name.strip()] = value.strip().strip('"')
    if media not in CONTENT_TYPES:
        raise MlflowError(
            "unsupported_media_type",
            f"content type {media[:60]!r} is not accepted; /invocations takes {supported} "
            "(MLflow's scoring protocol)",
        )
    charset = options.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise MlflowError(
            "unsupported_media_type",
            f"charset {charset[:30]!r} is not accepted; send UTF-8 (charset=utf-8)",
        )
    header = options.get("header")
    if media == "text/csv" and header is not None and header not in ("present", "absent"):
        raise MlflowError(
            "unsupported_media_type",
            f"text/csv header={header[:30]!r} is not accepted; use header=present or "
            "header=absent (or leave it out: a first line naming the model's columns is the "
            "header)",
        )
    return media, options


def _parse_json(body: bytes) -> Any:
    """The JSON value of ``body``, a ``NaN`` literal read as null (a missing value, as
    MLflow's client writes one); everything else as strict as keel's other routes."""
    if not body:
        raise ServeError(
            "invalid_json",
            "the request body is empty; expected a JSON object with one of " + ", ".join(FORMATS),
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error: Exception = exc
    if b"NaN" in body:  # rare: only a body with a NaN literal takes this slower parse
        try:
            value = json.loads(body.decode("utf-8"), parse_constant=_constant)
            orjson.dumps(value)  # what orjson refuses (a lone surrogate, an integer past 64
            return value  # bits) stays refused
        except (ValueError, RecursionError, orjson.JSONEncodeError) as exc:
            error = exc
    raise ServeError("invalid_json", f"the request body is not valid JSON: {error}") from None


def _constant(name: str) -> None:
    """``NaN`` is a missing value; ``Infinity`` and ``-Infinity`` are refused."""
    if name == "NaN":
        return None
    raise ValueError(f"{name} is not a number keel takes (NaN, for a missing value, is)")


def _json_payload(body: Any) -> tuple[str, Any, list[str]]:
    """The format given, its value, and the names of the parameters ignored."""
    if not isinstance(body, dict):
        got = _codec.describe(body)
        raise MlflowError(
            "invalid_input",
            f"body: expected a JSON object with exactly one of {', '.join(FORMATS)}, got {got}",
            [{"field": "body", "expected": "an object", "got": got}],
            mlflow_code="BAD_REQUEST",
        )
    given = [k for k in FORMATS if k in body]
    if len(given) != 1:
        raise MlflowError(
            "invalid_input",
            f"expected exactly one of {', '.join(FORMATS)} in the body, got "
            f"{', '.join(given) or 'none'} (keys given: {_keys(body)})",
            [
                {
                    "field": "body",
                    "expected": "exactly one of " + ", ".join(FORMATS),
                    "got": _keys(body),
                }
            ],
            mlflow_code="BAD_REQUEST",
        )
    return given[0], body[given[0]], _ignored_params(body.get("params"))


def _keys(body: dict[str, Any]) -> str:
    keys = [repr(k[:40]) for k in list(body)[:10]]
    return ", ".join(keys) + (", ..." if len(body) > 10 else "") if keys else "none"


def _ignored_params(params: Any) -> list[str]:
    """``params`` checked: null or an object. keel's models declare no parameters, so each
    is ignored, as MLflow ignores them for a model without a params schema."""
    if params is None:
        return []
    if not isinstance(params, dict):
        got = _codec.describe(params)
        raise MlflowError(
            "invalid_input",
            f"params: expected an object of parameter names and values, got {got}",
            [{"field": "params", "expected": "an object", "got": got}],
        )
    names = sorted(params)
    fresh = [n for n in names if n not in _warned]
    if fresh and len(_warned) < 1000:
        _warned.update(fresh)
        shown = ", ".join(repr(n[:64]) for n in fresh[:10])
        log.warning("/invocations: keel's models take no params; ignoring %s", shown)
    return [n if _SAFE_NAME.match(n) else repr(n[:64]) for n in names[:100]]


# -- CSV --------------------------------------------------------------------------------


def feed_from_csv(
    body: bytes, spec: _codec.InputSpec, header: str | None, config: Any
) -> dict[str, np.ndarray]:
    """The block from CSV rows: a header naming the columns (any order, more allowed) or
    none (the model's columns in order). ``header``: ``present``, ``absent`` or None (the
    first line is a header when one of its fields names a column)."""
    if spec.tensors:
        names = ", ".join(repr(t.name) for t in spec.tensors)
        raise MlflowError(
            "invalid_input",
            f"this model reads the tensor input {names}, which CSV cannot carry; send JSON "
            '({"inputs": {...}} or {"instances": [...]})',
        )
    text, records = _csv_records(body)
    first = records[0]
    known = set(spec.names)
    has_header = header == "present" or (header is None and any(f in known for f in first))
    if has_header:
        index = _header_index(first, spec)
        records = records[1:]
        width = len(first)
        if not records:
            raise MlflowError(
                "invalid_input",
                "the CSV has a header and no rows; send one line per row after it",
                [{"field": "body", "expected": "at least one row", "got": "a header only"}],
            )
    else:
        index = {n: j for j, n in enumerate(spec.names)}
        width = len(spec.names)
    if len(records) > config.max_request_rows:
        raise ServeError(
            "too_many_rows",
            f"{len(records)} rows in one request; the limit is {config.max_request_rows}",
        )
    if set(map(len, records)) != {width}:
        i = next(i for i, r in enumerate(records) if len(r) != width)
        line = _lines(text)[i + has_header]
        _wrong_width(i, line, len(records[i]), width, has_header, header, spec)
    columns = list(zip(*records, strict=True))
    underscores = b"_" in body  # 1_000 is a Python float, not a CSV number
    problems = _codec.Problems()
    built = {}
    for name, kind in zip(spec.names, spec.kinds, strict=True):
        values = columns[index[name]]
        if kind == "string":
            column = np.empty((len(values), 1), dtype=object)
            column[:, 0] = values
            built[name] = column
        else:
            built[name] = _numbers(values, name, kind == "boolean", underscores, problems)
    if problems.count:
        lines = _lines(text)[has_header:]
        _raise_located(problems, lines, auto_header=header is None and not has_header)
    return _codec.block_from_columns(built, spec, len(records))


def _csv_records(body: bytes) -> tuple[str, list[list[str]]]:
    """The body's text and each of its records but the blank ones."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MlflowError(
            "invalid_input",
            f"the CSV is not UTF-8: byte {exc.start} cannot be decoded",
            mlflow_code="BAD_REQUEST",
        ) from None
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = [r for r in reader if r and r != [""]]
    except csv.Error as exc:
        raise MlflowError(
            "invalid_input",
            f"line {reader.line_num}: the CSV cannot be read: {exc}",
            [{"field": "body", "expected": "CSV (RFC 4180)", "got": f"line {reader.line_num}"}],
            mlflow_code="BAD_REQUEST",
        ) from None
    if not records:
        raise MlflowError(
            "invalid_input",
            "the request body has no CSV rows; send a header naming the model's columns, "
            "then one line per row",
            [{"field": "body", "expected": "CSV rows", "got": "nothing"}],
            mlflow_code="BAD_REQUEST",
        )
    return text, records


def _lines(text: str) -> list[int]:
    """The line (from 1) each non-blank record of ``text`` starts on (for error messages:
    a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines, start = [], 1
    for fields in reader:
        if fields and fields != [""]:
            lines.append(start)
        start = reader.line_num + 1
    return lines


def _header_index(header: list[str], spec: _codec.InputSpec) -> dict[str, int]:
    """Each model column's place in the header; every column must be there once."""
    index: dict[str, int] = {}
    twice = []
    for j, name in enumerate(header):
        if name in index:
            twice.append(name)
        index.setdefault(name, j)
    missing = [n for n in spec.names if n not in index]
    if not missing and not (set(twice) & set(spec.names)):
        return index
    problems = _codec.Problems()
    for name in sorted(set(twice) & set(spec.names)):
        problems.add(None, name, "the column once in the header", "twice", said=True)
    for name in missing:
        problems.add(None, name, f"a column named {name!r}", "missing", said=True)
    unknown = [h for h in header if h not in spec.names]
    for name in unknown[:10]:
        problems.add(None, name, "one of the model's columns", "an unknown column", said=True)
    parts = []
    if twice:
        parts.append(f"the CSV header names {_names(twice)} twice")
    if missing:
        parts.append(f"the CSV header lacks the column(s) {_names(missing)}")
    if unknown:
        parts.append(f"it has column(s) the model does not read: {_names(unknown)}")
    raise MlflowError(
        "invalid_input",
        "; ".join(parts) + f" (the model reads {_names(list(spec.names))})",
        problems.items,
    )


def _names(names: list[str], most: int = 12) -> str:
    shown = ", ".join(repr(n[:40]) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _wrong_width(
    row: int, line: int, got: int, width: int, has_header: bool, header: str | None, spec: Any
) -> None:
    if has_header:
        expected = f"{width} fields, as the header"
        hint = ""
    else:
        expected = f"{width} fields (the model's columns in order: {_names(list(spec.names))})"
        hint = (
            "; with no header line, every line holds the model's columns in their order (a "
            "first line naming them is read as the header)"
            if header is None
            else ""
        )
    raise MlflowError(
        "invalid_input",
        f"row {row} (line {line}): expected {expected}, got {got}{hint}",
        [{"row": row, "line": line, "expected": f"{width} fields", "got": str(got)}],
    )


def _numbers(
    values: tuple[str, ...], name: str, boolean: bool, underscores: bool, problems: Any
) -> np.ndarray:
    """A number (or boolean) column ``[n, 1]`` from CSV fields; bad ones go to
    ``problems``. Fast when every field is a finite number (``underscores``: whether the
    body holds one, which NumPy's parse would take)."""
    if not boolean:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                arr = np.array(values, dtype=np.float32)
        except (ValueError, OverflowError):
            arr = None
        if arr is not None and np.isfinite(arr).all():
            if not (underscores and any("_" in v for v in values)):
                return arr.reshape(-1, 1)
    out = np.empty((len(values), 1), dtype=np.float32)
    for i, raw in enumerate(values):
        value = _number(raw.strip(), boolean)
        if value is None:
            expected = "a boolean (true, false, 1 or 0)" if boolean else "a number"
            problems.add(i, name, expected, raw)
        elif abs(value) >= _codec.F32_OVERFLOW:
            problems.add(i, name, "a number within float32 range", raw)
        else:
            out[i, 0] = value
    return out


def _number(text: str, boolean: bool) -> float | None:
    """The value of one field: NaN when missing, None when it is not a number."""
    if text in _NA:
        return float("nan")
    if boolean:
        low = text.lower()
        if low in _TRUE:
            return 1.0
        if low in _FALSE:
            return 0.0
    if "_" in text or not text[-1:].isdigit() and not text[-1:] == ".":
        return None  # no 1_000, inf, nan spelled otherwise, or trailing letters
    try:
        return float(text)
    except ValueError:
        return None


def _raise_located(problems: Any, lines: list[int], auto_header: bool) -> None:
    """Refuse the findings, each with its CSV line beside its row."""
    for item in problems.items:
        if "row" in item:
            item["line"] = lines[item["row"]]
    first = problems.items[0]
    more = f" (and {problems.count - 1} more)" if problems.count > 1 else ""
    hint = ""
    if auto_header and first.get("row") == 0:
        hint = (
            "; the first line was read as a row, since none of its fields names a column of "
            "the model: a header must name them (or send header=absent for none)"
        )
    raise MlflowError(
        "invalid_input",
        f"row {first['row']} (line {first['line']}) column {first['field']!r}: expected "
        f"{first['expected']}, got {first['got']}{more}{hint}",
        problems.items,
    )
