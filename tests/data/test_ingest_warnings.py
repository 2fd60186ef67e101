"""Ingest warns about data that will not teach a model much: empty and constant columns,
very few rows. Warnings, not errors: the dataset is stored."""

from __future__ import annotations

import json
from pathlib import Path

from keel.cli import main
from keel.data import ingest


def rows(n: int) -> str:
    body = "".join(f"{i},{['Oslo', 'Rome'][i % 2]},{i / 2}\n" for i in range(n))
    return "id,city,score\n" + body


def test_warnings_for_empty_and_constant_columns_and_few_rows(store, tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    body = "".join(f"{i},,same,{i % 3}\n" for i in range(12))
    path.write_text("id,empty,const,group\n" + body)
    res = ingest(store, path, name="small")
    text = "\n".join(res.warnings)
    assert "column 'empty' is empty in every row" in text
    assert "column 'const' holds one value ('same') in every row" in text
    assert "12 rows" in text and "fewer than 30" in text
    assert not any("'id'" in w or "'group'" in w for w in res.warnings)


def test_no_warnings_for_ordinary_data(store, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(rows(40))
    assert ingest(store, path).warnings == []


def test_cli_ingest_prints_the_warnings(tmp_path: Path, capsys) -> None:
    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    path = root / "small.csv"
    path.write_text("a,b\n" + "".join(f"{i},x\n" for i in range(5)))
    capsys.readouterr()
    assert main(["ingest", str(path), "-C", str(root)]) == 0
    out = capsys.readouterr().out
    assert "warning" in out and "column 'b' holds one value" in out and "5 rows" in out
    assert main(["ingest", str(path), "-C", str(root), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("fewer than 30" in w for w in warnings)
