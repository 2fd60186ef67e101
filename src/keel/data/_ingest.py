"""Ingest: read a source, validate it against a schema, profile it, and record it in the store
as an immutable dataset named by the sha256 of its Parquet bytes.

Everything is read, checked and encoded before the first byte is written, and the dataset
records (the good rows and, with ``on_error="quarantine"``, the bad ones) land in one
transaction: a rejected input changes nothing in the store.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, insert, select

from keel import config
from keel.errors import InvalidInput, NotFound
from keel.store import Store, _tables

__all__ = [
    "Dataset",
    "IngestResult",
    "get_dataset",
    "ingest",
    "list_datasets",
    "load_frame",
    "load_table",
]

ON_ERROR = ("raise", "quarantine")
#: Fewer rows than this and ingest warns that the data set is too small to learn from.
FEW_ROWS = 30
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
t_ds, t_src = _tables.datasets, _tables.sources


@dataclass
class Dataset:
    name: str
    version: int
    sha: str
    kind: str
    n_rows: int
    n_cols: int
    schema: dict[str, Any]
    profile_sha: str | None
    created_at: float
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ref": self.ref}


@dataclass
class IngestResult:
    dataset: Dataset
    quarantine: Dataset | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Things that are not errors but will not teach a model much: empty and constant
    columns, very few rows."""


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", store_schema=True)
    return buf.getvalue()


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInput(
            f"dataset name: expected letters, digits, '_', '-', '.' (starting with a letter or "
            f"digit), got {name!r}"
        )
    return name


def _load_schema(schema: Any) -> Any:
    from keel.data import Schema

    if schema is None or isinstance(schema, Schema):
        return schema
    if isinstance(schema, dict):
        return Schema.from_dict(schema)
    return Schema.from_yaml(schema)


def ingest(
    store: Store,
    source: str | Path | None = None,
    *,
    name: str | None = None,
    schema: Any = None,
    sql: str | None = None,
    format: str | None = None,
    on_error: str = "raise",
    delimiter: str | None = None,
    labels: str | Path | None = None,
) -> IngestResult:
    """Read ``source`` (CSV, Parquet) or run ``sql`` over files, validate against ``schema``
    (a Schema, a YAML path/text, or None to infer one), profile, and store the dataset.
    ``delimiter``: a CSV file's field separator (default: sniffed, see ``read_source``).

    A ``.npz`` file (arrays ``X`` and ``y``) or a folder of PNG/JPEG images (labelled by
    sub-folder, or by ``labels``, a CSV of ``file,label``) becomes a dataset of kind
    ``tensors``: a tensor column ``X`` and the target ``y`` (see ``keel.data._tensors``).
    """
    from keel.data import infer_schema, read_source, validate

    if on_error not in ON_ERROR:
        raise InvalidInput(f"on_error: expected one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if source is None and sql is None:
        raise InvalidInput("ingest: give a source file or a SQL query (sql=...)")
    if name is None:
        name = Path(str(source)).stem if source is not None else "query"
    _check_name(name)
    if sql is None and source is not None and _is_tensor_source(source, format):
        return _ingest_tensors(store, source, name, labels, schema)
    if labels is not None:
        raise InvalidInput("labels: applies to a folder of images, not to a table source")
    schema = _load_schema(schema)
    raw, info = read_source(source, format=format, sql=sql, delimiter=delimiter)
    schema = schema or infer_schema(raw)
    result = validate(raw, schema, source=info)
    if not result.ok and on_error == "raise":
        result.raise_if_bad()
    good = result.good
    if good.num_rows == 0:
        raise InvalidInput(f"{info.uri}: no valid rows to store ({len(result.problems)} problems)")
    bad = result.bad if result.bad is not None and result.bad.num_rows else None
    ds, quarantine, warnings = store_dataset(
        store, name, good, schema, kind="data", info=info, bad=bad
    )
    return IngestResult(ds, quarantine, list(result.problems), warnings)


def _is_tensor_source(source: str | Path, format: str | None) -> bool:
    path = Path(source).expanduser()
    return format in ("npz", "images") or path.suffix.lower() == ".npz" or path.is_dir()


def _ingest_tensors(
    store: Store, source: str | Path, name: str, labels: Any, schema: Any
) -> IngestResult:
    from keel.data._tensors import label_warnings, read_images, read_npz

    if schema is not None:
        raise InvalidInput(
            "schema: a .npz file or an image folder gets its schema from its arrays; "
            "leave schema out"
        )
    if Path(source).expanduser().is_dir():
        table, schema, info = read_images(source, labels=labels)
    else:
        if labels is not None:
            raise InvalidInput("labels: applies to a folder of images; a .npz holds its own y")
        table, schema, info = read_npz(source)
    ds, _, warnings = store_dataset(store, name, table, schema, kind="tensors", info=info)
    return IngestResult(ds, None, [], label_warnings(schema, table, info.name) + warnings)


def store_dataset(
    store: Store,
    name: str,
    good: pa.Table,
    schema: Any,
    *,
    kind: str,
    info: Any = None,
    bad: pa.Table | None = None,
    parents: tuple[tuple[str, str], ...] = (),
) -> tuple[Dataset, Dataset | None, list[str]]:
    """Profile ``good`` and record it (and ``bad`` as ``NAME.quarantine``) as datasets, with
    lineage to the files of ``info`` (``read_from``) and to ``parents`` (``(sha, role)`` of
    datasets it was derived from). Everything is encoded before the first write, and the
    records land in one transaction."""
    from keel.data import profile

    good_bytes = _parquet_bytes(good)
    stats = profile(good, schema)
    prof = json.dumps(stats, sort_keys=True).encode()
    bad_bytes = _parquet_bytes(bad) if bad is not None else None
    # Everything is encoded: now write blobs, then the records in one transaction.
    good_sha = store.blobs.put_bytes(good_bytes)
    profile_sha = store.blobs.put_bytes(prof)
    bad_sha = store.blobs.put_bytes(bad_bytes) if bad_bytes else None
    schema_dict = schema.to_dict()
    with store.write() as conn:
        sources = _record_sources(conn, info) if info is not None else []
        ds = _record(conn, name, good_sha, kind, good, schema_dict, profile_sha)
        for sha in sources:
            store.add_edge(conn, ("dataset", good_sha), ("source", sha), "read_from")
        for sha, role in parents:
            store.add_edge(conn, ("dataset", good_sha), ("dataset", sha), role)
        quarantine = None
        if bad_sha and bad is not None:
            quarantine = _record(conn, f"{name}.quarantine", bad_sha, "quarantine", bad, {}, None)
            for sha in sources:
                store.add_edge(conn, ("dataset", bad_sha), ("source", sha), "read_from")
    where = info.name if info is not None else name
    return ds, quarantine, _warnings(stats, where)


def _warnings(stats: dict[str, Any], where: str) -> list[str]:
    """Columns that are empty or hold one value, and a data set too small to learn from."""
    out = []
    for name, col in stats["columns"].items():
        filled = col["count"] - col["null_count"]
        if filled == 0:
            out.append(
                f"{where}: column {name!r} is empty in every row; it cannot inform a model "
                f"(drop it, or check the file)"
            )
            continue
        value = _only_value(col)
        if value is not _MANY:
            rows = "every row" if col["null_count"] == 0 else "every non-empty row"
            out.append(
                f"{where}: column {name!r} holds one value ({value!r}) in {rows}; it cannot "
                f"inform a model"
            )
    if stats["rows"] < FEW_ROWS:
        out.append(
            f"{where}: only {stats['rows']} rows, fewer than {FEW_ROWS}; a model trained and "
            f"evaluated on so few rows gives numbers that are mostly noise"
        )
    return out


_MANY = object()


def _only_value(col: dict[str, Any]) -> Any:
    """The one value of a column that holds one, else ``_MANY``."""
    if "distinct" in col:
        return next(iter(col["top"])) if col["distinct"] == 1 else _MANY
    if "min" in col and col["min"] is not None and col["min"] == col["max"]:
        return col["min"] if not col.get("infinite_count") else _MANY
    return _MANY


def _record_sources(conn: Any, info: Any) -> list[str]:
    shas = []
    for path, sha in zip(info.path, info.sha256, strict=True):
        if conn.execute(select(t_src.c.sha).where(t_src.c.sha == sha)).first() is None:
            size = Path(path).stat().st_size
            conn.execute(
                insert(t_src).values(sha=sha, uri=str(path), size=size, created_at=time.time())
            )
        shas.append(sha)
    return shas


def _record(
    conn: Any,
    name: str,
    sha: str,
    kind: str,
    table: pa.Table,
    schema: dict[str, Any],
    profile_sha: str | None,
) -> Dataset:
    """A new version of ``name`` — unless its newest version already holds these bytes."""
    latest = conn.execute(
        select(t_ds).where(t_ds.c.name == name).order_by(t_ds.c.version.desc()).limit(1)
    ).first()
    if latest is not None and latest.sha == sha:
        return _to_dataset(latest)
    version = (
        int(conn.execute(select(func.max(t_ds.c.version)).where(t_ds.c.name == name)).scalar() or 0)
        + 1
    )
    values = dict(
        name=name,
        version=version,
        sha=sha,
        kind=kind,
        n_rows=table.num_rows,
        n_cols=table.num_columns,
        schema_json=json.dumps(schema),
        profile_sha=profile_sha,
        created_at=time.time(),
        created_by=config.user(),
    )
    conn.execute(insert(t_ds).values(**values))
    return _to_dataset(type("Row", (), values))


def _to_dataset(row: Any) -> Dataset:
    return Dataset(
        name=row.name,
        version=row.version,
        sha=row.sha,
        kind=row.kind,
        n_rows=row.n_rows,
        n_cols=row.n_cols,
        schema=json.loads(row.schema_json),
        profile_sha=row.profile_sha,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def get_dataset(store: Store, ref: str) -> Dataset:
    """A dataset by ``name`` (newest version), ``name/VERSION``, or a sha256 prefix (≥ 8)."""
    q = select(t_ds)
    if "/" in ref:
        name, v = ref.rsplit("/", 1)
        if not v.isdigit():
            raise InvalidInput(
                f"dataset reference {ref!r}: expected name/VERSION, got version {v!r}"
            )
        q = q.where(t_ds.c.name == name, t_ds.c.version == int(v))
    elif re.fullmatch(r"[0-9a-f]{8,64}", ref):
        q = q.where((t_ds.c.sha.startswith(ref)) | (t_ds.c.name == ref)).order_by(
            t_ds.c.version.desc()
        )
    else:
        q = q.where(t_ds.c.name == ref).order_by(t_ds.c.version.desc())
    with store.read() as conn:
        row = conn.execute(q.limit(1)).first()
        if row is None:
            names = conn.execute(select(t_ds.c.name).distinct()).scalars().all()
    if row is None:
        hint = (
            f"; datasets: {', '.join(sorted(names)[:10])}" if names else "; the store has none yet"
        )
        raise NotFound(f"dataset {ref!r} does not exist{hint}")
    return _to_dataset(row)


def list_datasets(store: Store) -> list[Dataset]:
    with store.read() as conn:
        rows = conn.execute(select(t_ds).order_by(t_ds.c.name, t_ds.c.version)).all()
    return [_to_dataset(r) for r in rows]


def load_table(store: Store, ref: str | Dataset) -> pa.Table:
    ds = ref if isinstance(ref, Dataset) else get_dataset(store, ref)
    return pq.read_table(io.BytesIO(store.blobs.get_bytes(ds.sha)))


def load_frame(store: Store, ref: str | Dataset) -> Any:
    """The dataset as pandas, categories as plain strings: the same values a caller of the
    served model sends, so training and serving see one representation."""
    table = load_table(store, ref)
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    tensors = [f.name for f in table.schema if isinstance(f.type, pa.FixedShapeTensorType)]
    if not tensors:
        return table.to_pandas()
    from keel.data._tensor import tensor_cells, to_ndarray

    frame = table.drop_columns(tensors).to_pandas()
    import pandas as pd

    for name in tensors:
        cells = tensor_cells(to_ndarray(table[name]))
        frame[name] = pd.Series(cells, index=frame.index, dtype=object)
    return frame[table.column_names]


def load_profile(store: Store, ref: str | Dataset) -> dict[str, Any]:
    ds = ref if isinstance(ref, Dataset) else get_dataset(store, ref)
    if ds.profile_sha is None:
        raise NotFound(f"dataset {ds.ref} has no profile")
    return json.loads(store.blobs.get_bytes(ds.profile_sha))
