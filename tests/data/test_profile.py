"""profile: JSON statistics per column, matching NumPy, deterministic."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from keel.data import Schema, profile, validate
from keel.errors import InvalidInput

SCHEMA = Schema.from_yaml(
    "columns:\n"
    "  - {name: age, type: int}\n"
    "  - {name: income, type: float, nullable: true}\n"
    "  - {name: colour, type: category, nullable: true}\n"
    "  - {name: note, type: string}\n"
    "  - {name: ok, type: bool}\n"
    "  - {name: at, type: datetime}\n"
)


def table(n: int = 5_000) -> pa.Table:
    rng = np.random.default_rng(7)
    income = rng.lognormal(10, 1, n)
    income[::50] = np.nan
    colours = np.array(["red", "green", "blue", "black"])[rng.integers(0, 4, n) ** 2 % 4]
    return pa.table(
        {
            "age": rng.integers(17, 91, n),
            "income": pa.array(income, from_pandas=True),
            "colour": pa.array(np.where(np.arange(n) % 10 == 0, None, colours)),
            "note": [f"n{i % 7}" for i in range(n)],
            "ok": rng.random(n) < 0.3,
            "at": pa.array([datetime(2024, 1, 1 + i % 28) for i in range(n)], pa.timestamp("us")),
        }
    )


def good() -> pa.Table:
    return validate(table(), SCHEMA, source="t.parquet").good


def test_numeric_statistics_match_numpy() -> None:
    data = good()
    stats = profile(data, SCHEMA)["columns"]
    for name in ("age", "income"):
        values = data[name].drop_null().to_numpy().astype(float)
        col = stats[name]
        assert col["count"] == data.num_rows
        assert col["null_count"] == data[name].null_count
        expected = np.quantile(values, [0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1])
        assert list(col["quantiles"]) == [
            "0",
            "0.01",
            "0.05",
            "0.25",
            "0.5",
            "0.75",
            "0.95",
            "0.99",
            "1",
        ]
        assert list(col["quantiles"].values()) == pytest.approx(expected.tolist())
        assert col["mean"] == pytest.approx(values.mean())
        assert col["std"] == pytest.approx(values.std())
        assert (col["min"], col["max"]) == (values.min(), values.max())
        counts, edges = np.histogram(values, bins=20)
        assert col["histogram"]["counts"] == counts.tolist()
        assert col["histogram"]["edges"] == pytest.approx(edges.tolist())
        assert sum(col["histogram"]["counts"]) == len(values)
    assert stats["income"]["null_count"] == 100
    assert isinstance(stats["age"]["min"], int)


def test_category_counts() -> None:
    data = good()
    col = profile(data, SCHEMA, top_k=2)["columns"]["colour"]
    colours = [c for c in data["colour"].to_pylist() if c is not None]
    counts = {c: colours.count(c) for c in set(colours)}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert col["distinct"] == len(counts)
    assert col["null_count"] == data.num_rows - len(colours)
    assert list(col["top"].items()) == ranked[:2]
    assert col["other"] == sum(n for _, n in ranked[2:])


def test_ties_sort_by_value_and_strings_have_lengths() -> None:
    stats = profile(good(), SCHEMA)["columns"]
    note = stats["note"]
    assert note["distinct"] == 7 and note["other"] == 0
    assert list(note["top"]) == ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]
    assert note["length"] == {"min": 2, "max": 2, "mean": 2.0}
    assert set(stats["ok"]["top"]) == {"true", "false"}
    assert stats["at"]["min"] == "2024-01-01T00:00:00"
    assert stats["at"]["max"] == "2024-01-28T00:00:00"


def test_profile_is_strict_json_and_deterministic() -> None:
    data = good()
    first = json.dumps(profile(data, SCHEMA), allow_nan=False, sort_keys=True)
    assert first == json.dumps(profile(data, SCHEMA), allow_nan=False, sort_keys=True)
    assert json.loads(first)["rows"] == data.num_rows


def test_all_null_and_infinite_values() -> None:
    schema = Schema.from_yaml("columns:\n  - {name: x, type: float, nullable: true}\n")
    none = profile(pa.table({"x": pa.array([None, None], pa.float64())}), schema)
    assert none["columns"]["x"]["mean"] is None and none["columns"]["x"]["histogram"] is None
    inf = profile(pa.table({"x": [1.0, float("inf"), 3.0]}), schema)["columns"]["x"]
    assert inf["infinite_count"] == 1 and inf["max"] == 3.0


def test_profile_wants_the_validated_table() -> None:
    schema = Schema.from_yaml("columns:\n  - {name: age, type: int}\n")
    with pytest.raises(InvalidInput, match="the schema says int but the table holds string"):
        profile(pa.table({"age": ["1", "2"]}), schema)
    with pytest.raises(InvalidInput, match="no such column"):
        profile(pa.table({"b": [1]}), schema)
