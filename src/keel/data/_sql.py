"""A DuckDB ``SELECT`` over files, sandboxed so that lineage is exact.

The files a query may read are the ones ``source`` names (a file or a glob, also the
table ``source``) and the ones the query names by a constant path (``FROM 'a.csv'``,
``read_parquet(['b.parquet'])``). DuckDB runs with external access off and only those
files allowed, so a query cannot read another file, nor write one.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from keel.data._read import SourceInfo, check_column_names, file_sha256
from keel.errors import InvalidInput

__all__ = ["read_sql"]

_READERS = {
    ".csv": "read_csv",
    ".tsv": "read_csv",
    ".parquet": "read_parquet",
    ".pq": "read_parquet",
}


def read_sql(source: str | Path | None, sql: str) -> tuple[pa.Table, SourceInfo]:
    """Run one ``SELECT`` over files; see ``read_source``."""
    _check_select(sql)
    own = _source_files(source) if source is not None else []
    named, globs = _files_named_in(sql)
    files = sorted(set(own) | set(named))
    if not files:
        raise InvalidInput(
            "the SQL query reads no file: name one in the query (FROM 'data.csv') or pass "
            "it as source and read it as the table source"
        )
    con = duckdb.connect(":memory:")
    try:
        _sandbox(con, files, globs)
        table = _run(con, own, sql)
    finally:
        con.close()
    check_column_names(table.column_names, "the SQL query's result")
    if table.num_rows == 0:
        raise InvalidInput(f"the SQL query returned no rows: {sql}")
    sizes = [f.stat().st_size for f in files]
    return table, SourceInfo(
        uri=str(Path(source).expanduser().absolute()) if source is not None else "sql",
        path=[str(f) for f in files],
        format="sql",
        sha256=[file_sha256(f) for f in files],
        size=sum(sizes),
        sizes=sizes,
        rows=table.num_rows,
        sql=sql,
    )


def _source_files(source: str | Path) -> list[Path]:
    pattern = str(Path(source).expanduser())
    if glob.has_magic(pattern):
        files = _glob(pattern)
        if not files:
            raise InvalidInput(f"{str(source)!r} matches no file; check the pattern")
        return files
    path = Path(pattern)
    if not path.exists():
        raise InvalidInput(f"{str(source)!r}: no such file; check the path")
    if not path.is_file():
        raise InvalidInput(f"{str(source)!r} is not a file; name a file or a glob (dir/*.csv)")
    return [path.resolve()]


def _glob(pattern: str) -> list[Path]:
    return sorted(
        Path(p).resolve() for p in glob.glob(pattern, recursive=True) if Path(p).is_file()
    )


def _check_select(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidInput(f"the SQL query is not valid: {exc}") from exc
    kinds = [s.type for s in statements]
    if kinds != [duckdb.StatementType.SELECT]:
        got = ", ".join(k.name for k in kinds) or "nothing"
        raise InvalidInput(f"the SQL query must be one SELECT statement; got {got}")


def _files_named_in(sql: str) -> tuple[list[Path], list[str]]:
    """Existing files that the query names by a constant path, and the globs among them."""
    with duckdb.connect(":memory:") as con:
        [(serialized,)] = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree = json.loads(serialized)
    files: list[Path] = []
    globs: list[str] = []
    for name in sorted(set(_paths_in(tree))):
        if glob.has_magic(name):
            globs.append(name)
            files += _glob(name)
        elif Path(name).is_file():
            files.append(Path(name).resolve())
        elif Path(name).suffix.lower() in _READERS and not Path(name).exists():
            raise InvalidInput(f"the SQL query reads {name!r}: no such file; check the path")
    return files, globs


def _paths_in(node: Any, in_function: bool = False) -> Iterator[str]:
    """Table names (``FROM 'a.csv'``) and string constants inside table functions."""
    if isinstance(node, list):
        for item in node:
            yield from _paths_in(item, in_function)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind == "BASE_TABLE" and not node.get("schema_name") and not node.get("catalog_name"):
            yield node.get("table_name", "")
        if in_function and kind == "VALUE_CONSTANT":
            literal = node.get("literal") or {}
            if literal.get("kind") == "STRING":
                yield literal.get("text", "")
        inside = in_function or kind == "TABLE_FUNCTION"
        for value in node.values():
            yield from _paths_in(value, inside)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sandbox(con: duckdb.DuckDBPyConnection, files: list[Path], globs: list[str]) -> None:
    allowed = "[" + ", ".join(_literal(str(f)) for f in files) + "]"
    con.execute(f"SET allowed_paths = {allowed}")
    if globs:  # DuckDB lists the folder of a glob, so the folder must be allowed
        folders = {str(Path(g.split("*")[0].split("?")[0]).expanduser().absolute()) for g in globs}
        listed = "[" + ", ".join(_literal(f.rstrip("/") + "/") for f in sorted(folders)) + "]"
        con.execute(f"SET allowed_directories = {listed}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _run(con: duckdb.DuckDBPyConnection, own: list[Path], sql: str) -> pa.Table:
    readers = {_READERS.get(f.suffix.lower()) for f in own}
    try:
        if own and len(readers) == 1 and None not in readers:
            names = "[" + ", ".join(_literal(str(f)) for f in own) + "]"
            con.execute(f"CREATE VIEW source AS SELECT * FROM {readers.pop()}({names})")
        relation = con.sql(sql)
        to_table = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        return to_table()
    except duckdb.PermissionException as exc:
        raise InvalidInput(
            f"the SQL query reads a file that it does not name by a constant path; keel "
            f"must know every file a query reads, for lineage ({exc})"
        ) from exc
    except duckdb.Error as exc:
        raise InvalidInput(f"the SQL query failed: {exc}") from exc
