"""Ingest end to end: CSV delimiters, sniffed, given, or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.cli import main
from keel.data import ingest, load_frame, read_source
from keel.errors import InvalidInput


def rows(n: int, sep: str) -> str:
    header = sep.join(["id", "city", "score"])
    body = "".join(sep.join([str(i), ["Oslo", "Rome"][i % 2], f"{i / 2}"]) + "\n" for i in range(n))
    return header + "\n" + body


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_delimiter_is_sniffed(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(rows(40, sep))
    table, _ = read_source(path)
    assert table.column_names == ["id", "city", "score"]
    assert table["city"].to_pylist()[:2] == ["Oslo", "Rome"]


def test_semicolons_with_decimal_commas_are_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "de.csv"
    path.write_text("id;price;note\n1;2,5;a\n2;3,75;b, c\n3;1,0;d\n")
    table, _ = read_source(path)
    assert table.column_names == ["id", "price", "note"]
    assert table["price"].to_pylist() == ["2,5", "3,75", "1,0"]


def test_a_comma_file_with_semicolons_in_its_text_stays_comma(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,note\n1,a;b\n2,c;d;e\n3,f\n")
    table, _ = read_source(path)
    assert table.column_names == ["id", "note"]


def test_the_delimiter_can_be_given(store, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(rows(40, ";"))
    res = ingest(store, path, name="people", delimiter=";")
    assert res.dataset.n_cols == 3
    assert list(load_frame(store, res.dataset).columns) == ["id", "city", "score"]


def test_a_one_column_read_whose_header_holds_a_delimiter_is_refused(store, tmp_path) -> None:
    path = tmp_path / "ragged.csv"
    # ragged under ';' (so not sniffed as such), one column under ','
    path.write_text("id;city;score\n1;Oslo;1\n2;Rome\n3;Oslo;3;4\n")
    with pytest.raises(InvalidInput) as err:
        ingest(store, path, name="ragged")
    message = str(err.value)
    assert "ragged.csv" in message and "'id;city;score'" in message
    assert "--delimiter ';'" in message
    from keel.data import list_datasets

    assert list_datasets(store) == []


def test_a_bad_delimiter_is_refused(store, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(rows(40, ","))
    with pytest.raises(InvalidInput, match="delimiter: expected one character"):
        ingest(store, path, delimiter=";;")


def test_cli_ingest_takes_a_delimiter_and_sniffs_one(tmp_path: Path, capsys) -> None:
    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    semi = root / "semi.csv"
    semi.write_text(rows(40, ";"))
    capsys.readouterr()
    assert main(["ingest", str(semi), "-C", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"]["n_cols"] == 3
    pipe = root / "pipe.txt"
    pipe.write_text(rows(40, "|"))
    code = main(
        ["ingest", str(pipe), "--format", "csv", "--delimiter", "|", "-C", str(root), "--json"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["dataset"]["n_cols"] == 3
