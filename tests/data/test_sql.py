"""read_source(sql=...): a DuckDB SELECT over files, sandboxed so lineage is exact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data import read_source
from keel.errors import InvalidInput


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a.csv").write_text("id,x\n1,a\n2,b\n3,c\n")
    (tmp_path / "b.csv").write_text("id,x\n4,d\n")
    pq.write_table(pa.table({"id": [1, 2], "y": [0.5, 1.5]}), tmp_path / "t.parquet")
    return tmp_path


def test_source_is_the_table_source(files: Path) -> None:
    table, info = read_source(files / "a.csv", sql="SELECT * FROM source WHERE id > 1")
    assert table.to_pylist() == [{"id": 2, "x": "b"}, {"id": 3, "x": "c"}]
    assert info.format == "sql" and info.line_offset is None and info.rows == 2
    assert info.path == [str((files / "a.csv").resolve())]
    assert info.sha256 == [hashlib.sha256((files / "a.csv").read_bytes()).hexdigest()]
    assert info.sql == "SELECT * FROM source WHERE id > 1"
    assert info.name == "SQL query over a.csv"


def test_glob_source(files: Path) -> None:
    table, info = read_source(files / "*.csv", sql="SELECT count(*) AS n FROM source")
    assert table.to_pylist() == [{"n": 4}]
    assert [Path(p).name for p in info.path] == ["a.csv", "b.csv"]
    assert len(info.sha256) == 2 and info.size == sum(info.sizes)


def test_files_named_in_the_query_without_source(files: Path) -> None:
    sql = f"SELECT * FROM '{files}/t.parquet' JOIN read_csv(['{files}/a.csv']) USING (id)"
    table, info = read_source(None, sql=sql)
    assert table.num_rows == 2 and set(table.column_names) == {"id", "y", "x"}
    assert [Path(p).name for p in info.path] == ["a.csv", "t.parquet"]


def test_glob_in_the_query(files: Path) -> None:
    table, info = read_source(None, sql=f"SELECT sum(id) AS s FROM '{files}/*.csv'")
    assert table.to_pylist() == [{"s": 10}]
    assert [Path(p).name for p in info.path] == ["a.csv", "b.csv"]


def test_a_file_the_query_builds_at_run_time_is_refused(files: Path) -> None:
    sql = f"SELECT * FROM source, read_csv('{files}/b' || '.csv')"
    with pytest.raises(InvalidInput, match="does not name by a constant path"):
        read_source(files / "a.csv", sql=sql)


def test_only_one_select(files: Path) -> None:
    with pytest.raises(InvalidInput, match="one SELECT statement; got COPY"):
        read_source(files / "a.csv", sql=f"COPY (SELECT 1) TO '{files}/out.csv'")
    with pytest.raises(InvalidInput, match="got SELECT, SELECT"):
        read_source(files / "a.csv", sql="SELECT 1; SELECT 2")
    assert not (files / "out.csv").exists()


def test_syntax_error_shows_duckdb_position(files: Path) -> None:
    with pytest.raises(InvalidInput, match="not valid.*selec"):
        read_source(files / "a.csv", sql="selec * from source")


def test_query_errors_and_empty_results(files: Path) -> None:
    with pytest.raises(InvalidInput, match="the SQL query failed.*nope"):
        read_source(files / "a.csv", sql="SELECT nope FROM source")
    with pytest.raises(InvalidInput, match="returned no rows"):
        read_source(files / "a.csv", sql="SELECT * FROM source WHERE id > 99")


def test_missing_files(files: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        read_source(files / "nope.csv", sql="SELECT * FROM source")
    with pytest.raises(InvalidInput, match="matches no file"):
        read_source(files / "*.json", sql="SELECT * FROM source")
    with pytest.raises(InvalidInput, match="reads '.*gone.csv': no such file"):
        read_source(None, sql=f"SELECT * FROM '{files}/gone.csv'")
    with pytest.raises(InvalidInput, match="reads no file"):
        read_source(None, sql="SELECT 1 AS one")
