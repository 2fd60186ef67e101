"""read_source on real files: CSV, TSV, gzip, Parquet, and every way a file can be bad."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data import SourceInfo, read_source
from keel.errors import InvalidInput


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def rows_csv(n: int, header: str = "id,name,score") -> str:
    return header + "\n" + "".join(f"{i},name{i},{i / 2}\n" for i in range(1, n + 1))


def test_csv_is_read_as_text_with_lineage(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", rows_csv(3))
    table, info = read_source(path)
    assert table.column_names == ["id", "name", "score"]
    assert table.schema.types == [pa.string()] * 3
    assert table["id"].to_pylist() == ["1", "2", "3"]
    assert isinstance(info, SourceInfo)
    assert info.format == "csv" and info.rows == 3 and info.line_offset == 1
    assert info.path == [str(path.resolve())] == info.paths
    assert info.sha256 == [hashlib.sha256(path.read_bytes()).hexdigest()] == info.sha256s
    assert info.size == path.stat().st_size == sum(info.sizes)
    assert info.name == "people.csv"
    assert info.to_dict()["sha256"] == info.sha256


def test_spaces_around_fields_are_stripped_like_uci_adult(tmp_path: Path) -> None:
    path = write(tmp_path / "adult.csv", "age, workclass\n39, State-gov\n50, ?\n")
    table, _ = read_source(path)
    assert table.column_names == ["age", "workclass"]
    assert table["workclass"].to_pylist() == ["State-gov", "?"]
    raw, _ = read_source(path, strip=False)
    assert raw.column_names == ["age", " workclass"]
    assert raw[" workclass"].to_pylist() == [" State-gov", " ?"]


def test_quoted_fields_with_delimiters_and_newlines(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'a,b\n"x, y","line1\nline2"\n"say ""hi""",z\n')
    table, _ = read_source(path)
    assert table.to_pylist() == [
        {"a": "x, y", "b": "line1\nline2"},
        {"a": 'say "hi"', "b": "z"},
    ]


def test_utf8_bom_and_non_ascii_text(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.csv", "\ufeffcity,n\nZürich,1\n東京,2\n")
    table, _ = read_source(path)
    assert table.column_names == ["city", "n"]
    assert table["city"].to_pylist() == ["Zürich", "東京"]


def test_tsv_and_gzip(tmp_path: Path) -> None:
    tsv, _ = read_source(write(tmp_path / "t.tsv", "a\tb\n1\t2\n"))
    assert tsv.to_pylist() == [{"a": "1", "b": "2"}]
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n"))
    table, info = read_source(gz)
    assert table.num_rows == 2 and info.format == "csv"
    assert info.sha256 == [hashlib.sha256(gz.read_bytes()).hexdigest()]


def test_explicit_format_and_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "adult.data", "a;b\n1;2\n")
    table, info = read_source(path, format="csv", delimiter=";")
    assert table.to_pylist() == [{"a": "1", "b": "2"}] and info.format == "csv"


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", None]}), path)
    table, info = read_source(path)
    assert table.schema.field("x").type == pa.int64()
    assert table["y"].to_pylist() == ["a", None]
    assert info.format == "parquet" and info.line_offset is None and info.rows == 2


def test_big_file_reads_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "big.csv", rows_csv(120_000))
    table, info = read_source(path)
    assert table.num_rows == info.rows == 120_000
    assert table["id"][119_999].as_py() == "120000"


# Bad files: each message names the file and where the problem is.


def message(path: Path, **kwargs: object) -> str:
    with pytest.raises(InvalidInput) as caught:
        read_source(path, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    text = message(tmp_path / "nope.csv")
    assert "nope.csv" in text and "no such file" in text


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    assert "is not a file" in message(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    text = message(write(tmp_path / "empty.csv", b""))
    assert "empty.csv" in text and "empty (0 bytes)" in text


def test_header_only(tmp_path: Path) -> None:
    text = message(write(tmp_path / "head.csv", "a,b,c\n"))
    assert text == "head.csv has a header but no rows"


def test_blank_first_line(tmp_path: Path) -> None:
    text = message(write(tmp_path / "blank.csv", "\na,b\n1,2\n"))
    assert "blank.csv line 1 is empty" in text


def test_non_utf8_names_line_column_offset_and_fix(tmp_path: Path) -> None:
    data = "id,city\n1,Paris\n2,Zürich\n".encode("latin-1")
    text = message(write(tmp_path / "latin.csv", data))
    offset = data.index(b"\xfc")
    assert "latin.csv line 3" in text
    assert "column 'city'" in text
    assert f"byte offset {offset}" in text
    assert "0xfc" in text and "UTF-8" in text and "iconv" in text


def test_non_utf8_deep_in_a_big_file(tmp_path: Path) -> None:
    data = rows_csv(50_000).encode() + "50001,Zoë,1\n".encode("latin-1")
    text = message(write(tmp_path / "deep.csv", data))
    assert "deep.csv line 50,002" in text and "column 'name'" in text


def test_non_utf8_in_header(tmp_path: Path) -> None:
    text = message(write(tmp_path / "h.csv", "id,caf\xe9\n1,2\n".encode("latin-1")))
    assert "h.csv line 1" in text and "UTF-8" in text


def test_field_over_the_limit_names_line_and_column(tmp_path: Path) -> None:
    data = "id,note\n1,ok\n2," + "x" * 5_000 + "\n3,ok\n"
    text = message(write(tmp_path / "huge.csv", data), max_field_bytes=1_000)
    assert "huge.csv row 2 (line 3), column 'note'" in text
    assert "5,000 bytes" in text and "limit of 1,000 bytes" in text
    assert "max_field_bytes" in text


def test_unclosed_quote_bigger_than_a_block(tmp_path: Path) -> None:
    data = 'id,note\n1,ok\n2,"' + "x" * (3 << 20) + "\n3,ok\n"
    text = message(write(tmp_path / "quote.csv", data))
    assert "quote.csv row 2 (line 3)" in text
    assert "larger than the limit" in text and "quote" in text


def test_ragged_row_names_line_and_counts(tmp_path: Path) -> None:
    data = rows_csv(30_000) + "30001,too,many,fields\n" + "30002,x,1\n"
    text = message(write(tmp_path / "ragged.csv", data))
    assert "ragged.csv row 30,001 (line 30,002)" in text
    assert "expected 3 fields like the header, found 4" in text


def test_short_row_after_a_multiline_field(tmp_path: Path) -> None:
    text = message(write(tmp_path / "ml.csv", 'a,b\n1,"two\nlines"\n3\n'))
    assert "ml.csv row 2 (line 4)" in text and "found 1" in text


def test_duplicate_column_name(tmp_path: Path) -> None:
    text = message(write(tmp_path / "dup.csv", "id,age,name,age\n1,2,x,3\n"))
    assert "dup.csv line 1" in text
    assert "'age' appears twice (columns 2 and 4)" in text


def test_empty_column_name(tmp_path: Path) -> None:
    text = message(write(tmp_path / "idx.csv", ",a\n0,1\n"))
    assert "idx.csv line 1: column 1 has no name" in text and "index=False" in text


def test_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a\n1\n")
    text = message(path, format="xlsx")
    assert "unknown format 'xlsx'" in text and "d.csv" in text and "parquet" in text


def test_unknown_suffix_asks_for_format(tmp_path: Path) -> None:
    text = message(write(tmp_path / "adult.data", "a\n1\n"))
    assert "adult.data" in text and "pass format=" in text


def test_not_parquet(tmp_path: Path) -> None:
    text = message(write(tmp_path / "fake.parquet", "a,b\n1,2\n"))
    assert text.startswith("fake.parquet cannot be read as Parquet")


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), path)
    assert message(path) == "none.parquet has columns but no rows"


def test_no_source_and_no_sql() -> None:
    with pytest.raises(InvalidInput, match="give a file to read"):
        read_source(None)
