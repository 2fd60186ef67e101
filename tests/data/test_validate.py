"""validate: good/bad split, problems named by row, line and column, vectorised."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data import Schema, read_source, validate
from keel.errors import ValidationFailed

ADULT_SCHEMA = """
columns:
  - {name: age, type: int, min: 17, max: 90}
  - {name: workclass, type: category, nullable: true,
     categories: [Private, Self-emp, State-gov]}
  - {name: hours, type: float, nullable: true, min: 0}
  - {name: sex, type: category, categories: [Female, Male]}
"""
GOOD_ROW = "39,Private,40.0,Male"


def adult_csv(path: Path, n: int, bad: dict[int, str]) -> Path:
    """A CSV with ``n`` data rows; ``bad`` maps a 1-based data row to its replacement."""
    lines = ["age,workclass,hours,sex"]
    lines += [bad.get(row, GOOD_ROW) for row in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def check(path: Path) -> tuple[object, object]:
    table, info = read_source(path)
    return validate(table, Schema.from_yaml(ADULT_SCHEMA), source=info), table


def test_wrong_type_in_a_known_row_gives_row_and_line(tmp_path: Path) -> None:
    path = adult_csv(tmp_path / "adult.csv", 2_000, {1_204: "forty,Private,40,Male"})
    # the bad value sits on line 1,205 of the file (the header is line 1)
    assert path.read_text().splitlines()[1_204].startswith("forty")
    result, _ = check(path)
    assert result.bad_rows == 1 and result.good.num_rows == 1_999
    (problem,) = result.problems
    assert problem == {
        "file": "adult.csv",
        "row": 1_204,
        "line": 1_205,
        "column": "age",
        "expected": "int in [17, 90]",
        "got": "forty",
        "problem": "wrong_type",
        "message": "column 'age': expected int in [17, 90], got 'forty'",
    }
    with pytest.raises(ValidationFailed) as caught:
        result.raise_if_bad()
    text = str(caught.value)
    assert (
        "adult.csv row 1,204 (line 1,205), column 'age': expected int in [17, 90], got 'forty'"
        in text
    )
    assert caught.value.problems == result.problems


def test_each_kind_of_problem(tmp_path: Path) -> None:
    path = adult_csv(
        tmp_path / "kinds.csv",
        8,
        {
            2: "95,Private,40,Male",  # out of range
            3: "39,Unknown,40,Male",  # unknown category
            4: "39,Private,40,?",  # null in a non-nullable column
            5: "39,Private,-1,M",  # out of range and unknown category
            6: "39,?,,Female",  # nulls where allowed: fine
        },
    )
    result, raw = check(path)
    got = [(p["row"], p["column"], p["problem"], p["got"]) for p in result.problems]
    assert got == [
        (2, "age", "out_of_range", "95"),
        (3, "workclass", "unknown_category", "Unknown"),
        (4, "sex", "missing_value", "?"),
        (5, "hours", "out_of_range", "-1"),
        (5, "sex", "unknown_category", "M"),
    ]
    assert result.good.num_rows + result.bad_rows == raw.num_rows == result.rows
    assert result.bad["_row"].to_pylist() == [2, 3, 4, 5]
    assert result.bad["_column"].to_pylist()[-1] == "hours, sex"
    assert result.bad["age"].to_pylist() == ["95", "39", "39", "39"]  # raw values kept
    assert "expected one of 'Female', 'Male', got 'M'" in result.bad["_problem"][3].as_py()
    assert result.good.num_rows == 4


def test_good_rows_are_cast_to_the_schema_types(tmp_path: Path) -> None:
    path = adult_csv(tmp_path / "ok.csv", 3, {2: "17,?,,Female"})
    result, _ = check(path)
    assert result.ok and result.bad is None and result.problems == []
    result.raise_if_bad()  # nothing to raise
    good = result.good
    assert good.schema.field("age").type == pa.int64()
    assert good.schema.field("hours").type == pa.float64()
    assert pa.types.is_dictionary(good.schema.field("sex").type)
    assert good["workclass"].to_pylist() == ["Private", None, "Private"]
    assert good["hours"].to_pylist() == [40.0, None, 40.0]


def test_other_types(tmp_path: Path) -> None:
    schema = Schema.from_yaml(
        "columns:\n"
        "  - {name: flag, type: bool}\n"
        "  - {name: at, type: datetime}\n"
        "  - {name: day, type: datetime, format: '%d/%m/%Y'}\n"
        "  - {name: code, type: string, max_length: 3}\n"
        "  - {name: score, type: float}\n"
    )
    table = pa.table(
        {
            "flag": ["true", "No", "1", "maybe", "y"],
            "at": ["2024-01-31", "2024-01-31 12:00", "2024-13-01", "x", "2024-02-01T00:00:00"],
            "day": ["31/01/2024", "01/02/2024", "01/02/2024", "01/02/2024", "2024-02-01"],
            "code": ["abc", "de", "toolong", "f", "g"],
            "score": ["1.5", "1e3", "-inf", "1,5", "7"],
        }
    )
    result = validate(table, schema, source="t.csv")
    got = {(p["row"], p["column"], p["problem"]) for p in result.problems}
    assert got == {
        (3, "at", "wrong_type"),
        (3, "code", "too_long"),
        (4, "flag", "wrong_type"),
        (4, "at", "wrong_type"),
        (4, "score", "wrong_type"),
        (5, "day", "wrong_type"),
    }
    assert result.good["flag"].to_pylist() == [True, False]
    assert result.good["at"].to_pylist() == [datetime(2024, 1, 31), datetime(2024, 1, 31, 12)]
    assert result.good["day"].to_pylist() == [datetime(2024, 1, 31), datetime(2024, 2, 1)]
    assert result.good["score"].to_pylist() == [1.5, 1000.0]


def test_numbers_from_parquet_have_no_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.5, float("nan"), 4.0]}), path)
    table, info = read_source(path)
    schema = Schema.from_yaml("columns:\n  - {name: x, type: int}\n")
    result = validate(table, schema, source=info)
    assert [(p["row"], p["line"], p["problem"]) for p in result.problems] == [
        (2, None, "wrong_type"),
        (3, None, "missing_value"),
    ]
    with pytest.raises(
        ValidationFailed, match=r"n.parquet row 2, column 'x': expected int, got '2.5'"
    ):
        result.raise_if_bad()
    assert result.good["x"].to_pylist() == [1, 4]


def test_custom_null_values_in_the_schema() -> None:
    schema = Schema.from_yaml(
        "null_values: ['-999']\ncolumns:\n  - {name: x, type: int, nullable: true}\n"
    )
    result = validate(pa.table({"x": ["1", "-999", "?"]}), schema, source="x.csv")
    assert result.good["x"].to_pylist() == [1, None]
    assert [(p["row"], p["got"]) for p in result.problems] == [(3, "?")]


def test_missing_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("age,sex,colour\n39,Male,red\n")
    table, info = read_source(path)
    with pytest.raises(ValidationFailed) as caught:
        validate(table, Schema.from_yaml(ADULT_SCHEMA), source=info)
    text = str(caught.value)
    assert "cols.csv is missing column(s) 'workclass', 'hours' that the schema requires" in text
    assert "has column(s) 'colour' that the schema does not list" in text
    assert "it has 'age', 'sex', 'colour'" in text
    kinds = [(p["column"], p["problem"]) for p in caught.value.problems]
    assert kinds == [
        ("workclass", "missing_column"),
        ("hours", "missing_column"),
        ("colour", "extra_column"),
    ]


def test_extra_columns_can_be_dropped() -> None:
    schema = Schema.from_yaml("extra_columns: drop\ncolumns:\n  - {name: a, type: int}\n")
    result = validate(pa.table({"a": ["1"], "b": ["x"]}), schema, source="s.csv")
    assert result.ok and result.good.column_names == ["a"]


def test_message_lists_the_first_problems_then_counts_the_rest(tmp_path: Path) -> None:
    bad = {row: "x,Private,40,Male" for row in range(10, 60)}
    result, _ = check(adult_csv(tmp_path / "many.csv", 100, bad))
    with pytest.raises(ValidationFailed) as caught:
        result.raise_if_bad(limit=3)
    lines = str(caught.value).splitlines()
    assert lines[0] == "many.csv: 50 of 100 rows break the schema:"
    assert lines[1].strip().startswith("many.csv row 10 (line 11), column 'age'")
    assert lines[-1].strip() == "... and 47 more rows"
    assert len(caught.value.problems) == 50


def test_line_offset_can_be_given() -> None:
    schema = Schema.from_yaml("columns:\n  - {name: a, type: int}\n")
    result = validate(pa.table({"a": ["1", "x"]}), schema, source="q", line_offset=3)
    assert result.problems[0]["line"] == 5
    result = validate(pa.table({"a": ["1", "x"]}), schema, source="data.csv", line_offset=None)
    assert result.problems[0]["line"] is None


def test_200k_rows_with_a_few_bad_ones(tmp_path: Path) -> None:
    bad = {17: "abc,Private,40,Male", 123_456: "39,Private,40,X", 199_999: "200,Private,1,Male"}
    result, _ = check(adult_csv(tmp_path / "big.csv", 200_000, bad))
    assert result.good.num_rows == 200_000 - 3
    assert [(p["row"], p["line"]) for p in result.problems] == [
        (17, 18),
        (123_456, 123_457),
        (199_999, 200_000),
    ]
