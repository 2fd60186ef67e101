"""``keel score``: a registered model over a file, in process and on a real local Ray cluster
(a head node and worker nodes, each its own ``ray start`` process on 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from keel import registry
from keel import store as st
from keel.cli import main
from keel.data import ingest, list_datasets, load_frame
from keel.datasets import adult
from keel.errors import InvalidInput, KeelError, NotFound
from keel.export import export
from keel.project import init, open_project
from keel.serve._score import score
from keel.train import train

ROWS = 3000


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the Adult model ``plain`` (not exported) and ``graph`` (exported), and
    the rows to score as CSV and Parquet (the label column left out)."""
    root = tmp_path_factory.mktemp("score")
    df = adult("train").sample(ROWS, random_state=1)
    df.to_csv(root / "train.csv", index=False)
    rows = df.drop(columns=["income"])
    rows.to_csv(root / "rows.csv", index=False)
    rows.to_parquet(root / "rows.parquet", row_group_size=500)
    with init(root) as project:
        s = project.store
        ingest(s, root / "train.csv", name="adult")
        for name in ("plain", "graph"):
            run = train(s, "adult", "income", params={"n_estimators": 15}, seed=3)
            run.register(s, name)
        export(s, "graph/1")
    return root


def keel(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def edges(store: Any, sha: str) -> dict[str, tuple[str, str]]:
    return {n.role: (n.kind, n.id) for n in st.lineage(store, "dataset", sha).parents}


# ---------------------------------------------------------------- in process


def test_inline_predictions_carry_model_version_and_lineage(proj: Path) -> None:
    with open_project(proj) as p:
        res = score(p.store, "graph", proj / "rows.csv", name="g-inline")
        frame = load_frame(p.store, res.dataset)
        parents = edges(p.store, res.dataset.sha)
        mv = registry.get_version(p.store, "graph/1")
        source_sha, _ = st.sha256_file(proj / "rows.csv")
        model = registry.load(p.store, "graph/1")
    assert res.used == "onnx" and res.rows == ROWS and res.dataset.kind == "predictions"
    assert list(frame.columns[:3]) == ["row", "model_version", "label"]
    assert frame["row"].tolist() == list(range(ROWS))
    assert set(frame["model_version"]) == {"graph/1"}
    assert parents["predicted_by"] == ("model", "graph/1")
    assert parents["read_from"] == ("source", source_sha)
    assert parents["scored_with"] == ("blob", mv.tags["export.onnx"])
    # the stored predictions are the model's own (the graph agrees with it)
    rows = pd.read_csv(proj / "rows.csv")
    proba = model.predict_proba(rows)[:, 1]
    assert abs(frame["proba_>50K"].to_numpy() - proba).max() < 1e-5


def test_unexported_model_scores_through_the_model_contract(proj: Path) -> None:
    with open_project(proj) as p:
        res = score(p.store, "plain/1", proj / "rows.parquet", name="p-inline")
        frame = load_frame(p.store, res.dataset)
        parents = edges(p.store, res.dataset.sha)
        mv = registry.get_version(p.store, "plain/1")
        labels = registry.load(p.store, "plain/1").predict(pd.read_parquet(proj / "rows.parquet"))
    assert res.used == "model"
    assert parents["scored_with"] == ("blob", mv.artifact_sha)
    assert frame["label"].tolist() == list(labels)


def test_a_regression_model_stores_its_predictions(proj: Path) -> None:
    with open_project(proj) as p:
        run = train(
            p.store,
            "adult",
            "hours-per-week",
            task="regression",
            split="random",
            params={"n_estimators": 10},
            seed=1,
        )
        mv = run.register(p.store, "hours")
        res = score(p.store, "hours", proj / "train.csv", name="hours-scored")
        frame = load_frame(p.store, res.dataset)
        want = registry.load(p.store, mv.ref).predict(pd.read_csv(proj / "train.csv"))
    assert list(frame.columns) == ["row", "model_version", "prediction"]
    assert set(frame["model_version"]) == {mv.ref}
    assert abs(frame["prediction"].to_numpy() - want).max() < 1e-9


def test_bad_input_is_refused_and_stores_nothing(proj: Path, capsys: Any) -> None:
    with open_project(proj) as p:
        before = len(list_datasets(p.store))
        with pytest.raises(InvalidInput, match="expected one of inline, ray; got 'spark'"):
            score(p.store, "graph", proj / "rows.csv", executor="spark")
        with pytest.raises(NotFound, match="data file .*nope.parquet.* does not exist"):
            score(p.store, "graph", proj / "nope.parquet")
        with pytest.raises(InvalidInput, match=r"expected a \.parquet or \.csv file"):
            score(p.store, "graph", proj / "keel.yaml")
        with pytest.raises(InvalidInput, match="has no exported ONNX graph.*keel export plain/1"):
            score(p.store, "plain", proj / "rows.csv", use="onnx")
        pd.read_csv(proj / "rows.csv").drop(columns=["age"]).to_csv(proj / "noage.csv")
        with pytest.raises(InvalidInput, match="lacks column.*'age'"):
            score(p.store, "graph", proj / "noage.csv")
        assert len(list_datasets(p.store)) == before
    rows = proj / "rows.csv"
    code, _, err = keel(capsys, "score", "graph", rows, "--executor", "spark", "-C", proj)
    assert code == 2 and "expected one of inline, ray; got 'spark'" in err
    assert "Traceback" not in err
    code, _, err = keel(capsys, "score", "plain", proj / "rows.csv", "--use", "onnx", "-C", proj)
    assert code == 2 and "keel export plain/1" in err


# ---------------------------------------------------------------- on the Ray cluster


@pytest.mark.slow
@pytest.mark.parametrize("file", ["rows.csv", "rows.parquet"])
def test_ray_equals_inline_row_for_row(proj: Path, ray_cluster: Any, file: str) -> None:
    with open_project(proj) as p:
        here = score(p.store, "graph", proj / file, name=f"eq-{file}")
        there = score(
            p.store,
            "graph",
            proj / file,
            name=f"eq-{file}",
            executor="ray",
            address=ray_cluster.address,
            batch_rows=400,
        )
        a, b = load_frame(p.store, here.dataset), load_frame(p.store, there.dataset)
    pd.testing.assert_frame_equal(a, b)
    assert there.executor == "ray" and there.rows == ROWS
    assert there.dataset.sha == here.dataset.sha  # the same bytes: stored once, one version


@pytest.mark.slow
def test_ray_through_the_cli_traces_back(proj: Path, ray_cluster: Any) -> None:
    cmd = [str(Path(sys.executable).with_name("keel")), "score", "plain/1"]
    cmd += [str(proj / "rows.parquet"), "--executor", "ray", "--ray-address", ray_cluster.address]
    cmd += ["-C", str(proj), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["executor"] == "ray" and out["used"] == "model" and out["rows"] == ROWS
    tree = out["lineage"]
    parents = {n["role"]: n for n in tree["parents"]}
    model = parents["predicted_by"]
    assert model["id"] == "plain/1"
    run = next(n for n in model["parents"] if n["role"] == "trained_by")
    assert any(n["kind"] == "dataset" and n["role"] == "train" for n in run["parents"])
    assert parents["read_from"]["id"] == st.sha256_file(proj / "rows.parquet")[0]


@pytest.mark.slow
def test_ray_bad_rows_fail_in_one_line(proj: Path, ray_cluster: Any) -> None:
    pd.read_csv(proj / "rows.csv").drop(columns=["age"]).to_csv(proj / "noage2.csv")
    with open_project(proj) as p:
        before = len(list_datasets(p.store))
        with pytest.raises(InvalidInput, match="lacks column.*'age'") as info:
            score(
                p.store, "graph", proj / "noage2.csv", executor="ray", address=ray_cluster.address
            )
        assert len(list_datasets(p.store)) == before
    assert "\n" not in str(info.value)
    import ray

    deadline = time.monotonic() + 30  # the failed job's actors give their CPUs back
    while ray.available_resources().get("CPU") != ray.cluster_resources().get("CPU"):
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.5)


@pytest.mark.slow
def test_a_node_that_leaves_mid_job_finishes_or_fails_whole(proj: Path, ray_cluster: Any) -> None:
    big = proj / "big.parquet"
    # long enough that the node leaves mid-job on a quiet machine too (x10 in 300-row
    # batches finished within 4 s once the other cores were free)
    pd.concat([pd.read_parquet(proj / "rows.parquet")] * 30).to_parquet(big, row_group_size=500)
    doomed = ray_cluster.add_worker()
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(3)
        killed_at.append(time.monotonic())
        ray_cluster.kill(doomed)

    with open_project(proj) as p:
        before = {d.ref for d in list_datasets(p.store)}
        killer = threading.Thread(target=kill)
        killer.start()
        try:
            res = score(
                p.store,
                "graph",
                big,
                name="survivor",
                executor="ray",
                address=ray_cluster.address,
                batch_rows=60,
            )
        except KeelError as exc:  # failed whole: one line, nothing registered
            killer.join()
            assert "nothing was stored" in str(exc) and "\n" not in str(exc)
            assert {d.ref for d in list_datasets(p.store)} == before
            return
        finished = time.monotonic()
        killer.join()
        assert killed_at and killed_at[0] < finished, "the job ended before the node left"
        want = score(p.store, "graph", big, name="survivor")
        assert res.rows == 30 * ROWS and res.dataset.sha == want.dataset.sha
        assert {d.ref for d in list_datasets(p.store)} == before | {"survivor/1"}
