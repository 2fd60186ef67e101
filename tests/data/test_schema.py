"""Schema: inference, YAML round trips, and messages for bad YAML."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from keel.data import DEFAULT_NULL_VALUES, ColumnSchema, Schema, infer_schema
from keel.errors import InvalidInput


def small_text_table() -> pa.Table:
    """What read_source gives for a small CSV: every column as text."""
    return pa.table(
        {
            "age": ["39", "50", "?", "28", "39"],
            "hours": ["40.5", "13", "40", "", "nan"],
            "sex": ["Male", "Female", "Male", "Male", "Female"],
            "member": ["true", "False", "TRUE", "true", "false"],
            "joined": ["2020-01-31", "2021-02-28", "2019-12-01", "2020-06-15", "2022-01-01"],
            "note": ["a", "b", "c", "d", "e"],
        }
    )


def test_infer_schema_from_text() -> None:
    schema = infer_schema(small_text_table())
    cols = {c.name: c for c in schema.columns}
    assert schema.logical_types() == {
        "age": "int",
        "hours": "float",
        "sex": "category",
        "member": "bool",
        "joined": "datetime",
        "note": "string",
    }
    assert (cols["age"].min, cols["age"].max, cols["age"].nullable) == (28, 50, True)
    assert isinstance(cols["age"].min, int)
    assert (cols["hours"].min, cols["hours"].max, cols["hours"].nullable) == (13.0, 40.5, True)
    assert cols["sex"].categories == ["Female", "Male"] and not cols["sex"].nullable
    assert not cols["member"].nullable and not cols["note"].nullable
    assert schema.null_values == list(DEFAULT_NULL_VALUES)


def test_infer_max_categories() -> None:
    table = pa.table({"c": [f"v{i % 5}" for i in range(100)]})
    assert infer_schema(table).columns[0].type == "category"
    assert infer_schema(table, max_categories=4).columns[0].type == "string"


def test_infer_custom_null_values() -> None:
    table = pa.table({"x": ["1", "-999", "3"]})
    col = infer_schema(table, null_values=["-999"]).columns[0]
    assert (col.type, col.nullable, col.min, col.max) == ("int", True, 1, 3)


def test_infer_typed_columns() -> None:
    table = pa.table(
        {
            "i": pa.array([3, None, 1], pa.int32()),
            "f": [0.5, float("nan"), 2.0],
            "b": [True, False, None],
            "t": [datetime(2020, 1, 1), datetime(2021, 1, 1), None],
            "d": pa.array(["x", "y", "x"]).dictionary_encode(),
            "empty": pa.array([None, None, None], pa.string()),
        }
    )
    schema = infer_schema(table)
    assert schema.logical_types() == {
        "i": "int",
        "f": "float",
        "b": "bool",
        "t": "datetime",
        "d": "category",
        "empty": "string",
    }
    assert [c.nullable for c in schema.columns] == [True, True, True, True, False, True]
    assert schema.column("f").max == 2.0 and schema.column("d").categories == ["x", "y"]


def test_infer_refuses_nested_columns() -> None:
    with pytest.raises(InvalidInput, match="column 'l' has type list<item: int64>"):
        infer_schema(pa.table({"l": [[1], [2]]}))


def test_yaml_round_trip(tmp_path: Path) -> None:
    schema = infer_schema(small_text_table())
    text = schema.to_yaml()
    assert "name: age" in text and "type: int" in text
    assert Schema.from_yaml(text) == schema
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    assert Schema.from_yaml(path) == schema
    assert Schema.from_yaml(str(path)) == schema
    assert Schema.from_dict(schema.to_dict()) == schema


def test_defaults_and_helpers() -> None:
    schema = Schema.from_yaml("columns:\n  - {name: a, type: int}\n  - {name: b, type: string}\n")
    assert schema.version == 1 and schema.extra_columns == "error"
    assert schema.columns[0].nullable is False
    assert schema.names == ["a", "b"]
    assert schema.arrow_schema().field("a").type == pa.int64()
    assert schema.column("b") == ColumnSchema(name="b", type="string")
    with pytest.raises(InvalidInput, match="no column 'c'; it has 'a', 'b'"):
        schema.column("c")


def bad(text: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        Schema.from_yaml(text)
    return str(caught.value)


def test_wrong_type_names_the_field_path_and_column() -> None:
    text = bad(
        "columns:\n"
        "  - {name: a, type: int}\n"
        "  - {name: b, type: int}\n"
        "  - {name: c, type: int}\n"
        "  - {name: age, type: integer}\n"
    )
    assert "columns[3].type (column 'age')" in text
    expected = "'int', 'float', 'bool', 'string', 'category', 'datetime' or 'tensor'"
    assert f"expected one of {expected}" in text
    assert "got 'integer'" in text


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("columns:\n  - {type: int}\n", "columns[0].name: is required but missing"),
        (
            "columns:\n  - {name: a, type: int, colour: red}\n",
            "columns[0].colour (column 'a'): unknown field",
        ),
        (
            "columns:\n  - {name: a, type: int, min: low}\n",
            "columns[0].min (column 'a'): expected a number, got 'low'",
        ),
        (
            "columns:\n  - {name: a, type: string, min: 1}\n",
            "min and max apply to int and float columns, not string",
        ),
        ("columns:\n  - {name: a, type: int, min: 5, max: 1}\n", "min (5) is greater than max (1)"),
        (
            "columns:\n  - {name: a, type: int, categories: [x]}\n",
            "categories apply to category columns",
        ),
        (
            "columns:\n  - {name: a, type: int, nullable: maybe}\n",
            "columns[0].nullable (column 'a'): expected a valid boolean",
        ),
        (
            "columns:\n  - {name: a, type: int}\n  - {name: a, type: float}\n",
            "column 'a' is listed more than once",
        ),
        ("columns: []\n", "columns: expected at least 1 item(s), got []"),
        (
            "extra_columns: keep\ncolumns:\n  - {name: a, type: int}\n",
            "extra_columns: expected one of 'error' or 'drop', got 'keep'",
        ),
        ("- a\n- b\n", "expected a mapping with a 'columns' list, got list"),
    ],
)
def test_bad_fields(yaml_text: str, expected: str) -> None:
    assert expected in bad(yaml_text)


def test_yaml_syntax_error_gives_the_line() -> None:
    text = bad("columns:\n  - name: a\n   type: int\n")
    assert text.startswith("schema line 3, column 4: invalid YAML")


def test_schema_file_errors_name_the_file(tmp_path: Path) -> None:
    assert "does not exist" in bad(str(tmp_path / "missing.yaml"))
    path = tmp_path / "s.yml"
    path.write_text("columns:\n  - {name: a, type: nope}\n")
    assert bad(str(path)).startswith("s.yml is not a valid schema: columns[0].type")
