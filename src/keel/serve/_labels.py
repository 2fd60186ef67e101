"""Delayed ground truth: files of labels that arrive after the predictions, joined to the
prediction log by request id.

A label file (CSV or Parquet) has a request-id column and a label column; other columns are
ignored. It is checked whole before anything is written, and refused with one message naming
the file, the column and the row when:

- the id or label column is missing;
- the file is empty, or has a header and no rows;
- an id or a label is empty (blank or null);
- an id appears twice in the file (even with the same label): the file says two things
  about one request, so its producer has a bug to fix first;
- a label is no answer the model could be scored against: for a request logged by a
  registered version, a label that is not one of that version's classes (``'Maybe'`` for a
  ``No``/``Yes`` classifier), or not a finite number for a regressor. With ``model``, labels
  of requests not logged yet are checked against its served version (``production``, else
  the newest). The message names the first rows, their values and the classes expected.

The accepted labels are stored as a Parquet blob of two string columns, ``request_id`` and
``label_true``, sorted by id (so the same labels in another row order are the same blob), and
a ``prediction_labels`` row, in one transaction. Ingesting labels that are already stored
(same blob, same ``model`` scope) adds nothing. Where several ingested files label one
request, the one ingested last wins; re-ingesting an older file does not make it newer.

Labels are strings, like the log's ``label`` column (a CSV's cells as written, other types
through Arrow's cast to string); cast ``label_true`` to compare numbers.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import insert, or_, select

from keel.errors import InvalidInput
from keel.serve._predlog import _load_segment, _segments, read_predictions
from keel.store import Store, _tables

__all__ = [
    "LABELS_SCHEMA",
    "bad_labels",
    "expected_labels",
    "ingest_labels",
    "joined",
    "read_labels",
]

SHOWN_ROWS = 3  # bad rows a refusal names

#: The columns of a stored label file.
LABELS_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("label_true", pa.string(), nullable=False),
    ]
)

_t = _tables.prediction_labels


def ingest_labels(
    store: Store,
    path: str | Path,
    *,
    id_col: str = "request_id",
    label_col: str = "y",
    model: str | None = None,
) -> dict[str, Any]:
    """Store the labels in ``path`` and count how many name a logged prediction.

    ``model`` scopes the labels to one model's predictions (others do not see them) and
    counts matches against that model's log; by default the labels apply to every model
    that logged the request (a live model and its shadow alike).

    Returns ``{"rows", "matched", "unmatched", "sha", "new"}``: ``new`` is False when these
    labels were already stored and nothing was added.
    """
    from keel.data import read_source

    table, info = read_source(path)
    labels = _check(table, info, id_col, label_col)
    logged = _logged(store, labels["request_id"], model)
    _check_answers(store, labels, logged, model, info)
    labels = labels.sort_by("request_id")
    data = _parquet_bytes(labels)
    matched = int(pc.sum(pc.is_in(labels["request_id"], logged["request_id"])).as_py() or 0)
    sha = store.blobs.put_bytes(data)
    with store.write() as conn:
        seen = conn.execute(
            select(_t.c.id).where(
                _t.c.sha == sha, _t.c.model.is_(None) if model is None else _t.c.model == model
            )
        ).first()
        if seen is None:
            conn.execute(
                insert(_t).values(
                    sha=sha,
                    n_rows=labels.num_rows,
                    created_at=time.time(),
                    source_uri=info.uri,
                    model=model,
                )
            )
            _record_sources(store, conn, info, sha)
            store.add_event(
                conn,
                "labels.ingested",
                model or "*",
                {"sha": sha, "rows": labels.num_rows, "matched": matched, "source": info.uri},
            )
    return {
        "rows": labels.num_rows,
        "matched": matched,
        "unmatched": labels.num_rows - matched,
        "sha": sha,
        "new": seen is None,
    }


def _where(info: Any, i: int) -> str:
    """``file row N (line M)`` for the ``i``-th (0-based) data row."""
    line = f" (line {i + 1 + info.line_offset:,})" if info.line_offset is not None else ""
    return f"{info.name} row {i + 1:,}{line}"


def _check(table: pa.Table, info: Any, id_col: str, label_col: str) -> pa.Table:
    columns = table.column_names
    for what, col, flag in (("request id", id_col, "id_col"), ("label", label_col, "label_col")):
        if col not in columns:
            raise InvalidInput(
                f"{info.name}: no column {col!r} (the {what}); its columns are "
                f"{', '.join(map(repr, columns))}; name the right one with {flag}="
            )
    ids = _as_strings(table[id_col], info, id_col)
    labels = _as_strings(table[label_col], info, label_col)
    for name, values in ((id_col, ids), (label_col, labels)):
        blank = pc.or_kleene(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values), ""))
        bad = pc.indices_nonzero(pc.fill_null(blank, True))
        if len(bad):
            i = bad[0].as_py()
            more = f" (and {len(bad) - 1:,} more rows)" if len(bad) > 1 else ""
            raise InvalidInput(
                f"{_where(info, i)}: column {name!r} is empty{more}; every row needs a request "
                f"id and its label"
            )
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        rid = repeated[0].as_py()
        first, second = pc.indices_nonzero(pc.equal(ids, rid))[:2].to_pylist()
        raise InvalidInput(
            f"{info.name}: request id {rid!r} appears twice, {_where(info, first)} and "
            f"{_where(info, second)} ({len(repeated):,} ids repeat); keep one label per "
            f"request id in a file"
        )
    return pa.table([ids, labels], schema=LABELS_SCHEMA)  # in file order, for row numbers


def _as_strings(column: pa.ChunkedArray, info: Any, name: str) -> pa.Array:
    column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"{info.name} column {name!r}: expected text or numbers, got {column.type} ({exc})"
        ) from None


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", store_schema=True)
    return buf.getvalue()


_LOGGED = pa.schema([("request_id", pa.string()), ("model", pa.string()), ("version", pa.int64())])


def _logged(store: Store, ids: pa.ChunkedArray, model: str | None) -> pa.Table:
    """Which ``(model, version)`` logged each of ``ids`` (of ``model`` only, if given): one
    row per logged pair, ids not logged left out."""
    wanted = ids.combine_chunks().unique()
    parts = []
    for seg in _segments(store, model):
        t = _load_segment(store, seg.sha, columns=_LOGGED.names)
        t = t.filter(pc.is_in(t["request_id"], value_set=wanted))
        if t.num_rows:
            parts.append(t.cast(_LOGGED))
    if not parts:
        return _LOGGED.empty_table()
    return pa.concat_tables(parts).group_by(_LOGGED.names, use_threads=False).aggregate([])


def _version(store: Store, ref: str) -> Any:
    from keel import registry
    from keel.errors import NotFound

    try:
        return registry.get_version(store, ref)
    except (NotFound, InvalidInput):  # logged, not registered (or deleted): nothing to check
        return None


def _served(store: Store, model: str) -> Any:
    from keel import registry
    from keel.errors import NotFound

    mv = _version(store, f"{model}@production")
    if mv is None:
        try:
            mv = registry.list_versions(store, model)[-1]
        except NotFound:
            return None
    return mv


def _classes(mv: Any) -> list[str] | None:
    classes = (mv.output_schema or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def expected_labels(mv: Any) -> str:
    """What a label of model version ``mv`` may be, in words: ``'No' or 'Yes'``, ``a
    finite number``, or ``anything`` when ``mv`` records no classes."""
    if mv.task == "regression":
        return "a finite number"
    classes = _classes(mv)
    if not classes:
        return "anything"
    shown = [repr(c) for c in classes[:10]] + (["…"] if len(classes) > 10 else [])
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]


def bad_labels(labels: Any, mv: Any) -> np.ndarray:
    """A mask of the ``labels`` (strings, as stored) that model version ``mv`` cannot be
    scored against: not one of its classes, or not a finite number for a regressor. Nulls
    are not bad (they are no label yet)."""
    values = pd.Series(list(labels) if not isinstance(labels, pd.Series) else labels)
    values = values.astype(object).reset_index(drop=True)
    present = values.notna().to_numpy()
    if mv.task == "regression":
        number = pd.to_numeric(values.where(present), errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(number)
    else:
        classes = _classes(mv)
        if not classes:
            return np.zeros(len(values), dtype=bool)
        ok = values.astype(str).isin(classes).to_numpy()
    return present & ~ok


def _check_answers(
    store: Store, labels: pa.Table, logged: pa.Table, model: str | None, info: Any
) -> None:
    """Refuse the file when a label is no answer of a version that logged its request (or,
    with ``model``, of the served version, for requests not logged yet)."""
    ids = labels["request_id"]
    checks: list[tuple[Any, np.ndarray]] = []
    pairs = logged.group_by(["model", "version"], use_threads=False).aggregate([]).to_pylist()
    for pair in sorted(pairs, key=lambda p: (p["model"], p["version"])):
        mv = _version(store, f"{pair['model']}/{pair['version']}")
        if mv is not None:
            mine = logged.filter(
                pc.and_(
                    pc.equal(logged["model"], pair["model"]),
                    pc.equal(logged["version"], pair["version"]),
                )
            )["request_id"]
            checks.append((mv, pc.is_in(ids, value_set=mine.combine_chunks()).to_numpy(False)))
    if model is not None:
        mv = _served(store, model)
        if mv is not None:
            unlogged = pc.invert(pc.is_in(ids, value_set=logged["request_id"].combine_chunks()))
            checks.append((mv, unlogged.to_numpy(False)))
    values = labels["label_true"].to_pandas()
    for mv, rows in checks:
        bad = rows & bad_labels(values, mv)
        if bad.any():
            raise InvalidInput(_refusal(info, values, np.flatnonzero(bad), mv))


def _refusal(info: Any, values: pd.Series, bad: np.ndarray, mv: Any) -> str:
    n = len(bad)
    rows = [
        f"{_where(info, int(i)).removeprefix(info.name + ' ')} {_shorten(repr(values[i]))}"
        for i in bad[:SHOWN_ROWS]
    ]
    more = f" and {n - SHOWN_ROWS:,} more" if n > SHOWN_ROWS else ""
    are = "are" if n != 1 else "is"
    what = (
        f"not numbers, as regressor {mv.ref} needs"
        if mv.task == "regression"
        else (f"no class of {mv.ref}")
    )
    return (
        f"{info.name}: {n:,} label{'s' if n != 1 else ''} {are} {what} (expected "
        f"{expected_labels(mv)}): {', '.join(rows)}{more}; correct or drop those rows "
        f"(nothing was stored)"
    )


def _shorten(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record_sources(store: Store, conn: Any, info: Any, sha: str) -> None:
    t_src = _tables.sources
    for path, file_sha, size in zip(info.path, info.sha256, info.sizes, strict=True):
        if conn.execute(select(t_src.c.sha).where(t_src.c.sha == file_sha)).first() is None:
            conn.execute(
                insert(t_src).values(sha=file_sha, uri=str(path), size=size, created_at=time.time())
            )
        store.add_edge(conn, ("labels", sha), ("source", file_sha), "read_from")


def read_labels(store: Store, model: str | None = None) -> pa.Table:
    """The latest label of each request id (``request_id``, ``label_true``), sorted by id:
    of the labels that apply to ``model`` (those ingested for every model and those for
    ``model``), or of every stored label when ``model`` is None."""
    q = select(_t.c.id, _t.c.sha).order_by(_t.c.id)
    if model is not None:
        q = q.where(or_(_t.c.model.is_(None), _t.c.model == model))
    with store.read() as conn:
        rows = conn.execute(q).all()
    if not rows:
        return LABELS_SCHEMA.empty_table()
    parts = []
    for order, (_, sha) in enumerate(rows):
        t = pq.read_table(io.BytesIO(store.blobs.get_bytes(sha))).replace_schema_metadata(None)
        parts.append(t.append_column("_order", pa.array([order] * t.num_rows, pa.int64())))
    every = pa.concat_tables(parts).sort_by([("request_id", "ascending"), ("_order", "ascending")])
    latest = every.group_by("request_id", use_threads=False).aggregate([("label_true", "last")])
    latest = latest.select(["request_id", "label_true_last"]).rename_columns(LABELS_SCHEMA.names)
    return latest.sort_by("request_id").cast(LABELS_SCHEMA)


def joined(
    store: Store,
    model: str,
    *,
    version: int | None = None,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
    labeled_only: bool = False,
) -> pa.Table:
    """:func:`read_predictions` with a ``label_true`` column: the latest label of each
    request (null where none arrived yet; those rows are left out with ``labeled_only``).
    Row order is that of :func:`read_predictions`."""
    preds = read_predictions(store, model, version=version, since=since, until=until, limit=limit)
    labels = read_labels(store, model)
    preds = preds.append_column("_row", pa.array(range(preds.num_rows), pa.int64()))
    out = preds.join(
        labels, "request_id", join_type="inner" if labeled_only else "left outer"
    ).sort_by("_row")
    names = [n for n in preds.column_names if n != "_row"] + ["label_true"]
    return out.select(names)
