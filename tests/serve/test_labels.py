"""Delayed labels: stored once, joined to the prediction log by request id, the latest label
winning, and bad files refused with the store unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from keel.errors import InvalidInput
from keel.serve._labels import LABELS_SCHEMA, ingest_labels, joined, read_labels
from keel.serve._predlog import PredictionLog, read_predictions
from keel.store import Store, _tables


def log(store: Store, ids: list[str], *, model: str = "m", start: float = 100.0) -> None:
    with PredictionLog(store) as plog:
        plog.record(
            [
                {
                    "request_id": rid,
                    "model": model,
                    "version": 1,
                    "ts": start + i,
                    "inputs": {"x": i},
                    "outputs": {"label": "yes" if i % 2 else "no", "probabilities": [0.5, 0.5]},
                }
                for i, rid in enumerate(ids)
            ]
        )


def csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def truth(store: Store, model: str = "m", **kw: Any) -> dict[str, str | None]:
    table = joined(store, model, **kw)
    return dict(zip(table["request_id"].to_pylist(), table["label_true"].to_pylist(), strict=True))


def label_rows(store: Store) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(_tables.prediction_labels)).scalar()


IDS = [f"r{i}" for i in range(6)]


def test_join_and_counts(any_store: Store, tmp_path: Path) -> None:
    log(any_store, IDS)
    path = csv(tmp_path / "labels.csv", "request_id,y\nr0,no\nr1,yes\nr3,no\nx1,yes\nx2,no\n")
    got = ingest_labels(any_store, path)
    assert {k: got[k] for k in ("rows", "matched", "unmatched", "new")} == {
        "rows": 5,
        "matched": 3,
        "unmatched": 2,
        "new": True,
    }
    table = joined(any_store, "m")
    assert table.column_names == [*read_predictions(any_store, "m").column_names, "label_true"]
    assert table["request_id"].to_pylist() == IDS  # the log's order
    assert truth(any_store) == {
        "r0": "no",
        "r1": "yes",
        "r2": None,
        "r3": "no",
        "r4": None,
        "r5": None,
    }
    only = joined(any_store, "m", labeled_only=True)
    assert only["request_id"].to_pylist() == ["r0", "r1", "r3"]
    assert only["label"].to_pylist() == ["no", "yes", "yes"]  # predicted vs. true, side by side
    assert truth(any_store, since=102, until=104) == {"r2": None, "r3": "no"}
    with any_store.read() as conn:
        row = conn.execute(select(_tables.prediction_labels)).one()
    assert (row.sha, row.n_rows, row.source_uri, row.model) == (got["sha"], 5, str(path), None)


def test_reingest_adds_nothing(any_store: Store, tmp_path: Path) -> None:
    log(any_store, IDS)
    path = csv(tmp_path / "a.csv", "request_id,y\nr0,no\nr1,yes\n")
    first = ingest_labels(any_store, path)
    again = ingest_labels(any_store, path)
    shuffled = ingest_labels(any_store, csv(tmp_path / "b.csv", "request_id,y\nr1,yes\nr0,no\n"))
    assert again["new"] is False and shuffled["new"] is False
    assert first["sha"] == again["sha"] == shuffled["sha"]
    assert (again["rows"], again["matched"]) == (2, 2)
    assert label_rows(any_store) == 1
    assert joined(any_store, "m").num_rows == len(IDS)


def test_latest_label_wins(any_store: Store, tmp_path: Path) -> None:
    log(any_store, IDS)
    old = csv(tmp_path / "old.csv", "request_id,y\nr0,no\nr1,no\n")
    ingest_labels(any_store, old)
    ingest_labels(any_store, csv(tmp_path / "new.csv", "request_id,y\nr1,yes\nr2,yes\n"))
    assert truth(any_store) == {
        "r0": "no",
        "r1": "yes",
        "r2": "yes",
        "r3": None,
        "r4": None,
        "r5": None,
    }
    ingest_labels(any_store, old)  # already stored: it does not become the latest again
    assert truth(any_store)["r1"] == "yes"
    assert read_labels(any_store).to_pylist() == [
        {"request_id": "r0", "label_true": "no"},
        {"request_id": "r1", "label_true": "yes"},
        {"request_id": "r2", "label_true": "yes"},
    ]


def test_labels_scoped_to_a_model(store: Store, tmp_path: Path) -> None:
    log(store, ["a", "b"], model="m")
    log(store, ["a", "c"], model="shadow")
    everyone = ingest_labels(store, csv(tmp_path / "all.csv", "request_id,y\na,1\n"))
    assert everyone["matched"] == 1  # one request, logged by two models
    scoped = ingest_labels(
        store, csv(tmp_path / "s.csv", "request_id,y\na,2\nb,2\n"), model="shadow"
    )
    assert (scoped["matched"], scoped["unmatched"]) == (1, 1)  # b was not logged by shadow
    assert truth(store, "m") == {"a": "1", "b": None}
    assert truth(store, "shadow") == {"a": "2", "c": None}


def test_parquet_labels_with_other_column_names(store: Store, tmp_path: Path) -> None:
    log(store, ["1", "2", "3"])
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"rid": [1, 2, 9], "outcome": [0, 1, 1], "extra": ["x"] * 3}), path)
    got = ingest_labels(store, path, id_col="rid", label_col="outcome")
    assert (got["rows"], got["matched"], got["unmatched"]) == (3, 2, 1)
    assert truth(store) == {"1": "0", "2": "1", "3": None}
    assert read_labels(store).schema == LABELS_SCHEMA


def test_no_predictions_yet_counts_everything_unmatched(store: Store, tmp_path: Path) -> None:
    got = ingest_labels(store, csv(tmp_path / "l.csv", "request_id,y\na,1\nb,0\n"))
    assert (got["matched"], got["unmatched"]) == (0, 2)
    assert joined(store, "m").num_rows == 0
    assert joined(store, "m").column_names[-1] == "label_true"


# -- bad files -----------------------------------------------------------------------------


def snapshot(store: Store) -> tuple[Any, ...]:
    t = _tables
    with store.read() as conn:
        counts = tuple(
            conn.execute(select(func.count()).select_from(table)).scalar()
            for table in (t.prediction_labels, t.sources, t.lineage, t.events)
        )
    blobs = sorted(p.name for p in store.blobs.root.rglob("*") if p.is_file())
    return counts, blobs


BAD = [
    ("no_id.csv", "rid,y\na,1\n", {}, r"no_id\.csv: no column 'request_id'.*id_col="),
    ("no_label.csv", "request_id,label\na,1\n", {}, r"no column 'y'.*label_col="),
    ("empty.csv", "", {}, r"empty\.csv is empty"),
    ("header.csv", "request_id,y\n", {}, r"header\.csv has a header but no rows"),
    (
        "dup.csv",
        "request_id,y\na,1\nb,0\na,1\n",
        {},
        r"dup\.csv: request id 'a' appears twice, dup\.csv row 1 \(line 2\) and dup\.csv row 3 "
        r"\(line 4\)",
    ),
    ("blank_id.csv", "request_id,y\na,1\n ,0\n", {}, r"row 2 \(line 3\): column 'request_id'"),
    ("blank_y.csv", "request_id,y\na,1\nb,\n", {}, r"row 2 \(line 3\): column 'y' is empty"),
    ("ragged.csv", "request_id,y\na,1,extra\n", {}, r"ragged\.csv"),
]


@pytest.mark.parametrize("name, text, kw, match", BAD, ids=[b[0] for b in BAD])
def test_bad_files_change_nothing(
    any_store: Store, tmp_path: Path, name: str, text: str, kw: dict, match: str
) -> None:
    log(any_store, ["a", "b"])
    ingest_labels(any_store, csv(tmp_path / "good.csv", "request_id,y\na,0\n"))
    before = snapshot(any_store)
    with pytest.raises(InvalidInput, match=match):
        ingest_labels(any_store, csv(tmp_path / name, text), **kw)
    assert snapshot(any_store) == before
    assert truth(any_store) == {"a": "0", "b": None}


def test_missing_file_and_null_parquet_labels(store: Store, tmp_path: Path) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidInput, match="no such file"):
        ingest_labels(store, tmp_path / "nope.csv")
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"request_id": ["a", None], "y": [1, 0]}), path)
    with pytest.raises(InvalidInput, match=r"nulls\.parquet row 2: column 'request_id' is empty"):
        ingest_labels(store, path)
    assert snapshot(store) == before


# -- labels checked against the model's answers --------------------------------------------


def register(store: Store, name: str, task: str = "classification", **schema: Any) -> Any:
    from keel import registry

    return registry.register(
        store,
        name,
        artifact_sha=store.blobs.put_bytes(f"not a model: {name}".encode()),
        flavor="sklearn",
        task=task,
        input_schema=[{"name": "x", "type": "int"}],
        output_schema=schema,
    )


def test_labels_that_are_no_class_of_the_model_are_refused_naming_the_rows(
    any_store: Store, tmp_path: Path
) -> None:
    register(any_store, "m", classes=["No", "Yes"])
    log(any_store, IDS)
    before = snapshot(any_store)
    text = "request_id,y\nr0,No\nr1,Maybe\nr2,Yes\nr3,maybe\nr4,YES\nr5,no\n"
    with pytest.raises(
        InvalidInput,
        match=r"^bad\.csv: 4 labels are no class of m/1 \(expected 'No' or 'Yes'\): row 2 "
        r"\(line 3\) 'Maybe', row 4 \(line 5\) 'maybe', row 5 \(line 6\) 'YES' and 1 more; "
        r"correct or drop those rows \(nothing was stored\)$",
    ):
        ingest_labels(any_store, csv(tmp_path / "bad.csv", text))
    assert snapshot(any_store) == before
    good = ingest_labels(any_store, csv(tmp_path / "ok.csv", "request_id,y\nr0,No\nr1,Yes\n"))
    assert good["matched"] == 2 and truth(any_store)["r1"] == "Yes"


def test_labels_of_requests_not_logged_yet_are_checked_against_the_served_version(
    store: Store, tmp_path: Path
) -> None:
    from keel import registry

    register(store, "m", classes=[0, 1])
    mv = register(store, "m", classes=["a", "b"])
    registry.set_alias(store, mv.ref, "production")
    log(store, ["r0"])  # logged by m/1, whose classes are 0 and 1
    path = csv(tmp_path / "l.csv", "request_id,y\nr0,1\nlater,1\n")
    with pytest.raises(InvalidInput, match=r"1 label is no class of m/2 .*row 2 \(line 3\) '1'"):
        ingest_labels(store, path, model="m")
    with pytest.raises(InvalidInput, match=r"no class of m/1 \(expected '0' or '1'\): row 1"):
        ingest_labels(store, csv(tmp_path / "a.csv", "request_id,y\nr0,a\n"))
    # unscoped labels of requests nobody logged have no model to be checked against
    assert ingest_labels(store, path)["unmatched"] == 1


def test_labels_of_a_regressor_must_be_numbers(store: Store, tmp_path: Path) -> None:
    register(store, "m", task="regression")
    log(store, IDS)
    text = "request_id,y\nr0,1.5\nr1,abc\nr2,-3\nr3,inf\n"
    with pytest.raises(
        InvalidInput,
        match=r"2 labels are not numbers, as regressor m/1 needs \(expected a finite number\): "
        r"row 2 \(line 3\) 'abc', row 4 \(line 5\) 'inf';",
    ):
        ingest_labels(store, csv(tmp_path / "r.csv", text))
    assert label_rows(store) == 0
    assert ingest_labels(store, csv(tmp_path / "ok.csv", "request_id,y\nr0,1.5\nr2,-3\n"))["new"]


def test_cli_labels_ingest_refuses_a_label_that_is_no_class(tmp_path: Path, capsys: Any) -> None:
    from keel import project as keel_project
    from keel.cli import main

    root = tmp_path / "p"
    with keel_project.init(root, name="labels") as proj:
        register(proj.store, "m", classes=["No", "Yes"])
        log(proj.store, IDS)
    path = csv(tmp_path / "bad.csv", "request_id,y\nr0,Maybe\n")
    code = main(["labels", "ingest", str(path), "-C", str(root)])
    err = capsys.readouterr().err
    assert code != 0 and "no class of m/1" in err and "'Maybe'" in err
    with keel_project.open_project(root) as proj:
        assert label_rows(proj.store) == 0
