"""``keel lineage --request RID [MODEL]``: from a served prediction (its request id) through
the log segment, the model version and its run to the data set and the source file."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from keel import project as keel_project
from keel.cli import main
from keel.serve import PredictionLog, Release, start
from tests.serve._support import adult_store, call, records, train_lgb

RID = "order-7f3a"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A project whose ``adult`` answered two requests as production (version 1) with a
    shadow (version 2): each request id is logged once per version."""
    root = tmp_path_factory.mktemp("lineage")
    proj = keel_project.init(root / "proj", name="lineage")
    store = proj.store
    _, df = adult_store(root, rows=600)  # writes root/adult.csv
    from keel.data import ingest

    ingest(store, root / "adult.csv", name="adult")
    train_lgb(store, "adult")
    train_lgb(store, "adult", alias="challenger", n_estimators=5)
    release = Release("adult", {"production": 100}, shadow="challenger")
    with PredictionLog(store) as log, start(store, [release], sink=log) as server:
        for rid, start_row in ((RID, 0), ("order-other", 3)):
            status, headers, _ = call(
                server.url,
                "POST",
                "/models/adult/predict",
                {"rows": records(df, 2, start=start_row)},
                {"x-request-id": rid},
            )
            assert status == 200 and headers["x-request-id"] == rid
        shadow = server.app.slots["adult"]
        deadline = time.monotonic() + 60
        while shadow.describe()["shadow"]["ok"] < 2:  # the shadow answers after the caller
            assert time.monotonic() < deadline
            time.sleep(0.05)
    proj.close()
    csv = root / "adult.csv"
    yield (
        root / "proj",
        {
            "uri": str(csv.resolve()),
            "sha256": hashlib.sha256(csv.read_bytes()).hexdigest(),
            "bytes": csv.stat().st_size,
        },
    )


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_walks_from_each_answer_to_the_source_file(served, capsys):
    root, source = served
    code, out, err = run(capsys, "lineage", "--request", RID, "-C", root, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["request_id"] == RID
    # two rows, each answered by the live version and its shadow
    assert sorted((p["version"], p["row"]) for p in found["predictions"]) == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert {p["request_id"] for p in found["predictions"]} == {RID}
    assert found["sources"] == [source]
    assert len(found["lineage"]) == 2  # one log segment per version
    models = set()
    for seg, tree in found["lineage"].items():
        assert (tree["kind"], tree["id"]) == ("predictions", seg)
        (model,) = tree["parents"]
        assert model["role"] == "predicted_by"
        models.add(model["id"])
        (run_node,) = [p for p in model["parents"] if p["role"] == "trained_by"]
        dataset = run_node["parents"][0]
        assert dataset["kind"] == "dataset" and dataset["parents"][0]["id"] == source["sha256"]
    assert models == {"adult/1", "adult/2"}
    assert found["details"][f"source:{source['sha256']}"]["label"] == source["uri"]


@pytest.mark.parametrize(
    ("model", "versions"),
    [("adult", {1, 2}), ("adult/2", {2}), ("adult@production", {1}), ("adult@challenger", {2})],
)
def test_a_model_narrows_to_its_answers(served, capsys, model, versions):
    root, _ = served
    code, out, err = run(capsys, "lineage", "--request", RID, model, "-C", root, "--json")
    assert code == 0, err
    assert {p["version"] for p in json.loads(out)["predictions"]} == versions


def test_text_names_the_answers_the_tree_and_the_source(served, capsys):
    root, source = served
    code, out, err = run(capsys, "lineage", "-r", RID, "adult@production", "-C", root)
    assert code == 0, err
    assert f"request {RID} row 0: adult/1 answered" in out
    assert f"request {RID} row 1: adult/1 answered" in out
    assert "prediction log segment" in out and "adult/600" not in out
    assert "model adult/1 (predicted_by)" in out and "dataset adult/1 (train)" in out
    assert f"source {source['uri']} sha256 {source['sha256']}" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--request", "no-such-id"],
            1,
            "error (not_found): --request: no logged prediction has request id 'no-such-id'",
        ),
        (
            ["--request", "order-other", "adult/9"],
            1,
            "error (not_found): model 'adult' has no version 9",
        ),
        (
            ["--request", "x" * 129],
            2,
            "error (invalid_input): --request: expected 1 to 128 letters, digits",
        ),
        (
            ["--request", "a b"],
            2,
            "error (invalid_input): --request: expected 1 to 128 letters, digits",
        ),
        (
            ["--request", RID, "no such model"],
            2,
            "error (invalid_input): MODEL: expected letters, digits",
        ),
        (
            [],
            2,
            "error (invalid_input): lineage: expected a model reference (name, name/VERSION "
            "or name@alias) or --request RID, got neither",
        ),
    ],
)
def test_bad_or_unknown_request_is_one_line(served, capsys, args, code, message):
    root, _ = served
    got, out, err = run(capsys, "lineage", *args, "-C", root)
    assert got == code and out == ""
    assert err.startswith(message) and err.strip().count("\n") == 0, err


def test_another_models_request_is_not_found_under_this_one(served, capsys, tmp_path):
    root, _ = served
    code, _, err = run(capsys, "lineage", "--request", RID, "income", "-C", root)
    assert code == 1
    assert "--request: no logged prediction of 'income' has request id 'order-7f3a'" in err
